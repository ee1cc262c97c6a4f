"""The confidence strategy against majority vote: accuracy and the samples each spends, from one `ponder eval` store.

    .venv/bin/ponder eval --task gsm_symbolic --size 100 --strategies majority,confidence --budgets 4,16 \
        --out runs/gsm-cot.db
    .venv/bin/python benchmarks/bench_confidence.py runs/gsm-cot.db

Per cell: accuracy with a 95% bootstrap interval over questions, and per question the mean samples drawn
(majority: n; confidence: what it drew before its vote settled, as the store records it), tokens and FLOPs.
Then each confidence cell against majority at the same n (the accuracy difference, paired over questions, with
its interval; the share of samples and tokens it spent) and against the cheapest majority cell at least as
accurate: the samples saved at equal accuracy.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ponder.jobs import RunStore
from ponder.stats import bootstrap_interval, mean

Cells = dict[str, dict[str, dict[str, float]]]  # cell -> question -> mean over its seeds of correct, samples, ...


def per_question(rows: list[dict]) -> Cells:
    gathered: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for cell, entry in row["results"].items():
            gathered[cell][row["question"]].append(entry)
    out: Cells = {}
    for cell, questions in gathered.items():
        n = int(cell.rsplit("@", 1)[1])
        out[cell] = {q: {"correct": mean([float(e["correct"]) for e in entries]),
                         # a pooled cell draws exactly n; a store from before samples were recorded: unknown
                         "samples": mean([float(e.get("samples", n if cell.startswith("majority@") else "nan"))
                                          for e in entries]),
                         "tokens": mean([float(e["tokens"]) for e in entries]),
                         "flops": mean([float(e["flops"]) for e in entries])}
                     for q, entries in questions.items()}
    return out


def column(cells: Cells, cell: str, key: str) -> list[float]:
    return [cells[cell][q][key] for q in sorted(cells[cell])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path, help="a `ponder eval` store with confidence@n and majority@n cells")
    args = parser.parse_args()
    cells = per_question([row for _, row in RunStore.existing(args.store).items()])
    confident = sorted((c for c in cells if c.startswith("confidence")), key=lambda c: int(c.rsplit("@", 1)[1]))
    majority = sorted((c for c in cells if c.startswith("majority@")), key=lambda c: int(c.rsplit("@", 1)[1]))
    if not confident or not majority:
        raise SystemExit(f"{args.store} needs confidence and majority cells; it has {', '.join(sorted(cells))}")
    table = Table("cell", "questions", "accuracy [95% CI]", "samples", "tokens", "TFLOPs", title=str(args.store))
    for cell in majority + confident:
        correct = column(cells, cell, "correct")
        low, high = bootstrap_interval(correct)
        table.add_row(cell, str(len(cells[cell])), f"{mean(correct):.3f} [{low:.3f}, {high:.3f}]",
                      f"{mean(column(cells, cell, 'samples')):.2f}", f"{mean(column(cells, cell, 'tokens')):.0f}",
                      f"{mean(column(cells, cell, 'flops')) / 1e12:.3f}")
    Console().print(table)
    for cell in confident:
        n = cell.rsplit("@", 1)[1]
        samples, tokens = mean(column(cells, cell, "samples")), mean(column(cells, cell, "tokens"))
        if (same := f"majority@{n}") in cells:
            shared = sorted(cells[cell].keys() & cells[same].keys())
            diff = [cells[cell][q]["correct"] - cells[same][q]["correct"] for q in shared]
            low, high = bootstrap_interval(diff)
            print(f"{cell} against {same} on {len(shared)} questions: accuracy {mean(diff):+.3f} "
                          f"[{low:+.3f}, {high:+.3f}], samples {samples / int(n):.2f}x, "
                          f"tokens {tokens / mean(column(cells, same, 'tokens')):.2f}x")
        accuracy = mean(column(cells, cell, "correct"))
        level = [m for m in majority if mean(column(cells, m, "correct")) >= accuracy]
        if level:
            m = level[0]  # the smallest n: majority's samples and tokens grow with n
            print(f"  at equal accuracy ({accuracy:.3f}): {m} draws {mean(column(cells, m, 'samples')):.0f} "
                          f"samples and {mean(column(cells, m, 'tokens')):.0f} tokens, {cell} {samples:.2f} and "
                          f"{tokens:.0f}: {mean(column(cells, m, 'samples')) - samples:.2f} samples saved")
        else:
            print(f"  no majority cell here reaches {cell}'s accuracy ({accuracy:.3f})")


if __name__ == "__main__":
    main()
