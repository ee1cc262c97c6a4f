"""`ponder train encoder`: the image encoder every NVLM design shares (as NVLM's three share InternViT).

No package installs pretrained vision weights offline, so the small ViT learns to see here, from scratch, through a
readout head (learned queries over all tiles' features, two transformer decoder layers) that reads the number's six
digits and counts every (shape, colour) on synthetic images of training seeds (100000 and up; evaluation uses small
seeds). The head is thrown away; the encoder is kept. Resumable like `ponder train sft`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ponder.errors import BadParameter
from ponder.progress import Progress
from ponder.tasks.images import COLOURS, SHAPES, ImageQuestion, questions
from ponder.train.checkpoints import done, keep_metrics_through, resume, save_checkpoint, write_json
from ponder.vision.encoder import EncoderConfig, ImageEncoder
from ponder.vision.tiling import tile

TRAIN_SEEDS = 100_000  # training questions use seeds from here on; evaluation uses small seeds
COMBOS = [(s, c) for s in SHAPES for c in COLOURS]
MAX_COUNT = 7  # counts above are one class


@dataclass(frozen=True)
class EncoderSettings:
    steps: int = 600
    batch_size: int = 8
    lr: float = 1e-3
    save_every: int = 20
    seed: int = 0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def record(self) -> dict[str, Any]:
        return {"kind": "encoder", **asdict(self), "encoder": self.encoder.to_json()}


class Readout(nn.Module):
    """Six digit queries and one query per (shape, colour) attend to every tile's features."""

    def __init__(self, dim: int, heads: int, max_tiles: int = 7):
        super().__init__()
        self.tile = nn.Embedding(max_tiles, dim)
        self.queries = nn.Parameter(torch.randn(6 + len(COMBOS), dim) * 0.02)
        layer = nn.TransformerDecoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, 2)
        self.digits = nn.Linear(dim, 11)  # 0-9, or 10: no number in the image
        self.counts = nn.Linear(dim, MAX_COUNT + 1)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """features [B, tiles, h, w, dim] -> digit logits [B, 6, 11], count logits [B, combos, MAX_COUNT + 1]."""
        B, n, h, w, d = features.shape
        memory = (features + self.tile.weight[:n, None, None]).reshape(B, n * h * w, d)
        out = self.decoder(self.queries.expand(B, -1, -1), memory)
        return self.digits(out[:, :6]), self.counts(out[:, 6:])


def readout_targets(qs: list[ImageQuestion]) -> tuple[Tensor, Tensor]:
    digits = [[int(c) for c in q.answer] if q.kind == "reading" else [10] * 6 for q in qs]
    counts = [[min(Counter(q.shapes)[combo], MAX_COUNT) for combo in COMBOS] for q in qs]
    return torch.tensor(digits), torch.tensor(counts)


def tile_pixels(qs: list[ImageQuestion], size: int) -> Tensor:
    """[B, tiles, 3, size, size] in [0, 1]: every image's tiles and thumbnail (all images here are one size)."""
    import numpy as np

    groups = []
    for q in qs:
        t = tile(q.image, size=size)
        groups.append(np.stack([np.asarray(im) for im in [*t.tiles, t.thumbnail]]))
    return torch.from_numpy(np.stack(groups)).permute(0, 1, 4, 2, 3).float().div(255)


def train_encoder(out: Path, settings: EncoderSettings, say: Callable[[str], None] = print,
                  progress: bool = True) -> Path:
    """The encoder alone, through the readout head; `out` then holds encoder.safetensors and encoder.json."""
    record = settings.record()
    if done(out, record, say):
        return out
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "train.json", record)
    torch.manual_seed(settings.seed)
    cfg = settings.encoder
    net = nn.ModuleDict({"encoder": ImageEncoder(cfg), "readout": Readout(cfg.dim, cfg.heads)})
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=0.05)
    schedule = schedule_for(optimizer, settings.steps)
    start = resume(out / "checkpoint.pt", net, optimizer, schedule, say)
    keep_metrics_through(out / "metrics.jsonl", start)
    last: dict[str, Any] = {}
    with Progress(settings.steps, "training the encoder", done=start, unit="steps", every=60.0, enabled=progress,
                  info=lambda: f"loss {last['loss']:.3f}, digits right {last['digit_accuracy']:.2f}" if last else ""
                  ) as bar, (out / "metrics.jsonl").open("a") as log:
        for step in range(start, settings.steps):
            began = time.perf_counter()
            half = settings.batch_size // 2
            qs = (questions("reading", half, TRAIN_SEEDS + step)
                  + questions("counting", settings.batch_size - half, TRAIN_SEEDS + step))
            pixels = tile_pixels(qs, cfg.size)
            B, n = pixels.shape[:2]
            features = net["encoder"](pixels.flatten(0, 1)).unflatten(0, (B, n))
            digit_logits, count_logits = net["readout"](features)
            digits, counts = readout_targets(qs)
            loss = (nn.functional.cross_entropy(digit_logits.flatten(0, 1), digits.flatten())
                    + nn.functional.cross_entropy(count_logits.flatten(0, 1), counts.flatten()))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            reading = [i for i, q in enumerate(qs) if q.kind == "reading"]
            metrics = {"step": step + 1, "loss": round(loss.item(), 4),
                       "digit_accuracy": round((digit_logits.argmax(-1) == digits)[reading].float().mean().item(), 4),
                       "count_accuracy": round((count_logits.argmax(-1) == counts).float().mean().item(), 4),
                       "images_per_s": round(B / (time.perf_counter() - began), 2)}
            log.write(json.dumps(metrics) + "\n")
            log.flush()
            last = metrics
            bar.update(step + 1)
            if (step + 1) % settings.save_every == 0 and step + 1 < settings.steps:
                save_checkpoint(out / "checkpoint.pt", net, optimizer, schedule, step + 1)
    save_file({k: v.contiguous() for k, v in net["encoder"].state_dict().items()}, out / "encoder.safetensors")
    write_json(out / "encoder.json", cfg.to_json())
    write_json(out / "train.json", record | {"done": True})
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return out


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
