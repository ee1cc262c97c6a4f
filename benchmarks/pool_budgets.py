"""Cells at smaller budgets read off a finished grid's pools: majority@n (and pass@n) from the first n samples of
each question's seeded pool, exactly what a grid with budget n would have drawn and chosen.

    .venv/bin/python benchmarks/pool_budgets.py runs/gsm-cot.db --budgets 8 --out runs/gsm-cot-at-8.db

The new store holds only those cells (settings: the old ones with the new budgets), so `ponder report RUN
--compare NEW` sets them beside other runs. Spend is the prompt once plus the first n samples' tokens, as the
grid charges a pooled cell. Why a script and not a new grid: the pool is already there (an hour of 2 cores for
100 gsm questions at 8 samples).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ponder.jobs import RunStore
from ponder.search.base import Candidate, majority
from ponder.tasks import load_tasks
from ponder.tasks.program import with_format


def at_budget(row: dict, n: int, vote_key, check, n_params: float) -> dict[str, dict]:
    """The majority@n and pass@n cells of one stored item, from its pool's first n samples."""
    pool = row["pool"][:n]
    if len(pool) < n:
        raise SystemExit(f"{row['question']}: its pool holds {len(row['pool'])} samples, fewer than {n}")
    # The pooled cell at the full budget charged the prompt once plus every sample: the prompt is what is left.
    full = max((int(k.rsplit("@", 1)[1]) for k in row["results"] if k.startswith("majority@")), default=0)
    whole = row["results"][f"majority@{full}"]
    generated, generated_full = sum(s["tokens"] for s in pool), sum(s["tokens"] for s in row["pool"][:full])
    tokens = whole["tokens"] - generated_full + generated
    spend = {"tokens": tokens, "flops": 2.0 * n_params * tokens,
             "seconds": whole["seconds"] * generated / max(1, generated_full)}
    candidates = [Candidate(s["text"], s["answer"], s.get("step_scores") or [], tokens=s["tokens"]) for s in pool]
    answer = majority(candidates, vote_key)
    return {f"majority@{n}": {"answer": answer, "correct": check(answer)} | spend,
            f"pass@{n}": {"answer": None, "correct": any(s["correct"] for s in pool)} | spend}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--budgets", required=True, help="comma-separated, each at most the pool's size")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not args.run.exists():
        sys.exit(f"{args.run}: no such run store (give a `ponder eval --out` file)")
    budgets = [int(b) for b in args.budgets.split(",")]
    with RunStore.existing(args.run) as store:
        settings, items = store.settings, store.items()
    if "majority" not in settings["strategies"]:
        sys.exit(f"{args.run}: the grid has no majority cells to read a pool from")
    answer_format = settings.get("answer_format", "cot")  # as the grid loaded them: the format decides the checker
    tasks = {t.id: with_format(t, answer_format)
             for t in load_tasks(settings["tasks"], settings["size"], settings["task_seed"])}
    # FLOPs per token, as the grid charged them (2 x parameters): read back from any stored majority cell.
    cell = next(e for _, row in items for k, e in row["results"].items() if k.startswith("majority@"))
    n_params = cell["flops"] / (2.0 * cell["tokens"])
    if args.out.exists():
        for stale in args.out.parent.glob(args.out.name + "*"):  # derived, so made again whole
            stale.unlink()
    with RunStore(args.out, settings | {"budgets": budgets, "strategies": ["majority"]}) as out:
        for key, row in items:
            task = tasks[row["question"]]
            results = {}
            for n in budgets:
                results |= at_budget(row, n, task.vote_key, task.check, n_params)
            out.put(key, row | {"results": results})
    print(f"{len(items)} items at budgets {budgets} in {args.out}: `ponder report {args.out}` summarises them")


if __name__ == "__main__":
    main()
