"""`ponder train sft|dpo`: fine-tune any model ponder loads, fully or with LoRA, resumably, into a model folder.

One loop for both losses. A step takes `batch_size` rows (pairs for DPO) in a fixed seeded order, in micro-batches
whose losses are normalised by the whole step's counts, so a step is the same whatever the micro-batch size or the
number of processes. Several processes (torchrun, accelerate launch) each take their share of every step; their
gradients are averaged by DistributedDataParallel: no launcher of ponder's own.

DIR holds, while training: `train.json` (the settings), `metrics.jsonl` (one object per step), `checkpoint.pt`
(every `save_every` steps: the trainable weights, the optimizer, the step) and for DPO `reference.pt` (the
reference model's log-probabilities, computed once). Killed at any point and started again, it continues from the
checkpoint. At the end DIR becomes a model folder (config.json, model.safetensors with LoRA merged, tokenizer)
that every ponder command and transformers load; a LoRA run also keeps its adapters alone (adapter/),
from which a finished run's folder is made again when only they and train.json are there (a snapshot).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ponder.errors import BadParameter
from ponder.models.hf import write_folder
from ponder.models.loader import LoadedModel, load
from ponder.progress import Progress
from ponder.train.checkpoints import atomic_save, done, keep_metrics_through, resume, save_checkpoint, write_json
from ponder.train.data import PROMPT, Pair, Skipped, Tokenized, load_pairs, load_sft
from ponder.train.lora import ADAPTER, add_lora, load_adapter, merge_lora, save_adapter
from ponder.train.losses import TokenLogps, collate, dpo_terms, token_logps
from ponder.train.memory import check_memory

KINDS = ("sft", "dpo")


@dataclass(frozen=True)
class TrainSettings:
    kind: str = "sft"
    steps: int | None = None  # None: one pass over the data
    batch_size: int = 16  # rows (DPO: pairs) per optimizer step, all processes together
    micro_batch: int = 4  # rows per forward pass
    lr: float | None = None  # None: by kind and LoRA (see `learning_rate`)
    lora_rank: int = 0  # 0: full fine-tuning
    beta: float = 0.1  # DPO
    nll_weight: float = 0.2  # DPO: the NLL term on the chosen response, as Llama 3
    mask_formatting: bool = True  # DPO: compare content only (Llama 3); False: the end of turn too (as TRL)
    max_length: int = 1024  # tokens; longer rows are skipped and counted, never truncated
    save_every: int = 50
    warmup: float = 0.1  # share of the steps with a rising learning rate (then linear decay to 0)
    seed: int = 0
    bf16: bool = False  # autocast (the default on a GPU)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadParameter(f"unknown training kind {self.kind!r}: use sft or dpo")
        for name in ("batch_size", "micro_batch", "max_length", "save_every"):
            if getattr(self, name) < 1:
                raise BadParameter(f"--{name.replace('_', '-')} must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise BadParameter("--steps must be at least 1")
        if self.lora_rank < 0 or self.beta <= 0 or self.nll_weight < 0 or not 0 <= self.warmup < 1:
            raise BadParameter("--lora-rank and --nll-weight must be 0 or more, --beta above 0, --warmup in [0, 1)")

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        full, lora = {"sft": (1e-5, 2e-4), "dpo": (1e-6, 2e-5)}[self.kind]
        return lora if self.lora_rank else full


class LogpsModel(nn.Module):
    """The decoder as DistributedDataParallel needs it: forward gives the loss tokens' log-probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, parts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = token_logps(self.model, ids, parts)
        return out.logps, out.rows, out.content


