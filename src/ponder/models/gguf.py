"""GGUF files (llama.cpp's format) to a ModelConfig, ponder-named fp32 tensors and a Tokenizer."""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Any, NamedTuple

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


class GGUFTensor(NamedTuple):
    name: str
    tensor_type: gguf.GGMLQuantizationType
    shape: np.ndarray  # fastest dimension first, as GGUF lists it
    data: np.ndarray  # a view of the memory-mapped file: uint8 [rows, bytes per row] when quantized, else values
    data_offset: int
    n_bytes: int


class GGUFFile(NamedTuple):
    metadata: dict[str, Any]
    tensors: list[GGUFTensor]


# Written here rather than using gguf.GGUFReader, which makes a Python object for every array element: ten
# seconds for Qwen's 151,936-token vocabulary, where these struct reads and numpy views take a fraction of one.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def _read_gguf(path: Path) -> GGUFFile:
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    mv = memoryview(buf)
    pos = 0

    def take(fmt: str) -> Any:
        nonlocal pos
        (value,) = struct.unpack_from(fmt, mv, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("<Q")
        pos += n
        return bytes(mv[pos - n: pos]).decode("utf-8", errors="replace")

    def value(kind: int) -> Any:
        nonlocal pos
        if kind == _STRING:
            return string()
        if kind != _ARRAY:
            return take(_SCALARS[kind])
        item, n = take("<I"), take("<Q")
        if item in _SCALARS:  # numbers: one numpy view
            dtype = np.dtype(_SCALARS[item])
            values = np.frombuffer(mv, dtype=dtype, count=n, offset=pos).tolist()
            pos += n * dtype.itemsize
            return values
        return [value(item) for _ in range(n)]

    if bytes(mv[:4]) != b"GGUF":
        raise ValueError("not GGUF")
    pos = 4
    version, n_tensors, n_kv = take("<I"), take("<Q"), take("<Q")
    if version < 2:
        raise ValueError(f"GGUF version {version}")
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = string()
        meta[key] = value(take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("<Q") for _ in range(take("<I"))]
        infos.append((name, gguf.GGMLQuantizationType(take("<I")), dims, take("<Q")))
    align = meta.get("general.alignment", 32)
    start = -(-pos // align) * align
    tensors = []
    for name, qtype, dims, offset in infos:
        block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        rows = int(np.prod(dims[1:]))
        n_bytes = rows * dims[0] // block * block_bytes
        raw = buf[start + offset: start + offset + n_bytes]
        if len(raw) < n_bytes:
            raise ValueError(f"tensor {name} runs past the end")
        if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            data = raw.view(np.float32 if qtype == gguf.GGMLQuantizationType.F32 else np.float16).reshape(dims[::-1])
        else:
            data = raw.reshape(rows, -1)
        tensors.append(GGUFTensor(name, qtype, np.array(dims), data, start + offset, n_bytes))
    return GGUFFile(meta, tensors)


def open_gguf(path: Path) -> GGUFFile:
    """A well-formed GGUF file's metadata and memory-mapped tensors, or a one-line BadCheckpoint saying what is
    wrong."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise BadCheckpoint(f"{path} is not a GGUF file: pass a .gguf file or a checkpoint folder")
    try:
        return _read_gguf(path)
    except (ValueError, struct.error, UnicodeDecodeError, KeyError, IndexError) as e:
        raise BadCheckpoint(f"{path} is truncated or corrupt ({type(e).__name__}: {e}): download it again") from None


def metadata(reader: GGUFFile) -> dict[str, Any]:
    return reader.metadata


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
