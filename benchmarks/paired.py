"""Paired difference in accuracy between two cells on the questions both runs hold, with a 95% bootstrap CI.

    .venv/bin/python benchmarks/paired.py runs/gsm-mixed.db:majority@16 runs/gsm-program.db:majority@16

Each side is STORE:CELL (a `ponder eval` store and one of its cells, e.g. greedy@1, majority@16). Paired over the
same questions, the difference is far tighter than the two unpaired CIs side by side suggest. `--templates seen` or
`unseen` keeps the gsm_symbolic questions of templates seen in training or held out of it (`--hold-out-templates`,
the share `ponder train data` and `ponder journey trees` leave out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench_confidence import per_question

from ponder.errors import BadParameter
from ponder.jobs import RunStore
from ponder.stats import bootstrap_interval, mean
from ponder.tasks import load_tasks
from ponder.tasks.templates import rows_of_templates


def side(spec: str, templates: str | None = None, share: float = 0.25) -> dict[str, float]:
    """Question -> mean correctness over its seeds, for the cell of STORE:CELL (of `templates` only, if given)."""
    store, _, cell = spec.rpartition(":")
    if not store or "@" not in cell:
        raise SystemExit(f"{spec!r}: give STORE:CELL, e.g. runs/gsm-cot.db:majority@16")
    try:
        run = RunStore.existing(Path(store))
        rows = [row for _, row in run.items()]
        if templates:
            settings = run.settings
            rows = rows_of_templates(rows, load_tasks(settings["tasks"], settings["size"], settings["task_seed"]),
                                     templates, share)
        cells = per_question(rows)
    except BadParameter as error:
        raise SystemExit(f"{store}: {error}") from None
    if cell not in cells:
        raise SystemExit(f"{store} has no cell {cell}; it has {', '.join(sorted(cells))}")
    return {q: v["correct"] for q, v in cells[cell].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="STORE:CELL")
    parser.add_argument("b", help="STORE:CELL, subtracted from a")
    parser.add_argument("--templates", choices=("seen", "unseen"), help="only questions of these templates")
    parser.add_argument("--hold-out-templates", type=float, default=0.25, help="the share held out of training")
    args = parser.parse_args()
    a, b = (side(spec, args.templates, args.hold_out_templates) for spec in (args.a, args.b))
    shared = sorted(set(a) & set(b))
    if not shared:
        raise SystemExit("the two runs share no question: were they run on the same task, size and task seed?")
    differences = [a[q] - b[q] for q in shared]
    low, high = bootstrap_interval(differences)
    which = f" ({args.templates} templates)" if args.templates else ""
    print(f"{args.a} - {args.b}{which}: {mean(differences):+.3f} [{low:+.3f}, {high:+.3f}] "
          f"over {len(shared)} questions")


if __name__ == "__main__":
    main()
