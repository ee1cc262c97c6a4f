"""A GGUF file's quantized weights used as they are: memory-mapped, multiplied block by block, never copied.

The fp32 and int8 paths (`models.loader`, `int8_linear`) hold a dequantized copy of every weight: 2.9 GB for
the 0.5B model, ~30 GB for an 8B one. Here a linear layer keeps the file's bytes ([out, bytes per row],
mapped from disk, shared with the page cache as llama.cpp does) and csrc/gguf_matmul.cpp multiplies them
directly; the embedding dequantizes only the rows a step looks up. Tensors of a type without a kernel
(fp16, or a rarer quantization) are dequantized once, as before, and said in the log.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import gguf
import numpy as np
import torch
from torch import Tensor, nn

from ponder.engine import cpu_kernels
from ponder.errors import BadCheckpoint
from ponder.models.gguf import (
    GGUF_NAMES,
    ROPE_FREQS,
    GGUFTensor,
    config_from_gguf,
    dequantize,
    metadata,
    open_gguf,
    unpermute,
)
from ponder.models.loader import LoadedModel
from ponder.models.tokenizer import Tokenizer
from ponder.models.transformer import Transformer, rope_inv_freq
from ponder.models.weights import rename

log = logging.getLogger(__name__)

Q = gguf.GGMLQuantizationType
KERNEL_TYPES = frozenset({Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q4_K, Q.Q6_K})


def raw_rows(tensor: GGUFTensor) -> Tensor:
    """The tensor's bytes as uint8 [rows, bytes per row], a view of the memory-mapped file (no copy)."""
    with warnings.catch_warnings():  # the map is read-only, and nothing here writes to it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(tensor.data)


class GGUFLinear(nn.Module):
    """nn.Linear over a GGUF tensor's quantized bytes; `isa` picks the kernels' build (default: the best)."""

    def __init__(self, raw: Tensor, qtype: Q, in_features: int, bias: Tensor | None = None, isa: str | None = None):
        super().__init__()
        self.register_buffer("raw", raw, persistent=False)  # a buffer: model copies share it, as they do weights
        self.qtype, self.in_features, self.out_features, self.isa = qtype, in_features, raw.shape[0], isa
        self.bias = bias
        cpu_kernels.load_gguf(isa)  # built (or found built) now, not at the first step

    def dequantized(self) -> Tensor:
        """The fp32 weight [out, in] this layer computes with (up to the activations' rounding to int8)."""
        return torch.from_numpy(np.array(gguf.quants.dequantize(self.raw.numpy(), self.qtype), dtype=np.float32))

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        y = cpu_kernels.load_gguf(self.isa).gguf_matmul(x.reshape(-1, shape[-1]).float().contiguous(), self.raw, int(self.qtype))
        y = y.reshape(*shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class GGUFEmbedding(nn.Module):
    """Token embeddings from a GGUF tensor: only the rows looked up are dequantized."""

    def __init__(self, raw: Tensor, qtype: Q):
        super().__init__()
        self.register_buffer("raw", raw, persistent=False)
        self.qtype = qtype

    def forward(self, tokens: Tensor) -> Tensor:
        rows = self.raw[tokens.reshape(-1)].numpy()
        values = np.array(gguf.quants.dequantize(rows, self.qtype), dtype=np.float32)
        return torch.from_numpy(values).reshape(*tokens.shape, -1)


def _linear(tensor: GGUFTensor, in_features: int, out_features: int, bias: Tensor | None,
            rows: Tensor | None, path: Path) -> nn.Module:
    """A GGUFLinear where a kernel takes the tensor's type, else an fp32 nn.Linear; `rows` reorders the output
    rows (llama's q and k: a copy of those rows only)."""
    if [int(n) for n in tensor.shape] != [in_features, out_features]:
        raise BadCheckpoint(f"{path}: tensor {tensor.name} has shape {tensor.shape.tolist()[::-1]}, "
                            f"expected {[out_features, in_features]}: the file is not this model")
    if tensor.tensor_type in KERNEL_TYPES and in_features % 32 == 0 and (
            tensor.tensor_type not in (Q.Q4_K, Q.Q6_K) or in_features % 256 == 0):
        raw = raw_rows(tensor)
        return GGUFLinear(raw if rows is None else raw[rows].contiguous(), tensor.tensor_type, in_features, bias)
    log.info("%s: %s has no kernel here: dequantized to fp32", tensor.name, tensor.tensor_type.name)
    w = dequantize(tensor, path)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    layer.weight = nn.Parameter(w if rows is None else w[rows], requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias, requires_grad=False)
    return layer


def load_quantized(path: Path) -> LoadedModel:
    """A GGUF model whose linear layers and embedding read the file's quantized blocks as they are."""
    reader = open_gguf(path)
    meta = metadata(reader)
    by_name = {t.name: t for t in reader.tensors}
    cfg = config_from_gguf(meta, set(by_name), path)
    if ROPE_FREQS in by_name:
        cfg = cfg.replace(rope_freq_factors=tuple(dequantize(by_name.pop(ROPE_FREQS), path).tolist()))
    tensors = {ponder: by_name[name] for name, ponder in rename(by_name, GGUF_NAMES, str(path)).items()}
    with torch.device("meta"):  # the structure only: every tensor below comes from the file
        model = Transformer(cfg)
    model.inv_freq = rope_inv_freq(cfg)

    def get(name: str) -> GGUFTensor:
        if name not in tensors:
            raise BadCheckpoint(f"{path}: tensor {name!r} is missing: the file is incomplete or not this model")
        return tensors[name]

    def small(name: str) -> Tensor:  # norms and biases: fp32 in every file, kilobytes
        return dequantize(get(name), path)

    def order(heads: int, rows: int) -> Tensor | None:  # llama.cpp's q/k row order back to ponder's
        return unpermute(torch.arange(rows), heads) if cfg.arch == "llama" else None

    q_rows, kv_rows = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim

    for i, block in enumerate(model.layers):
        block.attn_norm.weight = nn.Parameter(small(f"layers.{i}.attn_norm.weight"), requires_grad=False)
        block.mlp_norm.weight = nn.Parameter(small(f"layers.{i}.mlp_norm.weight"), requires_grad=False)
        for x, heads, out in (("q", cfg.n_heads, q_rows), ("k", cfg.n_kv_heads, kv_rows), ("v", 0, kv_rows)):
            name = f"layers.{i}.attn.{x}"
            rows = order(heads, out) if heads else None
            bias = small(f"{name}.bias") if cfg.qkv_bias else None
            if bias is not None and rows is not None:
                bias = bias[rows]
            setattr(block.attn, x, _linear(get(f"{name}.weight"), cfg.dim, out, bias, rows, path))
        block.attn.o = _linear(get(f"layers.{i}.attn.o.weight"), q_rows, cfg.dim, None, None, path)
        for x, width, out in (("gate", cfg.dim, cfg.ffn_dim), ("up", cfg.dim, cfg.ffn_dim), ("down", cfg.ffn_dim, cfg.dim)):
            setattr(block.mlp, x, _linear(get(f"layers.{i}.mlp.{x}.weight"), width, out, None, None, path))
    model.norm.weight = nn.Parameter(small("norm.weight"), requires_grad=False)
    embed = get("embed.weight")
    model.embed = GGUFEmbedding(raw_rows(embed), embed.tensor_type)
    head = embed if cfg.tie_embeddings else get("head.weight")
    model.head = _linear(head, cfg.dim, cfg.vocab_size, None, None, path)
    return LoadedModel(model.eval(), Tokenizer.from_gguf(meta), path)
