"""What every resumable training run keeps in its folder: the settings (train.json, marked done at the end), the
checkpoint (trainable weights, optimizer, schedule, step), metrics.jsonl, each written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ponder.errors import BadParameter


def resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
            say: Callable[[str], None]) -> int:
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["trainable"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    say(f"resuming from step {state['step']} ({path})")
    return int(state["step"])


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
                     step: int) -> None:
    """The trainable weights and every buffer that training moves (batch norm's running statistics), not the rest."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    trainable |= {n for n, _ in model.named_buffers()}
    weights = {k: v for k, v in model.state_dict().items() if k in trainable}
    atomic_save({"trainable": weights, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                  "step": step}, path)


def keep_metrics_through(path: Path, step: int) -> None:
    """metrics.jsonl without the steps after the checkpoint (they are trained again)."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))

def done(out: Path, record: dict[str, Any], say: Callable[[str], None]) -> bool:
    path = out / "train.json"
    if not path.is_file():
        if out.exists() and any(out.iterdir()):
            raise BadParameter(f"{out} exists and is not a training folder: give --out a new or empty folder")
        return False
    previous = json.loads(path.read_text())
    if {k: v for k, v in previous.items() if k != "done"} != record:
        raise BadParameter(f"{out} holds a training run with other settings: give --out a new folder")
    if previous.get("done"):
        say(f"{out} is already trained: nothing to do")
        return True
    return False

def write_json(path: Path, value: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(partial, path)

def atomic_save(value: Any, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    torch.save(value, partial)
    os.replace(partial, path)
