"""Checkpoint names to ponder's names, and a state loader that checks every key and shape."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from ponder.errors import BadCheckpoint
from ponder.models.config import ModelConfig
from ponder.models.transformer import Transformer

NameTable = list[tuple[str, str]]  # (checkpoint pattern, ponder template); {i} is the layer index


def _compile(table: NameTable) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(re.escape(src).replace(r"\{i\}", r"(?P<i>\d+)") + "$"), dst)
            for src, dst in table]


def rename(names: Iterable[str], table: NameTable, source: str) -> dict[str, str]:
    """Map each checkpoint tensor name to ponder's; an unknown name is a bad checkpoint."""
    rules, out = _compile(table), {}
    for name in names:
        for pattern, template in rules:
            if m := pattern.match(name):
                out[name] = template.format(**m.groupdict())
                break
        else:
            raise BadCheckpoint(f"{source}: unexpected tensor {name!r}: is this a Llama/Qwen2 checkpoint?")
    return out


def reverse(table: NameTable) -> NameTable:
    return [(dst, src) for src, dst in table]


def build_model(cfg: ModelConfig, tensors: Mapping[str, Tensor], source: str,
                dtype: torch.dtype = torch.float32) -> Transformer:
    """A model holding exactly `tensors` (ponder names): every key present, every shape right."""
    with torch.device("meta"):
        model = Transformer(cfg)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if cfg.tie_embeddings:
        expected.pop("head.weight")
    for name in expected.keys() - tensors.keys():
        raise BadCheckpoint(f"{source}: tensor {name!r} is missing: the file is incomplete or not this model")
    for name in tensors.keys() - expected.keys():
        raise BadCheckpoint(f"{source}: unexpected tensor {name!r} for this configuration")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != tuple(shape):
            raise BadCheckpoint(
                f"{source}: tensor {name!r} has shape {tuple(tensors[name].shape)}, expected {tuple(shape)}")
    model.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=False, assign=True)
    if cfg.tie_embeddings:
        model.head.weight = model.embed.weight
    return model.eval()
