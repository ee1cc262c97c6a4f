"""Does the learned verifier help? Step AUC on held-out labels, and selection among the same samples.

Selection reuses the benchmark's samples (16 per evaluation question, with the policy's states at
their step ends, from benchmarks/bench_search.py): best-of-N and weighted best-of-N with each head
against majority voting and the oracle's pass@N, on the first N samples, as the literature does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from ponder.errors import BadParameter
from ponder.prm.features import decode_states, fill_missing_states, training_rows
from ponder.prm.head import ValueHead, load_head
from ponder.prm.train import auc
from ponder.search.base import Candidate, best, majority, weighted
from ponder.stats import bootstrap_interval, mean
from ponder.tasks import EVALUATION_SETS, load_tasks
from ponder.verify.base import aggregate

SIZES = (4, 16)


def evaluate_heads(paths: list[Path], samples: Path, labels: list[Path], aggregations: Sequence[str] = ("last",)
                   ) -> Table:
    from ponder.jobs import RunStore
    from ponder.models.loader import load

    if not samples.is_file():
        raise BadParameter(f"no samples at {samples}: run benchmarks/bench_search.py first")
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    cards = [load_head(p)[1] for p in paths]
    models = {c["base"]["model"] for c in cards}
    if len(models) != 1:
        raise BadParameter(f"the heads belong to different models ({', '.join(sorted(models))}): compare one model's")
    model = models.pop()
    loaded = load(model)
    backbone = loaded.model
    trained_on = [p for c in cards for p in c.get("data", {}).get("labels", [])]
    held = [(path, *held_out([r for _, r in RunStore.existing(path).items()], trained_on)) for path in labels]
    # Samples and labels restored from a snapshot (evidence/) come without states: computed here, in one engine.
    fill_missing_states(rows + [r for _, results, _ in held for r in results], loaded, model)
    kinds = [c["kind"] for c in cards]
    unique = len(set(kinds)) == len(kinds)  # then "prm" and "orm" name them
    heads = {kind if unique else f"{kind}:{p.stem}": (load_head(p, backbone)[0], kind) for p, kind in zip(paths, kinds)}
    judges = {}  # an outcome model judges the final state only; a process model's steps can be read several ways
    for name, (head, kind) in heads.items():
        judges |= {name + ("" if how == "last" else f" ({how})"): (head, how)
                   for how in (aggregations if kind == "prm" else ["last"])}
    table = Table(title=f"learned verifiers on {len(rows)} evaluation questions (16 samples each)")
    for column in ("selection", *(f"N = {n}" for n in SIZES)):
        table.add_column(column)
    for name, accuracy in selection_accuracy(rows, judges, backbone.cfg.dim).items():
        table.add_row(name, *(_cell(accuracy[n]) for n in SIZES))
    for name, (pooled, within) in answer_auc(rows, judges, backbone.cfg.dim).items():
        table.add_row(f"answer AUC, {name}: all | per question", f"{pooled:.3f}", f"{within:.3f}")
    for path, results, note in held:
        features, targets, _ = training_rows(results, "prm", backbone.cfg.dim)
        for name, (head, _) in heads.items():
            with torch.no_grad():
                table.add_row(f"step AUC, {name}: {path.stem}, {note}", f"{auc(head(features), targets):.3f}", "")
    return table


def held_out(results: list[dict[str, Any]], trained_on: list[str]) -> tuple[list[dict[str, Any]], str]:
    """The labelled questions that no head was trained on (by prompt), and a note saying how many."""
    from ponder.jobs import RunStore

    missing = [p for p in trained_on if not Path(p).is_file()]
    if missing:
        return results, f"{len(results)} questions; overlap with training unchecked: {missing[0]} is not here"
    seen = {tuple(r["prompt"]) for p in trained_on for _, r in RunStore.existing(p).items()}
    kept = [r for r in results if tuple(r["prompt"]) not in seen]
    if not kept:
        raise BadParameter("every held-out question was also trained on: label others (reasoning-gym's item i "
                           "of seed s is often item i - 1 of seed s + 1: take a distant --seed)")
    return kept, f"{len(kept)} questions" + (f", {len(results) - len(kept)} trained on left out"
                                              if len(kept) < len(results) else "")


def selection_accuracy(rows: list[dict[str, Any]], judges: dict[str, tuple[ValueHead, str]], dim: int
                       ) -> dict[str, dict[int, list[float]]]:
    """Per selection rule and N: 1.0 / 0.0 per question. A judge is a head and how its step scores aggregate."""
    tasks = evaluation_tasks(rows)
    out: dict[str, dict[int, list[float]]] = {}

    def record(name: str, n: int, right: bool) -> None:
        out.setdefault(name, {}).setdefault(n, []).append(float(right))

    for row in rows:
        task = tasks[row["id"]]
        judged = {name: [head_candidate(s, head, dim, how) for s in row["samples"][:max(SIZES)]]
                  for name, (head, how) in judges.items()}  # once per sample; each N reads the first N
        for n in SIZES:
            first = row["samples"][:n]
            record("majority", n, task.check(majority([Candidate(s["text"], s["answer"]) for s in first])))
            record("pass@N (oracle)", n, any(task.check(s["answer"]) for s in first))
            for name, scored in judged.items():
                record(f"best-of-N, {name}", n, task.check(best(scored[:n])))
                record(f"weighted best-of-N, {name}", n, task.check(weighted(scored[:n])))
    return out


def answer_auc(rows: list[dict[str, Any]], judges: dict[str, tuple[ValueHead, str]], dim: int
               ) -> dict[str, tuple[float, float]]:
    """Per judge, how well its candidate scores tell right answers from wrong: over all samples (which also
    rewards knowing which questions are hard) and, averaged over questions with both, among one question's
    samples (what best-of-N needs)."""
    tasks = evaluation_tasks(rows)
    out = {}
    for name, (head, how) in judges.items():
        pooled_scores, pooled_right, within = [], [], []
        for row in rows:
            task = tasks[row["id"]]
            scores = torch.tensor([head_candidate(s, head, dim, how).score for s in row["samples"]])
            right = torch.tensor([float(task.check(s["answer"])) for s in row["samples"]])
            pooled_scores.append(scores)
            pooled_right.append(right)
            if 0 < right.sum() < len(right):
                within.append(auc(scores, right))
        out[name] = (auc(torch.cat(pooled_scores), torch.cat(pooled_right)), mean(within) if within else float("nan"))
    return out


def head_candidate(sample: dict[str, Any], head: ValueHead, dim: int, how: str = "last") -> Candidate:
    """A stored sample judged by a head from its stored states, its step scores aggregated `how`."""
    if not sample.get("step_ends"):
        return Candidate(sample["text"], sample["answer"], [], 0.0)
    with torch.no_grad():
        scores = head.probability(decode_states(sample["states"], dim)).tolist()
    return Candidate(sample["text"], sample["answer"], scores, aggregate(scores, how))


def _cell(values: list[float]) -> str:
    low, high = bootstrap_interval(values)
    return f"{mean(values):.2f} ({low:.2f}-{high:.2f})"


def evaluation_tasks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The evaluation questions by id; refused if a sample row is not one of them."""
    spec, size, seed = EVALUATION_SETS[0]
    tasks = {t.id: t for t in load_tasks(spec, size, seed)}
    if stray := next((row["id"] for row in rows if row["id"] not in tasks), None):
        raise BadParameter(f"sample row {stray} is not an evaluation question: use the benchmark's samples")
    return tasks
