"""The value head: a small network on the frozen policy's hidden states, saved with a card.

Inputs are standardised with the training set's mean and spread (stored in the head), then a one-
hidden-layer MLP (or, with hidden = 0, logistic regression) gives a logit. A head only means
something on the model whose states it was trained on: its card records that model's fingerprint,
and loading it for another model is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ponder.errors import BadCheckpoint, BadParameter
from ponder.models.transformer import Transformer


class ValueHead(nn.Module):
    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.net = (nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1)) if hidden
                    else nn.Linear(dim, 1))

    def forward(self, states: Tensor) -> Tensor:
        """Logits [...] for states [..., dim]."""
        return self.net((states.float() - self.mean) / self.std).squeeze(-1)

    def probability(self, states: Tensor) -> Tensor:
        """The estimated chance [...] that a solution reaches the right answer from these states."""
        return torch.sigmoid(self(states))


def fingerprint(model: Transformer) -> str:
    """Which weights a head belongs to: the configuration, token embeddings and final norm (the same for
    the model's fp32 and int8 forms, different for any other model or fine-tune)."""
    digest = hashlib.sha256(json.dumps(model.cfg.__dict__, sort_keys=True, default=str).encode())
    for tensor in (model.embed.weight, model.norm.weight):
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_head(path: Path, head: ValueHead, card: dict[str, Any]) -> None:
    """The head as safetensors and its card as JSON beside it (PATH.json); each written whole, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    card = card | {"dim": head.dim, "hidden": head.hidden}
    weights, about = path.with_name(path.name + ".partial"), path.with_name(path.name + ".json.partial")
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(weights))
    about.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(about, card_path(path))
    os.replace(weights, path)


def card_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def load_head(path: Path, model: Transformer | None = None) -> tuple[ValueHead, dict[str, Any]]:
    """A saved head and its card; with `model`, refused unless it was trained on that model's states."""
    path = Path(path)
    if not path.is_file() or not card_path(path).is_file():
        raise BadParameter(f"no value head at {path} (with its card {card_path(path).name}): "
                           "train one with `ponder prm train`")
    try:
        card = json.loads(card_path(path).read_text())
        head = ValueHead(int(card["dim"]), int(card["hidden"]))
        head.load_state_dict(load_file(str(path)))
    except (KeyError, ValueError, RuntimeError, OSError) as e:
        raise BadCheckpoint(f"{path} is not a ponder value head ({type(e).__name__}: {e}); train it again") from None
    if model is not None and card.get("base", {}).get("fingerprint") != fingerprint(model):
        base = card.get("base", {}).get("model", "another model")
        raise BadParameter(f"{path.name} was trained on the states of {base}, not of this model: "
                           "train a head for it with `ponder prm label` and `ponder prm train --model ...`")
    return head.eval(), card