def train(model_spec: str, data: Path, out: Path, settings: TrainSettings,
          say: Callable[[str], None] = print, progress: bool = True) -> Path:
    rank, world = _distributed()
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    record = {"model": str(model_spec), "data": str(Path(data).resolve()), **asdict(settings)}
    if done(out, record, say):
        if settings.lora_rank and not (out / "config.json").exists() and (out / ADAPTER).exists():
            _rebuild(model_spec, out, record, settings, say)  # a snapshot of the run: the adapters, not the model
        return out
    loaded = load(model_spec)
    rows, skipped = _load(data, loaded, settings)
    if skipped.summary():
        say(f"skipped {skipped.summary()}")
    if len(rows) < settings.batch_size:
        raise BadParameter(f"{data} has {len(rows)} usable rows, fewer than --batch-size {settings.batch_size}: "
                           "give more rows or a smaller batch")
    steps = settings.steps or len(rows) // settings.batch_size
    check_memory(loaded.config, settings, max(len(_tokens(r)) for r in rows), max(_loss_tokens(r) for r in rows))
    model = loaded.model.to(device).train()
    if settings.lora_rank:
        add_lora(model, settings.lora_rank)
    else:
        model.requires_grad_(True)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "train.json", record)
    reference = _reference(model, rows, out, settings, device, rank) if settings.kind == "dpo" else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate(), weight_decay=0.0)
    warm = max(1, int(settings.warmup * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    start = resume(out / "checkpoint.pt", model, optimizer, schedule, say)
    keep_metrics_through(out / "metrics.jsonl", start) if rank == 0 else None
    net = LogpsModel(model)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net)
    last: dict[str, Any] = {}
    with Progress(steps, "training", done=start, unit="steps", every=60.0, enabled=progress and rank == 0,
                  info=lambda: f"loss {last['loss']:.4f}, {last['tokens_per_s']:.0f} tokens/s" if last else "") \
            as shown:
        for step in range(start + 1, steps + 1):
            last = _train_step(net, rows, reference, step, steps, settings, device, rank, world, trainable,
                               optimizer, schedule, out, say)
            shown.update(step)
    if rank == 0:
        _save_model(model, loaded, out, record)
        say(f"trained {steps} steps: {out} is a model (`ponder generate {out} \"...\"`)")
    if world > 1:
        dist.barrier()
    return out


def _train_step(net: nn.Module, rows: list[Any], reference: Tensor | None, step: int, steps: int,
                settings: TrainSettings, device: torch.device, rank: int, world: int, trainable: list[Tensor],
                optimizer: Any, schedule: Any, out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """One optimizer step, logged (and checkpointed every `save_every` steps) by the first process."""
    began = time.perf_counter()
    batch = _step_rows(len(rows), step, settings)
    metrics = _step(net, [rows[i] for i in batch], None if reference is None else reference[batch], settings,
                    device, rank, world)
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - began
    metrics |= {"step": step, "lr": schedule.get_last_lr()[0], "seconds": round(seconds, 3),
                "tokens_per_s": round(metrics["tokens"] * world / seconds, 1)}
    if rank == 0:
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if step == 1 and settings.kind == "dpo":
            say(f"step 1: DPO loss {metrics['loss_dpo']:.6f} (ln 2 = {math.log(2):.6f}: the policy starts as "
                "the reference)")
        if step % settings.save_every == 0 or step == steps:
            save_checkpoint(out / "checkpoint.pt", net.module.model if hasattr(net, "module") else net.model,
                             optimizer, schedule, step)
    return metrics


def _load(data: Path, loaded: LoadedModel, settings: TrainSettings) -> tuple[list[Any], Skipped]:
    reader = load_sft if settings.kind == "sft" else load_pairs
    return reader(data, loaded.tokenizer, settings.max_length)


def _tokens(row: Tokenized | Pair) -> list[int]:
    return row.ids if isinstance(row, Tokenized) else max(row.chosen.ids, row.rejected.ids, key=len)


def _loss_tokens(row: Tokenized | Pair) -> int:
    """Tokens whose logits the loss needs (everything but the prompt), of the row or of a pair's longer side."""
    sides = [row] if isinstance(row, Tokenized) else [row.chosen, row.rejected]
    return max(sum(p != PROMPT for p in side.parts[1:]) for side in sides)


def _step_rows(n: int, step: int, settings: TrainSettings) -> list[int]:
    """The rows of a step (1-based): consecutive slices of a seeded shuffle, reshuffled each pass."""
    out: list[int] = []
    position = (step - 1) * settings.batch_size
    while len(out) < settings.batch_size:
        epoch, offset = divmod(position, n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed * 100_003 + epoch)).tolist()
        take = order[offset: offset + settings.batch_size - len(out)]
        out += take
        position += len(take)
    return out


def _step(net: nn.Module, batch: list[Any], reference: Tensor | None, settings: TrainSettings, device: torch.device,
          rank: int, world: int) -> dict[str, Any]:
    """Forward and backward over this process's share of a step; the losses scaled so that the gradients,
    averaged over processes, are those of the whole step's loss."""
    mine = list(range(rank, len(batch), world))
    dpo = settings.kind == "dpo"
    sides = [[p.chosen for p in batch], [p.rejected for p in batch]] if dpo else [batch]
    # The whole step's counts, known to every process without communication: its rows are the same everywhere.
    loss_tokens = sum(_loss_tokens(e) for e in sides[0])
    totals: dict[str, float] = {"tokens": 0.0, "loss": 0.0}
    for start in range(0, len(mine), settings.micro_batch):
        chunk = mine[start: start + settings.micro_batch]
        examples = [side[i] for side in sides for i in chunk]  # DPO: the chosen, then the rejected
        ids, parts = (t.to(device) for t in collate(examples))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16):
            logps, rows, content = net(ids, parts)
        got = TokenLogps(logps, rows, content)
        totals["tokens"] += sum(len(e.ids) for e in examples)
        if not dpo:
            loss = -got.logps.sum() / loss_tokens * world
            totals["loss"] += loss.item() / world
        else:
            n = len(chunk)
            policy = got.per_row(2 * n, content_only=settings.mask_formatting)
            terms, chosen_rewards, rejected_rewards = dpo_terms(policy[:n], policy[n:], reference[chunk, 0].to(device),
                                                                reference[chunk, 1].to(device), settings.beta)
            nll = -got.logps[got.rows < n].sum() / loss_tokens  # the chosen side's content and end of turn
            loss = (terms.sum() / len(batch) + settings.nll_weight * nll) * world
            for key, value in (("loss", loss.item() / world), ("loss_dpo", terms.sum().item() / len(batch)),
                               ("loss_nll", nll.item()), ("rewards_chosen", chosen_rewards.sum().item() / len(batch)),
                               ("rewards_rejected", rejected_rewards.sum().item() / len(batch)),
                               ("accuracy", (chosen_rewards > rejected_rewards).float().sum().item() / len(batch)),
                               ("margin", (chosen_rewards - rejected_rewards).sum().item() / len(batch))):
                totals[key] = totals.get(key, 0.0) + value
        loss.backward()
    if world > 1:  # each process summed its share: the step's totals are the sums
        summed = torch.tensor(list(totals.values()), dtype=torch.float64)
        dist.all_reduce(summed)
        totals = dict(zip(totals, summed.tolist()))
        totals["tokens"] /= world  # tokens_per_s multiplies back by the processes
    return {k: (round(v, 6) if k != "tokens" else int(v)) for k, v in totals.items()}


