"""`ponder train vision`: one NVLM design (D, X or H) on a frozen decoder and a frozen shared encoder, in NVLM's
two stages, resumably.

- Stage 1: the projector (and X's and H's gated cross-attention blocks) learn to caption the images (the number,
  then how many shapes of each kind and colour); decoder and encoder frozen.
- Stage 2: LoRA adapters on every linear layer of the decoder learn as well, on the questions themselves (the
  encoder stays frozen, as NVLM's).

Each step draws its images fresh from training seeds (half reading, half counting; evaluation uses small seeds).
A checkpoint holds the trainable weights and the optimizer; the one at the stage boundary is always a stage-2 one,
so a restart knows which stage it is in from the step alone. The result is a vision folder (`vision.checkpoint`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ponder.errors import BadParameter
from ponder.models.loader import load
from ponder.progress import Progress
from ponder.tasks.images import caption, questions
from ponder.train.checkpoints import done, keep_metrics_through, resume, save_checkpoint, write_json
from ponder.train.encoder import TRAIN_SEEDS, load_encoder, schedule_for
from ponder.train.lora import add_lora
from ponder.vision.checkpoint import save_vision
from ponder.vision.model import VisionConfig, VisionLanguageModel, default_device

CAPTION = "Describe the image: the number written in it, and how many shapes of each kind and colour."


@dataclass(frozen=True)
class VisionSettings:
    design: str = "d"
    tags: bool = True
    thumbnail: bool = True
    base: str = "smollm2-135m-instruct"
    encoder: str = ""  # the folder of `ponder train encoder`
    stage1_steps: int = 150
    stage2_steps: int = 150
    batch_size: int = 8  # images a step, half reading and half counting
    micro_batch: int = 4
    lr: float = 1e-3  # stage 1; stage 2 (LoRA and connector) uses lr / 5
    lora_rank: int = 8
    save_every: int = 10
    seed: int = 0
    bf16: bool = True

    def __post_init__(self) -> None:
        VisionConfig(design=self.design, tags=self.tags, thumbnail=self.thumbnail)  # checks the design
        if min(self.stage1_steps, self.batch_size, self.micro_batch, self.save_every) < 1 or self.stage2_steps < 0:
            raise BadParameter("steps, --batch-size, --micro-batch and --save-every must be at least 1")


def train_vision(out: Path, settings: VisionSettings, say: Callable[[str], None] = print,
                 progress: bool = True) -> Path:
    record = {"kind": "vision", **asdict(settings)}
    if done(out, record, say):
        return out
    encoder = load_encoder(Path(settings.encoder))
    loaded = load(settings.base)
    cfg = VisionConfig(design=settings.design, tags=settings.tags, thumbnail=settings.thumbnail,
                       encoder=encoder.cfg)
    torch.manual_seed(settings.seed)
    model = VisionLanguageModel(loaded.model, loaded.tokenizer, cfg)
    model.encoder.load_state_dict(encoder.state_dict())
    model.to(default_device())  # the same steps on a GPU, faster
    model.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.xattn.requires_grad_(True)
    model.train()
    model.encoder.eval()  # frozen, batch norm statistics included
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "train.json", record)
    steps = settings.stage1_steps + settings.stage2_steps
    checkpoint = out / "checkpoint.pt"
    peek = torch.load(checkpoint, weights_only=True)["step"] if checkpoint.is_file() else 0
    optimizer, schedule = _stage(model, settings, 2 if peek >= settings.stage1_steps else 1)
    start = resume(checkpoint, model, optimizer, schedule, say)
    keep_metrics_through(out / "metrics.jsonl", start)
    last: dict[str, Any] = {}
    with Progress(steps, f"training NVLM-{settings.design.upper()}", done=start, unit="steps", every=60.0,
                  enabled=progress, info=lambda: f"loss {last['loss']:.3f}, {last['tokens_per_s']:.0f} tokens/s"
                  if last else "") as bar, (out / "metrics.jsonl").open("a") as log:
        for step in range(start, steps):
            if step == settings.stage1_steps and start < step:  # (resumed at the boundary: already stage 2)
                optimizer, schedule = _stage(model, settings, 2)
                save_checkpoint(checkpoint, model, optimizer, schedule, step)
            last = _step(model, settings, step, optimizer, schedule)
            log.write(json.dumps(last) + "\n")
            log.flush()
            bar.update(step + 1)
            if (step + 1) % settings.save_every == 0 and step + 1 != settings.stage1_steps and step + 1 < steps:
                save_checkpoint(checkpoint, model, optimizer, schedule, step + 1)
    adapters = {k: v for k, v in model.decoder.state_dict().items() if "lora_" in k}
    adapters = {f"decoder.{k.replace('.default.weight', '').replace('base_layer.', '')}": v
                for k, v in adapters.items()}
    save_vision(out, model, settings.base, adapters, settings.lora_rank if adapters else 0, 2.0)
    write_json(out / "train.json", record | {"done": True})
    checkpoint.unlink(missing_ok=True)
    say(f"trained {steps} steps: `ponder generate {out} --image FILE \"What number is written in the image?\"`")
    return out


def _in_stage_2(model: VisionLanguageModel) -> bool:
    return any("lora_" in name for name, _ in model.decoder.named_parameters())


def _stage(model: VisionLanguageModel, settings: VisionSettings, stage: int) -> tuple[Any, Any]:
    """The optimizer and schedule of a stage; stage 2 first adds the adapters (alpha = 2 x rank: scale 2)."""
    if stage == 1:
        lr, steps = settings.lr, settings.stage1_steps
    else:
        if not _in_stage_2(model) and settings.lora_rank:
            add_lora(model.decoder, settings.lora_rank)
        lr, steps = settings.lr / 5, max(1, settings.stage2_steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    return optimizer, schedule_for(optimizer, steps)


def _step(model: VisionLanguageModel, settings: VisionSettings, step: int, optimizer: Any, schedule: Any
          ) -> dict[str, Any]:
    began = time.perf_counter()
    half = settings.batch_size // 2
    qs = (questions("reading", half, TRAIN_SEEDS + step)
          + questions("counting", settings.batch_size - half, TRAIN_SEEDS + step))
    stage = 1 if step < settings.stage1_steps else 2
    # Stage 1 learns from captions (the number and every shape, many answer tokens an image), stage 2 from the
    # questions themselves: NVLM's (and LLaVA's) order, pretraining on captions, then fine-tuning on tasks.
    asked = [(CAPTION, caption(q)) if stage == 1 else (q.question, q.answer) for q in qs]
    items = [(model.layout(question, tiles := model.tiles(q.image), answer), tiles)
             for q, (question, answer) in zip(qs, asked)]
    answer_tokens = sum(sum(t != -100 for t in seq.labels) for seq, _ in items)
    optimizer.zero_grad()
    total, seen = 0.0, 0
    autocast = torch.autocast(model.device.type, dtype=torch.bfloat16) if settings.bf16 else contextlib.nullcontext()
    for i in range(0, len(items), settings.micro_batch):
        chunk = items[i:i + settings.micro_batch]
        with autocast:
            loss, n = model.loss([seq for seq, _ in chunk], [tiles for _, tiles in chunk])
        (loss * n / answer_tokens).backward()  # the step's mean over all its answer tokens
        total += loss.item() * n
        seen += sum(len(seq.ids) for seq, _ in chunk)
    trainable = [p for p in model.parameters() if p.requires_grad]
    nn.utils.clip_grad_norm_(trainable, 1.0)
    optimizer.step()
    schedule.step()
    seconds = time.perf_counter() - began
    return {"step": step + 1, "stage": stage,
            "loss": round(total / answer_tokens, 4), "tokens_per_s": round(seen / seconds, 1),
            "images_per_s": round(len(qs) / seconds, 3), "lr": schedule.get_last_lr()[0], "device": model.device.type}
