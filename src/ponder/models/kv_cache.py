"""The simplest KV cache: one preallocated slab per layer, a row per sequence (as in gpt-fast).

Each row holds one sequence whose positions run 0, 1, 2, ... The engine brings its own paged
cache for trees of sequences; this one serves single-stream generation and the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ponder.models.config import ModelConfig


class DenseKVCache:
    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        shape = (cfg.n_layers, batch, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0  # slots in use: attention reads no further

    def begin(self, positions: Tensor) -> None:
        if int(positions.max()) >= self.max_len:
            raise ValueError(f"position {int(positions.max())} is past the cache's {self.max_len} slots")
        self.length = max(self.length, int(positions.max()) + 1)
        self.positions = positions
        self.mask = (torch.arange(self.length, device=positions.device) <= positions[:, :, None])[:, None]

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        rows = torch.arange(k.shape[0], device=k.device)[:, None]
        # Advanced indexing puts the indexed dims first: [B, T, Hkv, D].
        self.k[layer][rows, :, self.positions] = k.transpose(1, 2).to(self.k.dtype)
        self.v[layer][rows, :, self.positions] = v.transpose(1, 2).to(self.v.dtype)
        keys, values = self.k[layer, :, :, : self.length], self.v[layer, :, :, : self.length]
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=self.mask, enable_gqa=True)
