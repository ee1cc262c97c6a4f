"""From a grid's stored items to accuracy against budget, per strategy and per difficulty bin.

A question's accuracy in a cell is the mean over its seeds; intervals are 95% percentile bootstraps
over questions. Oracle difficulty (Snell et al.) is a question's pass@1, estimated from all its
pooled samples over all seeds, cut into quantile bins: bin 1 the easiest, the last the hardest.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ponder.stats import bootstrap_interval, mean


@dataclass(frozen=True)
class Cell:
    strategy: str
    n: int
    accuracy: float
    low: float
    high: float
    flops: float  # mean per question
    tokens: float
    seconds: float
    questions: int
    difficulty_bin: int | None = None  # None: all questions

    @property
    def key(self) -> str:
        return f"{self.strategy}@{self.n}"


def per_question(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """cell -> question -> {correct, flops, tokens, seconds}, averaged over the question's seeds."""
    gathered: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for cell, entry in row["results"].items():
            gathered[cell][row["question"]].append(entry)
    return {cell: {q: {k: mean([float(e.get(k, 0.0)) for e in entries])
                       for k in ("correct", "flops", "tokens", "seconds")}
                   for q, entries in questions.items()}
            for cell, questions in gathered.items()}


def oracle_difficulty(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each question's pass@1 over all its pooled samples (greedy's correctness where nothing was pooled)."""
    outcomes: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        pool = row.get("pool") or []
        if pool:
            outcomes[row["question"]] += [float(s["correct"]) for s in pool]
        elif "greedy@1" in row["results"]:
            outcomes[row["question"]].append(float(row["results"]["greedy@1"]["correct"]))
    return {q: mean(v) for q, v in outcomes.items()}


def quantile_bins(values: dict[str, float], bins: int = 5, easiest_first: bool = True) -> dict[str, int]:
    """Questions cut into `bins` groups of (nearly) equal size by value; bin 1 holds the highest values
    (with easiest_first: pass@1, high is easy). Ties are broken by question id, so bins are stable."""
    order = sorted(values, key=lambda q: (-values[q] if easiest_first else values[q], q))
    return {q: 1 + (i * bins) // len(order) for i, q in enumerate(order)}


def summarize(rows: list[dict[str, Any]], bins: dict[str, int] | None = None) -> list[Cell]:
    """A Cell per grid cell over all questions, and, given bins, per cell and bin."""
    cells = []
    for key, questions in sorted(per_question(rows).items(), key=lambda kv: _order(kv[0])):
        strategy, n = key.rsplit("@", 1)
        groups: dict[int | None, list[str]] = {None: sorted(questions)}
        for q in questions:
            if bins is not None and q in bins:
                groups.setdefault(bins[q], []).append(q)
        for b, members in sorted(groups.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
            correct = [questions[q]["correct"] for q in members]
            low, high = bootstrap_interval(correct)
            cells.append(Cell(strategy, int(n), mean(correct), low, high,
                              *(mean([questions[q][k] for q in members]) for k in ("flops", "tokens", "seconds")),
                              len(members), b))
    return cells


def _order(key: str) -> tuple[str, int]:
    strategy, n = key.rsplit("@", 1)
    return strategy, int(n)


def frontier(cells: list[Cell]) -> list[Cell]:
    """The compute-optimal frontier: cells no cheaper cell matches in accuracy, cheapest first (pass@n,
    the oracle, is not a strategy and is left out)."""
    best: list[Cell] = []
    for cell in sorted((c for c in cells if c.strategy != "pass"), key=lambda c: (c.flops, -c.accuracy)):
        if not best or cell.accuracy > best[-1].accuracy:
            best.append(cell)
    return best
