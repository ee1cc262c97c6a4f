"""Compute-optimal allocation, the evaluation side: a policy calibrated on a stored grid, and `auto` replayed on one.

The policy itself and the `auto` strategy that follows it live with the other strategies (`ponder.search.auto`).

Snell et al.'s policy, made usable at run time. A calibration run of the evaluation grid (on
questions disjoint from those it will be judged on) gives, per difficulty bin, each strategy's
accuracy and cost. Difficulty is predicted without the answer from a few probe samples, cut at the
calibration questions' quantiles: by the verifier's mean final score on them (`score`, Snell et al.'s),
or by how many of them give their most common answer (`agreement`, which needs no verifier). For each
bin and budget of n samples, the policy keeps the most accurate cell that fits: a pooled strategy at
most n samples, any other at most n samples' FLOPs, the probes' included. At
run time (`AutoStrategy`) the probe samples are drawn and scored first, charged to the budget, and
reused as the first samples of a pooled strategy (majority, best-of-N), whose seeded forks they are.
A strategy's settings are chosen with it where the calibration grid ran variants of it ("beam:width=2"
beside "beam", "revisions:length=2" for the ratio of sequential to parallel samples), and so is the answer
format where runs of the same questions in other formats are joined in (`with_formats`: a chain of thought
or a program, "majority:format=program@8"); the probes are asked in the calibration run's own format.

`replay` computes what `auto` would have done on a stored grid item, exactly, without running it: the
probes are the pool's first samples, and whatever it chooses is a cell of the same grid. So an
evaluation grid evaluates `auto` for free, and `fold_of` splits one grid's questions so that each
half is judged by a policy calibrated on the other.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ponder.errors import BadParameter
from ponder.eval.metrics import Cell, summarize
from ponder.search.auto import Choice, Policy, predicted_difficulty
from ponder.search.base import POOLED
from ponder.specs import parse_spec
from ponder.stats import mean


def build_policy(rows: list[dict[str, Any]], settings: dict[str, Any], probe: int = 4, bins: int = 5,
                 prior: float = 10.0, predictor: str = "score") -> Policy:
    """The policy a calibration run supports (its pool must have been scored by a verifier).

    prior: a bin's accuracies are shrunk toward the whole run's, as if the bin had `prior` more questions
    answered at the overall rate. With ten calibration questions a bin, one lucky question would otherwise
    decide its strategy; 0 keeps each bin's raw accuracy (Snell et al.'s rule, with far more questions)."""
    if not rows:
        raise BadParameter("the calibration run holds no results yet")
    if predictor == "score" and not settings.get("verifier"):
        raise BadParameter("calibration by --predictor score needs a run with a verifier (difficulty is predicted "
                           "from its scores): use --predictor agreement, or a run with --verifier")
    scores: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if len(row.get("pool") or []) < probe:
            raise BadParameter(f"item {row['question']} pooled fewer than {probe} samples: calibrate on a run "
                               f"with majority, bon or weighted_bon at a budget of at least {probe}")
        if predictor == "score" and not any(s.get("step_scores") for s in row["pool"][:probe]):
            raise BadParameter(f"item {row['question']} has no scored pool: calibrate with bon or weighted_bon")
        scores[row["question"]].append(predicted_difficulty(_probes(row, probe), predictor))
    predicted = {q: mean(v) for q, v in scores.items()}
    order = sorted(predicted.values(), reverse=True)
    thresholds = [order[max(0, (k * len(order)) // bins - 1)] for k in range(1, bins)]  # each bin's lowest
    policy_bins = {q: 1 + sum(value < t for t in thresholds) for q, value in predicted.items()}
    unchoosable = ("pass", "auto")  # the oracle; a policy's own runs, in a grid that evaluated one
    cells = [c for c in summarize(rows, policy_bins) if c.difficulty_bin is not None and c.strategy not in unchoosable]
    # One sample's cost, from the pools with the most samples: the first few samples of a seed may run
    # shorter or longer than the rest, and a budget of n samples must fit majority of n.
    largest = max((c.n for c in cells if c.strategy in POOLED), default=None)
    unit = mean([c.flops / c.n for c in cells if c.strategy in POOLED and c.n == largest] or [c.flops for c in cells])
    budgets = sorted(int(n) for n in settings["budgets"])
    overall = [c for c in summarize(rows) if c.strategy not in unchoosable]
    everywhere = {c.key: c.accuracy for c in overall}

    def estimate(c: Cell) -> float:
        return (c.accuracy * c.questions + everywhere[c.key] * prior) / (c.questions + prior)

    table = {b: {n: _best([c for c in cells if c.difficulty_bin == b] or overall, n, unit, min(probe, n), estimate)
                 for n in budgets}
             for b in range(1, bins + 1)}  # a bin that ties left empty: all questions
    kept = ("temperature", "max_tokens", "width", "answer_format")
    return Policy(settings["model"], settings.get("verifier"), probe, thresholds, unit, table,
                  {k: settings[k] for k in kept if k in settings} | {"prior": prior}, sorted(predicted), predictor)


def _probes(row: dict[str, Any], k: int) -> list[tuple[str | None, list[float]]]:
    """A grid item's first k pool samples, as probes: (answer, step scores)."""
    return [(s.get("answer"), s.get("step_scores") or []) for s in row["pool"][:k]]


