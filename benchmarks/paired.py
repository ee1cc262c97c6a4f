"""Paired difference in accuracy between two cells on the questions both runs hold, with a 95% bootstrap CI.

    .venv/bin/python benchmarks/paired.py runs/gsm-mixed.db:majority@16 runs/gsm-program.db:majority@16

Each side is STORE:CELL (a `ponder eval` store and one of its cells, e.g. greedy@1, majority@16). Paired over the
same questions, the difference is far tighter than the two unpaired CIs side by side suggest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench_confidence import per_question

from ponder.errors import BadParameter
from ponder.jobs import RunStore
from ponder.stats import bootstrap_interval, mean


def side(spec: str) -> dict[str, float]:
    """Question -> mean correctness over its seeds, for the cell of STORE:CELL."""
    store, _, cell = spec.rpartition(":")
    if not store or "@" not in cell:
        raise SystemExit(f"{spec!r}: give STORE:CELL, e.g. runs/gsm-cot.db:majority@16")
    try:
        cells = per_question([row for _, row in RunStore.existing(Path(store)).items()])
    except BadParameter as error:
        raise SystemExit(str(error)) from None
    if cell not in cells:
        raise SystemExit(f"{store} has no cell {cell}; it has {', '.join(sorted(cells))}")
    return {q: v["correct"] for q, v in cells[cell].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="STORE:CELL")
    parser.add_argument("b", help="STORE:CELL, subtracted from a")
    args = parser.parse_args()
    a, b = side(args.a), side(args.b)
    shared = sorted(set(a) & set(b))
    if not shared:
        raise SystemExit("the two runs share no question: were they run on the same task, size and task seed?")
    differences = [a[q] - b[q] for q in shared]
    low, high = bootstrap_interval(differences)
    print(f"{args.a} - {args.b}: {mean(differences):+.3f} [{low:+.3f}, {high:+.3f}] over {len(shared)} questions")


if __name__ == "__main__":
    main()
