"""Would more labels make a better verifier? Heads trained on growing subsets of the labelled questions,
judged on the same held-out labels.

    .venv/bin/python benchmarks/prm_learning_curve.py [--labels runs/labels.db] [--held-out runs/labels-heldout.db]

For each size (questions drawn evenly from each task set) and seed, a PRM (every step, Monte Carlo labels)
and an ORM (final states, correctness) are trained as `ponder prm train` trains them without --folds, and
scored on the held-out questions: step AUC, and the AUC of the final state's score against the answer's
correctness, over all held-out solutions and over the gsm_symbolic ones (the benchmark's kind); with
--samples, also over the benchmark's 16 samples of each evaluation question (1,600 solutions, where the
held-out labels hold 40 gsm ones). A curve still rising at the full set says more labels would pay. Reads
stored states only: minutes, no model.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

from ponder.jobs import RunStore
from ponder.prm.evaluate import evaluation_tasks
from ponder.prm.features import decode_states, training_rows
from ponder.prm.train import TrainSettings, auc, train_head


def subset(results: list[dict], size: int, seed: int) -> list[dict]:
    """`size` questions, as evenly as the task sets allow (a task set is the id's prefix)."""
    by_task: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: r["id"]):
        by_task.setdefault(r["id"].split("/")[0], []).append(r)
    rng = random.Random(seed)
    for questions in by_task.values():
        rng.shuffle(questions)
    share = -(-size // len(by_task))
    return [r for questions in by_task.values() for r in questions[:share]][:size]


def held_out_aucs(head: torch.nn.Module, held: list[dict], samples: tuple[Tensor, Tensor] | None, dim: int
                  ) -> dict[str, float]:
    gsm = [r for r in held if r["id"].startswith("gsm")]
    out = {}
    for name, results, kind in (("step", held, "prm"), ("answer", held, "orm"), ("gsm answer", gsm, "orm")):
        features, labels, _ = training_rows(results, kind, dim)
        with torch.no_grad():
            out[name] = auc(head(features), labels)
    if samples is not None:
        with torch.no_grad():
            out["benchmark answer"] = auc(head(samples[0]), samples[1])
    return out


def final_states(path: Path, dim: int) -> tuple[Tensor, Tensor]:
    """(the final step's state, the answer's correctness) of every benchmark sample that has steps."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if any("states" not in s for r in rows for s in r["samples"] if s.get("step_ends")):
        raise SystemExit(f"{path} holds samples without states (restored from evidence/): run `ponder prm eval` "
                         "on it first, or use the run's own file")
    tasks = evaluation_tasks(rows)
    kept = [(decode_states(s["states"], dim)[-1], float(tasks[r["id"]].check(s["answer"])))
            for r in rows for s in r["samples"] if s.get("step_ends")]
    return torch.stack([k[0] for k in kept]), torch.tensor([k[1] for k in kept])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=Path("runs/labels.db"))
    parser.add_argument("--held-out", type=Path, default=Path("runs/labels-heldout.db"))
    parser.add_argument("--samples", type=Path, help="also the benchmark's samples (bench_search.py's JSONL, with "
                        "states): the final answers' AUC on them")
    parser.add_argument("--sizes", default="10,20,40,80")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dim", type=int, default=896, help="the policy's hidden size (Qwen2.5-0.5B: 896)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = [r for _, r in RunStore.existing(args.labels).items()]
    held = [r for _, r in RunStore.existing(args.held_out).items()]
    seen = {tuple(r["prompt"]) for r in results}
    held = [r for r in held if tuple(r["prompt"]) not in seen]
    samples = final_states(args.samples, args.dim) if args.samples else None
    names = ("step", "answer", "gsm answer") + (("benchmark answer",) if samples else ())
    table = Table(title=f"heads on growing label sets, judged on {len(held)} held-out questions "
                        f"(mean over {args.seeds} draws; range)")
    for column in ("kind", "questions", *(f"{name} AUC" for name in names)):
        table.add_column(column)
    for kind in ("prm", "orm"):
        for size in (int(s) for s in args.sizes.split(",")):
            draws = []
            for seed in range(args.seeds):
                chosen = subset(results, size, seed)
                features, labels, groups = training_rows(chosen, kind, args.dim)
                head, _ = train_head(features, labels, groups, TrainSettings(seed=seed))
                draws.append(held_out_aucs(head, held, samples, args.dim))
            cells = []
            for name in names:
                values = [d[name] for d in draws]
                cells.append(f"{statistics.mean(values):.3f} ({min(values):.2f}-{max(values):.2f})")
            table.add_row(kind, str(len(chosen)), *cells)
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