def fold_of(question: str, folds: int) -> int:
    """A question's fold, stable across runs and machines (a hash of its id, not of the run's order)."""
    return int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big") % folds


def with_auto(rows: list[dict[str, Any]], policies: list[Policy]) -> list[dict[str, Any]]:
    """The grid items with `auto@n` cells replayed at each policy budget n, each item by a policy that was
    not calibrated on its question; items that every policy saw in calibration are left out."""
    if any(key.startswith("auto@") for row in rows for key in row["results"]):
        raise BadParameter("this run evaluated auto live (its auto@n cells): report it without --policy, "
                           "or replay policies on a run of the strategies alone")
    seen = [(p, set(p.calibrated_on)) for p in policies]
    kept = []
    for row in rows:
        judge = next((p for p, calibrated in seen if row["question"] not in calibrated), None)
        if judge is not None:
            budgets = sorted({n for levels in judge.table.values() for n in levels})
            kept.append(row | {"results": row["results"] | {f"auto@{n}": replay(judge, row, n) for n in budgets}})
    return kept


def with_formats(rows: list[dict[str, Any]], settings: dict[str, Any],
                 others: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """A grid's items joined with other grids' of the same questions and seeds in other answer formats, so a
    policy can choose the format too: their cells come in as "majority:format=program@8". Items that not every
    grid holds are left out; the oracle (pass@n) of another format is not a choice and stays out."""
    formats = [settings.get("answer_format", "cot")]
    joined = {(r["question"], r.get("seed", 0)): r | {"results": dict(r["results"])} for r in rows}
    for other_settings, other_rows in others:
        answer_format = other_settings.get("answer_format", "cot")
        if answer_format in formats:
            raise BadParameter(f"two runs of format {answer_format}: give one run per format (see --format)")
        if any(other_settings.get(k) != settings.get(k) for k in ("tasks", "task_seed")):
            raise BadParameter(f"the runs are of different questions (tasks {settings.get('tasks')} seed "
                               f"{settings.get('task_seed')}, and {other_settings.get('tasks')} seed "
                               f"{other_settings.get('task_seed')}): join runs of the same task set")
        if None not in (verifier := other_settings.get("verifier"), settings.get("verifier")) and \
                verifier != settings.get("verifier"):
            raise BadParameter(f"the runs were judged by different verifiers ({settings.get('verifier')}, {verifier}):"
                               " a policy uses one")
        if other_settings.get("model") != settings.get("model"):
            raise BadParameter(f"the runs are of different models ({settings.get('model')}, "
                               f"{other_settings.get('model')}): a policy is for one model")
        formats.append(answer_format)
        theirs = {(r["question"], r.get("seed", 0)): r for r in other_rows}
        joined = {key: row for key, row in joined.items() if key in theirs}
        for key, row in joined.items():
            for cell, entry in theirs[key]["results"].items():
                strategy, n = cell.rsplit("@", 1)
                if parse_spec(strategy)[0] not in ("pass", "auto"):
                    row["results"][f"{strategy}{',' if ':' in strategy else ':'}format={answer_format}@{n}"] = entry
    if not joined:
        raise BadParameter("the runs share no question and seed: join runs of the same task set and seeds")
    return list(joined.values())


def replay(policy: Policy, row: dict[str, Any], n: int) -> dict[str, Any]:
    """What `auto` at budget n would have answered and spent on this grid item (one question, one seed).

    The probes are the pool's first samples with their scores; the chosen strategy's result is the grid's
    own cell. Cost: a pooled choice pays for max(its n, the probe) samples, all scored but for majority's
    beyond the probe; any other choice pays for the probe on top of its cell (its prompt counted twice: a
    slight overcharge)."""
    results = row["results"]
    k = min(policy.probe, n)  # as AutoStrategy: never more probes than the budget
    predicted = predicted_difficulty(_probes(row, k), policy.predictor)
    choice = policy.choose(predicted, n)
    cell = results.get(f"{choice.strategy}@{choice.n}")
    if cell is None:
        raise BadParameter(f"the policy chose {choice.strategy}@{choice.n}, which this grid did not run: "
                           "replay on a grid with the calibration grid's strategies and budgets")
    # The probe's cost: k samples drawn, and scored where difficulty is predicted by score.
    probe_cells = ("bon", "weighted_bon") if policy.predictor == "score" else ("majority", "bon", "weighted_bon")
    probe = next((results[f"{name}@{k}"] for name in probe_cells if f"{name}@{k}" in results), None)
    if probe is None:
        raise BadParameter(f"replaying auto needs the grid's {' or '.join(probe_cells)} at n = {k} (the probe): "
                           f"run the grid with budget {k} and one of them")
    costs = ("flops", "tokens", "seconds")
    if choice.strategy == "majority" and f"majority@{k}" in results:  # drawn, and the probe judged
        drawn = results[f"majority@{max(choice.n, k)}"]
        unjudged = results[f"majority@{k}"]
        spent = {unit: drawn.get(unit, 0.0) + probe.get(unit, 0.0) - unjudged.get(unit, 0.0) for unit in costs}
    elif choice.strategy in POOLED and (choice.n >= k or policy.predictor == "score"):  # probe within its pool
        paid = cell if choice.n >= k else probe
        spent = {unit: max(paid.get(unit, 0.0), probe.get(unit, 0.0)) for unit in costs}
    elif choice.strategy in POOLED:  # k drawn unjudged, then the first n of them judged
        unjudged = results.get(f"majority@{choice.n}", {})
        spent = {unit: probe.get(unit, 0.0) + cell.get(unit, 0.0) - unjudged.get(unit, 0.0) for unit in costs}
    else:  # not pooled, or pooled in another format: the probe is paid on top
        spent = {unit: cell.get(unit, 0.0) + probe.get(unit, 0.0) for unit in costs}
    return {"answer": cell.get("answer"), "correct": cell["correct"], "choice": f"{choice.strategy}@{choice.n}",
            "bin": policy.bin_of(predicted)} | spent


def _best(cells: list[Cell], budget: int, unit: float, probe: int, estimate: Callable[[Cell], float]) -> Choice:
    """The cell estimated most accurate (the cheaper among equals) that fits a budget of `budget` samples of
    `unit` FLOPs each: a pooled strategy draws at most that many samples, so fits by its n; any other must
    fit in FLOPs. probe: the samples auto draws first at this budget (never more than it, as in AutoStrategy)."""
    def cost(c: Cell) -> float:  # a pooled strategy reuses the probe; any other pays for it on top
        return max(c.flops, probe * unit) if c.strategy in POOLED else c.flops + probe * unit

    def fits(c: Cell) -> bool:
        return c.n <= budget if c.strategy in POOLED else cost(c) <= budget * unit * 1.0001

    fitting = [c for c in cells if fits(c)] or [min(cells, key=cost)]
    chosen = max(fitting, key=lambda c: (estimate(c), -cost(c), c.n))  # at equal cost, use what is paid for
    return Choice(chosen.strategy, chosen.n, chosen.accuracy, cost(chosen))


