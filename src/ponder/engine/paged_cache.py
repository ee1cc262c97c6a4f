"""One forward pass's view of the paged KV pool: where each new token writes, what each row reads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ponder.engine import cpu_kernels
from ponder.models.config import ModelConfig


class KVPool:
    """Keys and values of every block, for every layer: [n_layers, n_blocks * block_size, n_kv_heads, head_dim]."""

    def __init__(self, cfg: ModelConfig, n_blocks: int, block_size: int, dtype: torch.dtype):
        shape = (cfg.n_layers, n_blocks * block_size, cfg.n_kv_heads, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)
        self.block_size = block_size

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    @staticmethod
    def bytes_per_block(cfg: ModelConfig, block_size: int, dtype: torch.dtype) -> int:
        return 2 * cfg.n_layers * block_size * cfg.n_kv_heads * cfg.head_dim * torch.finfo(dtype).bits // 8

    def copy_block(self, src: int, dst: int) -> None:
        size = self.block_size
        self.k[:, dst * size:(dst + 1) * size] = self.k[:, src * size:(src + 1) * size]
        self.v[:, dst * size:(dst + 1) * size] = self.v[:, src * size:(src + 1) * size]


class PagedKVCache:
    """Implements the model's KVCache protocol over a KVPool for one batch.

    write_slots [B, T]: the pool slot of each new token (padding writes to the scratch block).
    read_slots [B, S]: the pool slots of each row's positions 0..S-1, after this step's writes.
    lengths [B]: how many of those S positions each row really has.
    decode_kernel: decode steps (one new token per row) attend with ponder's kernel, which reads the
    blocks in place, instead of gathering every row's keys and values for PyTorch's attention.
    """

    def __init__(self, pool: KVPool, write_slots: Tensor, read_slots: Tensor, lengths: Tensor,
                 decode_kernel: bool = False):
        self.pool, self.write_slots, self.read_slots, self.lengths = pool, write_slots, read_slots, lengths
        self.decode_kernel = decode_kernel

    def begin(self, positions: Tensor) -> None:
        self.decoding = positions.shape[1] == 1
        width = self.read_slots.shape[1]
        self.mask = None
        if not (self.decoding and bool((self.lengths == width).all())):  # else every slot is visible
            s = torch.arange(width)
            self.mask = ((s <= positions[:, :, None]) & (s < self.lengths[:, None, None]))[:, None]

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        keys, values = self.pool.k[layer], self.pool.v[layer]
        slots = self.write_slots.reshape(-1)
        keys[slots] = k.transpose(1, 2).reshape(len(slots), *keys.shape[1:]).to(keys.dtype)
        values[slots] = v.transpose(1, 2).reshape(len(slots), *values.shape[1:]).to(values.dtype)
        if self.decoding and self.decode_kernel:
            y = cpu_kernels.load().decode_attention(q[:, :, 0].contiguous(), keys, values, self.read_slots,
                                                     self.lengths, q.shape[-1] ** -0.5)
            return y[:, :, None]
        keys = keys[self.read_slots].transpose(1, 2).to(q.dtype)  # (an fp16 pool: computed in fp32)
        values = values[self.read_slots].transpose(1, 2).to(q.dtype)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=self.mask, enable_gqa=True)
