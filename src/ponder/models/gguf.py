"""GGUF files (llama.cpp's format) to a ModelConfig, ponder-named fp32 tensors and a Tokenizer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from torch import Tensor

from ponder.errors import BadCheckpoint, UnsupportedModel
from ponder.models.config import ARCHITECTURES, ModelConfig
from ponder.models.tokenizer import Tokenizer
from ponder.models.weights import NameTable, rename

GGUF_NAMES: NameTable = [
    ("token_embd.weight", "embed.weight"),
    ("output_norm.weight", "norm.weight"),
    ("output.weight", "head.weight"),
    ("blk.{i}.attn_norm.weight", "layers.{i}.attn_norm.weight"),
    *[(f"blk.{{i}}.attn_{x}.{p}", f"layers.{{i}}.attn.{x}.{p}") for x in "qkv" for p in ("weight", "bias")],
    ("blk.{i}.attn_output.weight", "layers.{i}.attn.o.weight"),
    ("blk.{i}.ffn_norm.weight", "layers.{i}.mlp_norm.weight"),
    *[(f"blk.{{i}}.ffn_{x}.weight", f"layers.{{i}}.mlp.{x}.weight") for x in ("gate", "up", "down")],
]
ROPE_FREQS = "rope_freqs.weight"

log = logging.getLogger(__name__)


def open_gguf(path: Path) -> gguf.GGUFReader:
    """A reader for a well-formed GGUF file, or a one-line BadCheckpoint saying what is wrong."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise BadCheckpoint(f"{path} is not a GGUF file: pass a .gguf file or a checkpoint folder")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:
        raise BadCheckpoint(f"{path} is truncated or corrupt ({type(e).__name__}): download it again") from None
    end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    if end > path.stat().st_size:
        raise BadCheckpoint(f"{path} is truncated ({path.stat().st_size} of {end} bytes): download it again")
    return reader


def metadata(reader: gguf.GGUFReader) -> dict[str, Any]:
    return {name: field.contents() for name, field in reader.fields.items()}


def config_from_gguf(meta: dict[str, Any], tensor_names: set[str], path: Path) -> ModelConfig:
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise UnsupportedModel(f"{path}: architecture {arch!r} is not supported: "
                               f"ponder runs {', '.join(ARCHITECTURES)}")
    if meta.get(f"{arch}.rope.scaling.type", "none") not in ("none", "linear") or \
            meta.get(f"{arch}.rope.scaling.factor", 1.0) != 1.0:
        raise UnsupportedModel(f"{path}: rope scaling {meta.get(f'{arch}.rope.scaling.type')!r} is not supported")

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise BadCheckpoint(f"{path}: metadata {arch}.{key} is missing: the file is incomplete")
        return value

    n_heads = get("attention.head_count")
    dim = get("embedding_length")
    return ModelConfig(
        arch=arch,
        vocab_size=get("vocab_size", len(meta.get("tokenizer.ggml.tokens", ()))),
        dim=dim,
        n_layers=get("block_count"),
        n_heads=n_heads,
        n_kv_heads=get("attention.head_count_kv", n_heads),
        ffn_dim=get("feed_forward_length"),
        head_dim=get("attention.key_length", dim // n_heads),
        norm_eps=get("attention.layer_norm_rms_epsilon"),
        rope_theta=get("rope.freq_base", 10000.0),
        max_seq_len=get("context_length"),
        tie_embeddings="output.weight" not in tensor_names,
        qkv_bias="blk.0.attn_q.bias" in tensor_names,
    )


def unpermute(w: Tensor, n_heads: int) -> Tensor:
    """Undo llama.cpp's q/k row order (its rope pairs rows 2i, 2i+1; ponder pairs i, i + d/2)."""
    return w.reshape(n_heads, w.shape[0] // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def dequantize(tensor: Any, path: Path) -> Tensor:
    try:
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError:
        raise UnsupportedModel(
            f"{path}: tensor {tensor.name} is {tensor.tensor_type.name}, which gguf-py cannot dequantize") from None
    return torch.from_numpy(np.array(array, dtype=np.float32))  # a writable copy


def load_gguf(path: Path) -> tuple[ModelConfig, dict[str, Tensor], Tokenizer]:
    """Config, dequantized fp32 tensors in ponder's names and layout, and the tokenizer."""
    reader = open_gguf(path)
    meta = metadata(reader)
    by_name = {t.name: t for t in reader.tensors}
    cfg = config_from_gguf(meta, set(by_name), path)
    tokenizer = Tokenizer.from_gguf(meta)
    if ROPE_FREQS in by_name:
        factors = by_name.pop(ROPE_FREQS)
        cfg = cfg.replace(rope_freq_factors=tuple(dequantize(factors, path).tolist()))
    names = rename(by_name, GGUF_NAMES, str(path))
    log.info("dequantizing %s (once: the result is cached)", path)
    tensors = {}
    for name, tensor in by_name.items():
        w = dequantize(tensor, path)
        if cfg.arch == "llama" and names[name].split(".")[-2] in ("q", "k"):
            w = unpermute(w, cfg.n_heads if ".q." in names[name] else cfg.n_kv_heads)
        tensors[names[name]] = w
    return cfg, tensors, tokenizer
