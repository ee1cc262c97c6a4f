"""NVLM-X's connector: Flamingo's gated cross-attention block, placed before every few decoder blocks.

The text stream attends to image tokens that never enter its sequence; each sub-layer is added through a tanh
gate that starts at 0, so an untrained block leaves the stream exactly as it was (x + 0 * y = x) and the model is
exactly the text model it was built on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ponder.models.config import ModelConfig
from ponder.models.transformer import RMSNorm


class GatedCrossAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.q = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.k = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)  # grouped, as the decoder's
        self.v = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.o = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        self.mlp_gate = nn.Parameter(torch.zeros(1))

    def keys_values(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Image tokens [B, M, dim] -> keys and values [B, kv_heads, M, head_dim]: once per image, not per step."""
        B, M, _ = memory.shape
        k = self.k(memory).view(B, M, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(memory).view(B, M, self.kv_heads, self.head_dim).transpose(1, 2)
        return k, v

    def forward(self, x: Tensor, keys_values: tuple[Tensor, Tensor], mask: Tensor) -> Tensor:
        """x [B, T, dim]; mask [B, T, M], True where a token may see an image token (a row may be all False: that
        token sees no image, and this block adds nothing to it)."""
        B, T, _ = x.shape
        k, v = keys_values
        sees = mask.any(-1, keepdim=True)  # [B, T, 1]
        q = self.q(self.attn_norm(x)).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        # A row that sees nothing would be a softmax over nothing (NaN): let it see everything, then drop it.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=(mask | ~sees)[:, None], enable_gqa=True)
        y = self.o(y.transpose(1, 2).reshape(B, T, -1)) * sees
        x = x + torch.tanh(self.attn_gate) * y
        return x + torch.tanh(self.mlp_gate) * self.mlp(self.mlp_norm(x)) * sees
