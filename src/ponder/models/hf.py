"""Hugging Face checkpoint folders: config.json, (sharded) *.safetensors, tokenizer files.

ponder also writes this format: a dequantized GGUF is cached as such a folder, so that a second
load is a memory-mapped read and transformers or vLLM can load the very same weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ponder.errors import BadCheckpoint
from ponder.models.config import ModelConfig
from ponder.models.tokenizer import Tokenizer
from ponder.models.weights import NameTable, rename, reverse

HF_NAMES: NameTable = [
    ("model.embed_tokens.weight", "embed.weight"),
    ("model.norm.weight", "norm.weight"),
    ("lm_head.weight", "head.weight"),
    ("model.layers.{i}.input_layernorm.weight", "layers.{i}.attn_norm.weight"),
    *[(f"model.layers.{{i}}.self_attn.{x}_proj.{p}", f"layers.{{i}}.attn.{x}.{p}")
      for x in "qkvo" for p in ("weight", "bias")],
    ("model.layers.{i}.post_attention_layernorm.weight", "layers.{i}.mlp_norm.weight"),
    *[(f"model.layers.{{i}}.mlp.{x}_proj.weight", f"layers.{{i}}.mlp.{x}.weight") for x in ("gate", "up", "down")],
]


def read_config(folder: Path) -> ModelConfig:
    """A checkpoint folder's configuration, without its weights."""
    if not (folder / "config.json").exists():
        raise BadCheckpoint(f"{folder} has no config.json: pass a Hugging Face checkpoint folder or a .gguf file")
    return ModelConfig.from_hf(json.loads((folder / "config.json").read_text()))


def read_folder(folder: Path) -> tuple[ModelConfig, dict[str, Tensor]]:
    """Config and tensors (ponder names) of a checkpoint folder; weight files are memory-mapped."""
    cfg = read_config(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise BadCheckpoint(f"{folder} has no *.safetensors files: ponder reads safetensors checkpoints")
    tensors: dict[str, Tensor] = {}
    for file in files:
        try:
            tensors |= load_file(file)
        except (SafetensorError, OSError) as e:
            raise BadCheckpoint(f"{file} is truncated or corrupt ({e}): download it again") from None
    if cfg.tie_embeddings:
        tensors.pop("lm_head.weight", None)  # some tied checkpoints store the head anyway
    names = rename(tensors, HF_NAMES, str(folder))
    return cfg, {names[k]: v for k, v in tensors.items()}


def write_folder(folder: Path, cfg: ModelConfig, tensors: dict[str, Tensor], tokenizer: Tokenizer) -> None:
    """Write a checkpoint folder that transformers' from_pretrained and ponder both load."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg.to_hf(), indent=1))
    names = rename(tensors, reverse(HF_NAMES), str(folder))
    save_file({names[k]: v.contiguous() for k, v in tensors.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})
    tokenizer.save(folder)