@torch.no_grad()
def _reference(model: nn.Module, pairs: list[Pair], out: Path, settings: TrainSettings, device: torch.device,
               rank: int) -> Tensor:
    """The reference model's content log-probabilities of each pair's (chosen, rejected), computed once before
    the first update (the policy then is the reference) and cached in DIR/reference.pt."""
    path = out / "reference.pt"
    if path.is_file():
        cached = torch.load(path)
        if cached.shape == (len(pairs), 2):
            return cached
    values = torch.zeros(len(pairs), 2, dtype=torch.float64)
    for start in range(0, len(pairs), settings.micro_batch):
        chunk = pairs[start: start + settings.micro_batch]
        ids, parts = (t.to(device) for t in collate([p.chosen for p in chunk] + [p.rejected for p in chunk]))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16):
            got = token_logps(model, ids, parts)
        per_row = got.per_row(2 * len(chunk), content_only=settings.mask_formatting).double().cpu()
        values[start: start + len(chunk), 0], values[start: start + len(chunk), 1] = \
            per_row[: len(chunk)], per_row[len(chunk):]
    if rank == 0:
        atomic_save(values, path)
    return values.float()


def _rebuild(model_spec: str, out: Path, record: dict[str, Any], settings: TrainSettings,
             say: Callable[[str], None]) -> None:
    """The model folder of a finished LoRA run made again from its saved adapters and its base model."""
    loaded = load(model_spec)
    model = load_adapter(add_lora(loaded.model, settings.lora_rank), out / ADAPTER)
    _save_model(model, loaded, out, record)
    say(f"{out}: the model made again from its adapters ({ADAPTER}) and {model_spec}")


def _save_model(model: nn.Module, loaded: LoadedModel, out: Path, record: dict[str, Any]) -> None:
    """DIR as a model folder (and a LoRA run's adapters alone, see `save_adapter`), files moved into place one by
    one, `train.json` marked done last."""
    if record.get("lora_rank"):
        save_adapter(model, out / ADAPTER)
    merge_lora(model)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    if loaded.config.tie_embeddings:
        tensors.pop("head.weight")
    staging = out / ".model-staging"
    write_folder(staging, loaded.config, tensors, loaded.tokenizer)
    for f in staging.iterdir():
        os.replace(f, out / f.name)
    staging.rmdir()
    write_json(out / "train.json", record | {"done": True})
    (out / "checkpoint.pt").unlink(missing_ok=True)


def _distributed() -> tuple[int, int]:
    """(rank, world size): from torchrun's or accelerate's environment, else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return (dist.get_rank(), world) if world > 1 else (0, 1)
