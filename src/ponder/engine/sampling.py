"""Choosing the next token from logits: greedy, temperature, top-k, top-p, seeded."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ponder.errors import BadParameter


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: no limit
    max_tokens: int = 256
    seed: int | None = None

    def __post_init__(self) -> None:
        checks = [(self.temperature >= 0, f"temperature must be 0 (greedy) or more, not {self.temperature}"),
                  (0 < self.top_p <= 1, f"top-p must be in (0, 1], not {self.top_p}"),
                  (self.top_k >= 0, f"top-k must be 0 (off) or more, not {self.top_k}"),
                  (self.max_tokens >= 1, f"max tokens must be at least 1, not {self.max_tokens}")]
        for ok, message in checks:
            if not ok:
                raise BadParameter(message)


def sample(logits: Tensor, params: SamplingParams, generator: torch.Generator | None = None) -> Tensor:
    """One token id per row of logits [B, vocab]."""
    if params.temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / params.temperature
    if params.top_k:
        kth = logits.topk(min(params.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        # Drop a token when the tokens ranked above it already hold top_p of the mass.
        before = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1)
        sorted_logits = sorted_logits.masked_fill(before > params.top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)
