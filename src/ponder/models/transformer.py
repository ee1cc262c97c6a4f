"""The Llama 3 family decoder (Llama 3.x, SmolLM2, Qwen2.5), from scratch.

One screen per idea: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU, the block, the
model. `forward` takes token positions and a KV cache from the caller, so that the engine decides
how sequences are batched and where their keys and values live.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ponder.models.config import ModelConfig


class KVCache(Protocol):
    """Where attention keeps keys and values between forward calls, and how it reads them back
    (see `models.kv_cache`; the engine brings a paged one)."""

    def begin(self, positions: Tensor) -> None:
        """A forward pass over new tokens at positions [B, T] starts."""
        ...

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Store the new tokens' k, v [B, Hkv, T, D]; return the attention of q [B, H, T, D] over each
        row's keys and values up to each query's position: [B, H, T, D]."""
        ...


BlockHook = Callable[[int, Tensor], Tensor]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # x / sqrt(mean(x^2) + eps), in fp32 whatever the weights' dtype, as the references do.
        return self.weight * F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype)


def rope_inv_freq(cfg: ModelConfig) -> Tensor:
    """Rotary frequencies, with Llama 3.x scaling as the checkpoint states it (never assumed)."""
    d = cfg.head_dim
    inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32, device="cpu") / d)
    if cfg.rope_freq_factors:  # GGUF `rope_freqs`: llama.cpp divides each frequency by its factor
        return inv_freq / torch.tensor(cfg.rope_freq_factors, dtype=torch.float32, device="cpu")
    if cfg.rope_scaling:  # Llama 3.1: slow down low frequencies, keep high ones, blend between
        s = cfg.rope_scaling
        factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
        old_len = s["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        smooth = ((old_len / wavelen - low) / (high - low)).clamp(0, 1)
        blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        scaled = torch.where(wavelen < old_len / high, inv_freq, blended)
        return torch.where(wavelen > old_len / low, inv_freq / factor, scaled)
    return inv_freq


def rotate(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
    """Rotate pairs (x_i, x_{i+d/2}): the Hugging Face layout, which the loaders convert to.

    x * cos + (-x2, x1) * sin, with the minus sign folded into `signed_sin` = (-sin, sin): rolling x by
    half its width gives (x2, x1).
    """
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer, self.n_heads, self.n_kv_heads, self.head_dim = (
            layer, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim)
        self.q = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.k = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.v = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.o = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None, cache: KVCache | None) -> Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = rotate(q, *rope), rotate(k, *rope)
        if cache is not None:
            y = cache.attend(self.layer, q, k, v)
        else:  # each kv head serves n_heads / n_kv_heads query heads (grouped-query attention)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        return self.o(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))  # SwiGLU


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg, layer)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None, cache: KVCache | None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), rope, mask, cache)
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)

    def hidden_states(self, tokens: Tensor | None, positions: Tensor | None = None, cache: KVCache | None = None,
                      embeds: Tensor | None = None, before_block: BlockHook | None = None) -> Tensor:
        """Final normalised hidden states [B, T, dim] for tokens [B, T] at positions [B, T].

        The vision layer's two ways in: `embeds` [B, T, dim] stand for the tokens' embeddings (image tokens inline,
        NVLM-D), and `before_block(i, x)` may change the stream before block i (gated cross-attention, NVLM-X).
        """
        x = self.embed(tokens) if embeds is None else embeds
        if positions is None:
            positions = torch.arange(x.shape[1], device=x.device).expand(x.shape[:2])
        angles = positions.float()[..., None] * self.inv_freq  # [B, T, D/2], in fp32 as the references
        cos, sin = angles.cos()[:, None], angles.sin()[:, None]  # broadcast over heads
        rope = (torch.cat((cos, cos), dim=-1).to(x.dtype), torch.cat((-sin, sin), dim=-1).to(x.dtype))
        mask = None
        if cache is not None:
            cache.begin(positions)
        else:  # the tokens attend to each other, causally by position
            mask = positions[:, None, None, :] <= positions[:, None, :, None]
        for i, block in enumerate(self.layers):
            if before_block is not None:
                x = before_block(i, x)
            x = block(x, rope, mask, cache)
        return self.norm(x)

    def forward(self, tokens: Tensor, positions: Tensor | None = None,
                cache: KVCache | None = None) -> Tensor:
        """Logits [B, T, vocab] for tokens [B, T]."""
        return self.head(self.hidden_states(tokens, positions, cache))
