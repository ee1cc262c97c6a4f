"""Choosing the next token from logits (greedy, temperature, top-k, top-p, min-p, seeded) and when to stop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ponder.errors import BadParameter


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: no limit
    max_tokens: int = 256  # per call
    seed: int | None = None
    min_p: float = 0.0  # drop tokens below min_p x the top token's probability
    stop: tuple[str, ...] = ()  # stop after the token that completes one of these strings
    top_logprobs: int = 0  # also return the k most likely tokens at each step, with their log-probabilities

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        if not isinstance(self.stop, Sequence) or not all(isinstance(s, str) and s for s in self.stop):
            raise BadParameter(f"stop must be a string or a list of non-empty strings, not {self.stop!r}")
        object.__setattr__(self, "stop", tuple(self.stop))
        checks = [(self.temperature >= 0, f"temperature must be 0 (greedy) or more, not {self.temperature}"),
                  (0 < self.top_p <= 1, f"top-p must be in (0, 1], not {self.top_p}"),
                  (self.top_k >= 0, f"top-k must be 0 (off) or more, not {self.top_k}"),
                  (0 <= self.min_p < 1, f"min-p must be in [0, 1), not {self.min_p}"),
                  (self.max_tokens >= 1, f"max tokens must be at least 1, not {self.max_tokens}"),
                  (0 <= self.top_logprobs <= 20, f"top_logprobs must be in [0, 20], not {self.top_logprobs}")]
        for ok, message in checks:
            if not ok:
                raise BadParameter(message)


def filter_logits(logits: Tensor, params: SamplingParams) -> Tensor:
    """Temperature, then top-k, min-p and top-p masks: the distribution to sample from, as logits."""
    logits = logits.float() / params.temperature
    if params.top_k:
        kth = logits.topk(min(params.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.min_p:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < params.min_p * probs.amax(-1, keepdim=True), float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the tokens ranked above it already hold top_p of the mass.
        sorted_logits = sorted_logits.masked_fill(probs.cumsum(-1) - probs > params.top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def sample(logits: Tensor, params: SamplingParams,
           generators: torch.Generator | list[torch.Generator | None] | None = None) -> Tensor:
    """One token id per row of logits [B, vocab]; one generator for all rows, or one per row."""
    if params.temperature <= 0:
        return logits.argmax(-1)
    cdf = filter_logits(logits, params).softmax(-1).cumsum(-1)
    # Inverse-CDF draws: one uniform number per row (torch.multinomial draws one per vocabulary entry:
    # 4 ms a row for a 152k vocabulary here). A generator per row makes each sequence's draws depend
    # on its own seed only, not on its batch.
    rows = generators if isinstance(generators, list) else [generators] * len(cdf)
    u = torch.cat([torch.rand(1, generator=g) for g in rows]) * cdf[:, -1]
    return torch.searchsorted(cdf, u[:, None], right=True).squeeze(-1).clamp(max=cdf.shape[-1] - 1)


def sample_with_lse(logits: Tensor, params: SamplingParams,
                    generators: list[torch.Generator | None]) -> tuple[Tensor, Tensor]:
    """`sample`'s tokens [B] and each row's log-sum-exp [B] at temperature 1 (a token's log-probability is its
    logit minus it). Without top-k, top-p or min-p, ponder's CPU kernel draws them in two passes over the
    vocabulary (csrc/sample_rows.cpp; PyTorch takes seven); the same uniform number a row, the same inverse CDF."""
    from ponder.engine import cpu_kernels  # (the kernels import nothing of this module)

    plain = not (params.top_k or params.min_p or params.top_p < 1.0)
    if plain and logits.device.type == "cpu" and cpu_kernels.available():
        u = (torch.cat([torch.rand(1, generator=g) for g in generators]) if params.temperature > 0
             else torch.zeros(len(logits)))
        tokens, lse = cpu_kernels.load().sample_rows(logits.float().contiguous(), params.temperature, u)
        return tokens, lse
    return sample(logits, params, generators), torch.logsumexp(logits.float(), -1)


def find_stop(text: str, stops: tuple[str, ...], start: int) -> str | None:
    """The first stop string in text[start:] (the text of earlier calls may hold stop strings too)."""
    found = [(i, s) for s in stops if (i := text.find(s, start)) >= 0]
    return min(found)[1] if found else None
