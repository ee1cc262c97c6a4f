"""Log-probabilities of the tokens a loss looks at, and the SFT and DPO losses on them.

Only the positions whose next token is in the loss go through the output layer: with Qwen's 152k-token
vocabulary, logits for a whole batch would be most of the memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ponder.models.transformer import Transformer
from ponder.train.data import CONTENT, FORMAT, Tokenized


@dataclass
class TokenLogps:
    """Per loss token: its log-probability, its row in the batch, and whether it is content (not formatting)."""

    logps: Tensor  # [N]
    rows: Tensor  # [N]
    content: Tensor  # [N] bool

    def per_row(self, n_rows: int, content_only: bool = True) -> Tensor:
        keep = self.content if content_only else torch.ones_like(self.content)
        return torch.zeros(n_rows, dtype=self.logps.dtype, device=self.logps.device).index_add(
            0, self.rows[keep], self.logps[keep])


def collate(examples: list[Tokenized], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Right-padded token ids [B, T] and parts [B, T] (padding is PROMPT: never in a loss). Right padding under a
    causal mask cannot change a real token's result: padding comes after it."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    parts = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        parts[i, : len(e.parts)] = torch.tensor(e.parts)
    return ids, parts


def token_logps(model: Transformer, ids: Tensor, parts: Tensor) -> TokenLogps:
    """Log-probabilities of every CONTENT or FORMAT token given the tokens before it."""
    hidden = model.hidden_states(ids)[:, :-1]  # position t predicts token t + 1
    targets, target_parts = ids[:, 1:], parts[:, 1:]
    selected = (target_parts == CONTENT) | (target_parts == FORMAT)
    logits = model.head(hidden[selected]).float()
    logps = -F.cross_entropy(logits, targets[selected], reduction="none")
    rows = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(targets)[selected]
    return TokenLogps(logps, rows, target_parts[selected] == CONTENT)


def dpo_terms(chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
              beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per pair: the sigmoid DPO loss -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))) and the implicit
    rewards beta * (pi - ref) of each side."""
    rewards_chosen, rewards_rejected = beta * (chosen - ref_chosen), beta * (rejected - ref_rejected)
    return -F.logsigmoid(rewards_chosen - rewards_rejected), rewards_chosen.detach(), rewards_rejected.detach()
