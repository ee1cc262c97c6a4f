"""How much `auto` depends on the allocation's own settings: predictor, bins and prior, on a stored grid.

Each setting is judged the way `ponder report --policy` judges the shipped one: the grid's questions
split into two folds by id, each fold's items replayed by the policy calibrated on the other. The
best-of-N and majority cells of the same grid are printed beside, at the same FLOPs accounting. With a
CPU-sized grid the settings cannot be chosen by this table without overfitting it: it shows the spread.

    .venv/bin/python benchmarks/allocation_sweep.py runs/search-prm.db
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ponder.eval.allocate import build_policy, fold_of, with_auto
from ponder.eval.metrics import Cell, summarize
from ponder.jobs import RunStore


def cross_fold_auto(rows: list[dict], settings: dict, bins: int, prior: float, probe: int,
                    predictor: str) -> list[Cell]:
    policies = [build_policy([r for r in rows if fold_of(r["question"], 2) != held], settings, probe, bins, prior,
                             predictor) for held in (0, 1)]
    return [c for c in summarize(with_auto(rows, policies)) if c.strategy == "auto"]


def show(cell: Cell, unit: float) -> str:
    return f"{cell.accuracy:.2f} ({cell.low:.2f}-{cell.high:.2f}) at {cell.flops / unit:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="+", help="grids from `ponder eval` (or bench_search.py --grid)")
    parser.add_argument("--bins", default="1,2,3,5")
    parser.add_argument("--prior", default="0,10,50")
    parser.add_argument("--probe", type=int, default=4)
    parser.add_argument("--predictor", default="score,agreement")
    args = parser.parse_args()
    for path in args.run:
        store = RunStore.existing(path)
        rows = [r for _, r in store.items()]
        cells = {c.key: c for c in summarize(rows)}
        top = max(int(n) for n in store.settings["budgets"])
        reference = cells[f"bon@{top}"]
        unit = reference.flops  # FLOPs are printed as a fraction of best-of-N's at the top budget
        print(f"{path}: {len({r['question'] for r in rows})} questions, verifier {store.settings.get('verifier')}; "
              f"accuracy (95% interval) at FLOPs / best-of-{top}'s")
        for key in (f"bon@{top}", f"weighted_bon@{top}", f"majority@{top}", "weighted_bon@4", "majority@4"):
            if key in cells:
                print(f"  {key:<24} {show(cells[key], unit)}")
        for predictor in args.predictor.split(","):
            for bins in (int(b) for b in args.bins.split(",")):
                for prior in (float(p) for p in args.prior.split(",")):
                    found = cross_fold_auto(rows, store.settings, bins, prior, args.probe, predictor)
                    print(f"  auto, {predictor:<9} bins {bins}, prior {prior:<4g}  " + "   ".join(
                        f"@{c.n}: {show(c, unit)}" for c in sorted(found, key=lambda c: c.n) if c.n > 1))


if __name__ == "__main__":
    main()
