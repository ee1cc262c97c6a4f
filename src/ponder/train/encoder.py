"""`ponder train encoder`: the image encoder every NVLM design shares (as NVLM's three share InternViT).

No package installs pretrained vision weights offline, so the small ViT learns to see here, from scratch: on
448-pixel tiles drawn for it (one to five 6-digit numbers among coloured shapes, a denser page than the task's
images), a linear head says for every feature cell which digit is centred in its left half and in its right half
(a cell is 32 pixels, digits stand ~22 apart) and which (shape, colour) is centred in it. Hundreds of labels a tile
instead of one answer an image: a first try that read the whole image's number through learned queries stayed at
chance after 1,000 images (docs/vision.md). The head is thrown away; the encoder is kept. Tiles come from seeds of
their own, never the evaluation images'. Resumable like `ponder train sft`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ponder.errors import BadParameter
from ponder.progress import Progress
from ponder.tasks.images import COLOURS, SHAPES, draw_number, draw_shapes
from ponder.train.checkpoints import done, keep_metrics_through, resume, save_checkpoint, write_json
from ponder.vision.encoder import EncoderConfig, ImageEncoder, to_pixels

TRAIN_SEEDS = 100_000  # training images use seeds from here on; evaluation uses small seeds
COMBOS = [f"{s} {c}" for s in SHAPES for c in COLOURS]
NONE_DIGIT = 10
# Almost every cell holds nothing: the empty class weighs little, or the head learns only "nothing".
DIGIT_WEIGHTS = torch.tensor([1.0] * 10 + [0.05])
SHAPE_WEIGHTS = torch.tensor([0.05] + [1.0] * len(COMBOS))


@dataclass(frozen=True)
class EncoderSettings:
    steps: int = 800
    batch_size: int = 16  # tiles a step
    lr: float = 1e-3
    save_every: int = 20
    seed: int = 0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.save_every) < 1 or self.lr <= 0:
            raise BadParameter("--steps, --batch-size and --save-every must be at least 1")

    def record(self) -> dict[str, Any]:
        return {"kind": "encoder", **asdict(self), "encoder": self.encoder.to_json()}


def pretraining_tile(rng: random.Random, size: int) -> tuple[Image.Image, list[tuple[str, float, float]]]:
    image, taken, marks = Image.new("RGB", (size, size), "white"), [], []
    for _ in range(rng.randint(1, 5)):
        draw_number(image, rng, taken, marks)
    draw_shapes(image, rng, rng.randint(2, 8), taken, lambda: (rng.choice(SHAPES), rng.choice(list(COLOURS))), [],
                marks)
    return image, marks


def cell_targets(marks: list[tuple[str, float, float]], size: int, grid: int) -> tuple[Tensor, Tensor]:
    """The digit centred in each cell's left and right half [grid, grid, 2] (NONE_DIGIT: none) and the shape
    centred in each cell [grid, grid] (0: none, else 1 + its index in COMBOS)."""
    digits = torch.full((grid, grid, 2), NONE_DIGIT)
    shapes = torch.zeros(grid, grid, dtype=torch.long)
    cell = size / grid
    for label, x, y in marks:
        i, j = int(y // cell), int(x // cell)
        if label.isdigit():
            digits[i, j, int(x % cell >= cell / 2)] = int(label)
        else:
            shapes[i, j] = 1 + COMBOS.index(label)
    return digits, shapes


def batch(step: int, settings: EncoderSettings) -> tuple[Tensor, Tensor, Tensor]:
    cfg = settings.encoder
    tiles = [pretraining_tile(random.Random(f"encoder/{TRAIN_SEEDS + step}/{i}"), cfg.size)
             for i in range(settings.batch_size)]
    pixels = to_pixels([im for im, _ in tiles])
    targets = [cell_targets(marks, cfg.size, cfg.grid) for _, marks in tiles]
    return pixels, torch.stack([d for d, _ in targets]), torch.stack([s for _, s in targets])


def train_encoder(out: Path, settings: EncoderSettings, say: Callable[[str], None] = print,
                  progress: bool = True) -> Path:
    """`out` then holds encoder.safetensors and encoder.json (and the run's train.json and metrics.jsonl)."""
    record = settings.record()
    if done(out, record, say):
        return out
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "train.json", record)
    torch.manual_seed(settings.seed)
    cfg = settings.encoder
    net = nn.ModuleDict({"encoder": ImageEncoder(cfg), "head": nn.Linear(cfg.dim, 2 * 11 + 1 + len(COMBOS))})
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=0.05)
    schedule = schedule_for(optimizer, settings.steps)
    start = resume(out / "checkpoint.pt", net, optimizer, schedule, say)
    keep_metrics_through(out / "metrics.jsonl", start)
    last: dict[str, Any] = {}
    with Progress(settings.steps, "training the encoder", done=start, unit="steps", every=60.0, enabled=progress,
                  info=lambda: f"loss {last['loss']:.3f}, digits read {last['digits_read']:.2f}" if last else ""
                  ) as bar, (out / "metrics.jsonl").open("a") as log:
        for step in range(start, settings.steps):
            began = time.perf_counter()
            pixels, digits, shapes = batch(step, settings)
            logits = net["head"](net["encoder"](pixels))  # [B, grid, grid, 22 + 1 + combos]
            digit_logits = logits[..., :22].unflatten(-1, (2, 11))
            shape_logits = logits[..., 22:]
            loss = (nn.functional.cross_entropy(digit_logits.flatten(0, -2), digits.flatten(), weight=DIGIT_WEIGHTS)
                    + nn.functional.cross_entropy(shape_logits.flatten(0, -2), shapes.flatten(), weight=SHAPE_WEIGHTS))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            last = {"step": step + 1, "loss": round(loss.item(), 4),
                    "digits_read": _share(digit_logits.argmax(-1), digits, digits != NONE_DIGIT),
                    "shapes_named": _share(shape_logits.argmax(-1), shapes, shapes != 0),
                    "tiles_per_s": round(len(pixels) / (time.perf_counter() - began), 2)}
            log.write(json.dumps(last) + "\n")
            log.flush()
            bar.update(step + 1)
            if (step + 1) % settings.save_every == 0 and step + 1 < settings.steps:
                save_checkpoint(out / "checkpoint.pt", net, optimizer, schedule, step + 1)
    save_file({k: v.contiguous() for k, v in net["encoder"].state_dict().items()}, out / "encoder.safetensors")
    write_json(out / "encoder.json", cfg.to_json())
    write_json(out / "train.json", record | {"done": True})
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return out


def _share(predicted: Tensor, target: Tensor, where: Tensor) -> float:
    """How many of the labelled cells the head got right."""
    return round((predicted == target)[where].float().mean().item(), 4) if where.any() else float("nan")


def load_encoder(folder: Path) -> ImageEncoder:
    if not (folder / "encoder.safetensors").is_file():
        raise BadParameter(f"{folder} holds no trained encoder: run `ponder train encoder --out {folder}` first")
    encoder = ImageEncoder(EncoderConfig.from_json(json.loads((folder / "encoder.json").read_text())))
    encoder.load_state_dict(load_file(folder / "encoder.safetensors"))
    return encoder


def schedule_for(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over a tenth of the steps, then linear decay to 0 (as the chat trainer)."""
    warm = max(1, steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
