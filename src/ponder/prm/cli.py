"""`ponder prm label | train | eval`: make, train and prove a process reward model for a policy."""

from __future__ import annotations

import shlex
import statistics
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ponder.errors import BadParameter

app = typer.Typer(no_args_is_help=True, help="A process reward model for the policy: label, train, evaluate.")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

Model = Annotated[str, typer.Option(help="The policy: a registry name, .gguf file or checkpoint folder.")]


@app.command()
def label(
    task: Annotated[list[str], typer.Option(help="Task set(s) to label (see load_tasks); repeat for several.")],
    out_path: Annotated[Path, typer.Option("--out", help="The run's SQLite store (resumed if it exists).")],
    model: Model = "qwen2.5-coder-0.5b-instruct",
    size: Annotated[int, typer.Option(help="Questions per task set (evaluation questions are left out).")] = 40,
    seed: Annotated[int, typer.Option(help="Chooses the questions and seeds the sampling.")] = 11,
    samples: Annotated[int, typer.Option(help="Solutions per question.")] = 4,
    rollouts: Annotated[int, typer.Option(help="Rollouts from each step.")] = 4,
    temperature: Annotated[float, typer.Option(help="For solutions and rollouts.")] = 0.4,
    max_tokens: Annotated[int, typer.Option(help="Per solution and per rollout.")] = 512,
    backend: Annotated[str, typer.Option(help="native (stores states to train on), native-fp32, llamacpp, "
                                             "vllm (a GPU; `prm train` computes the states after).")] = "native",
    ray: Annotated[str | None, typer.Option(help="Fan questions out on Ray: 'local' or a cluster address.")] = None,
) -> None:
    """Monte Carlo step labels from the policy's own solutions, resumable."""
    from dataclasses import asdict

    from ponder.jobs import RunStore, run_all
    from ponder.prm.label import LabelJob, LabelSettings

    settings = LabelSettings(samples, rollouts, temperature, max_tokens, seed)
    job = LabelJob(model, backend, size, seed, settings)
    keys = job.keys(task)
    run = {"model": model, "backend": backend, "tasks": task, "size": size} | asdict(settings)
    with RunStore(out_path, run) as store:
        ran = run_all(keys, job, store, ray_address=ray, progress="labelling")
        results = [r for _, r in store.items()]
    steps = [x for r in results for s in r["samples"] for x in s["labels"]]
    tokens = sum(r["spend"]["generated_tokens"] + r["spend"]["prompt_tokens_computed"] for r in results)
    hours = sum(r["spend"]["seconds"] for r in results) / 3600
    out.print(f"{len(results)} questions labelled ({ran} now), {len(steps)} steps, mean label "
              f"{sum(steps) / max(1, len(steps)):.2f}; spent {tokens:,} tokens, {hours:.2f} hours: {out_path}")


@app.command()
def train(
    labels: Annotated[list[Path], typer.Argument(help="Label stores from `ponder prm label`.")],
    out_path: Annotated[Path, typer.Option("--out", help="Where the head goes (a .safetensors, card beside it).")],
    kind: Annotated[str, typer.Option(help="prm: every step, Monte Carlo labels; orm: the final state, "
                                           "correctness.")] = "prm",
    hidden: Annotated[int, typer.Option(help="Hidden units (0: logistic regression).")] = 256,
    folds: Annotated[int, typer.Option(help="Cross-validate over this many parts of the questions, then train "
                                            "on all of them for the folds' median epochs (0: one validation "
                                            "split, early stopping).")] = 0,
    seed: int = 0,
) -> None:
    """Train a value head on the frozen policy's states at step ends."""
    from ponder.jobs import RunStore
    from ponder.models.loader import load
    from ponder.prm.features import fill_missing_states, training_rows
    from ponder.prm.head import fingerprint, save_head
    from ponder.prm.train import TrainSettings, cross_validate, train_head

    stores = [RunStore.existing(path) for path in labels]
    models = {s.settings["model"] for s in stores}
    if len(models) != 1:
        raise BadParameter(f"the label stores come from different models ({', '.join(sorted(models))}): "
                           "train on one model's labels")
    [model] = models
    with err.status(f"loading {model}"):
        loaded = load(model)
        base = loaded.model
    results = [r for s in stores for _, r in s.items()]
    with err.status("computing the policy's states for samples stored without them"):
        filled = fill_missing_states(results, loaded, model)
    if filled:
        out.print(f"computed the states of {filled} samples stored without them (one pass each)")
    features, targets, groups = training_rows(results, kind, base.cfg.dim)
    settings = TrainSettings(hidden=hidden, seed=seed)
    epochs = None
    if folds:
        with err.status(f"cross-validating over {folds} parts of the questions"):
            aucs, stops = cross_validate(features, targets, groups, folds, settings)
        epochs = round(statistics.median(stops))
    with err.status(f"training a {kind} head on {len(targets)} rows"):
        head, metrics = train_head(features, targets, groups, settings, epochs)
    if folds:
        metrics |= {"cv_auc": statistics.mean(aucs), "cv_fold_aucs": aucs, "cv_fold_epochs": stops}
    card = {"kind": kind, "base": {"model": model, "fingerprint": fingerprint(base)},
            "data": {"labels": [str(p) for p in labels], "questions": len(results), "rows": len(targets),
                     "labelling": [s.settings for s in stores]},
            "settings": settings.__dict__, "metrics": metrics, "command": shlex.join(["ponder", *sys.argv[1:]])}
    save_head(out_path, head, card)
    validation = (f"cross-validated AUC {metrics['cv_auc']:.3f} (folds {', '.join(f'{a:.2f}' for a in aucs)})"
                  if folds else f"validation AUC {metrics['val_auc']:.3f}")
    out.print(f"{kind} head: {validation} (train {metrics['train_auc']:.3f}), {metrics['epochs']} epochs, "
              f"{len(targets)} rows from {len(results)} questions: {out_path}")


@app.command("eval")
def evaluate(
    heads: Annotated[list[Path], typer.Argument(help="Heads to compare (PRM, ORM, ...).")],
    samples: Annotated[Path, typer.Option(help="Scored samples from benchmarks/bench_search.py (JSONL).")] = Path(
        "runs/search.jsonl"),
    labels: Annotated[list[Path] | None, typer.Option(help="Held-out label stores, for step AUC.")] = None,
    aggregate: Annotated[list[str] | None, typer.Option(
        help="How a PRM's step scores make a candidate's: last, min, prod or mean; repeat to compare.")] = None,
) -> None:
    """Step AUC on held-out labels; best-of-N and weighted best-of-N with each head vs majority, N = 4, 16."""
    from ponder.prm.evaluate import evaluate_heads
    from ponder.verify.base import AGGREGATIONS

    for how in aggregate or []:
        if how not in AGGREGATIONS:
            raise BadParameter(f"unknown --aggregate {how!r}: use one of {', '.join(AGGREGATIONS)}")
    out.print(evaluate_heads(heads, samples, labels or [], aggregate or ["last"]))
