"""The Verifier protocol: a score in [0, 1] for every step of a candidate solution.

A candidate is a generated `Sequence`; its steps are its text split at the step delimiter (a blank
line, as the step-wise search extends). Outcome verifiers (a checker, a sandbox run) give every step
the final score; process verifiers (arithmetic checks, a generative judge, a learned PRM) score each
step. Strategies aggregate step scores as the literature does: the last step's score (as Snell et
al. found best for PRMs), the minimum, or the product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence as Seq
from typing import Protocol

from ponder.budget import Budget
from ponder.engine.protocol import Sequence
from ponder.tasks.base import Task

STEP_DELIMITER = "\n\n"


def split_steps(text: str) -> list[str]:
    """The non-empty steps of a completion, each without its delimiter; at least one (maybe empty)."""
    steps = [s for s in text.split(STEP_DELIMITER) if s.strip()]
    return steps or [text]


class Verifier(Protocol):
    name: str

    def score(self, task: Task, candidates: list[Sequence], budget: Budget) -> list[list[float]]:
        """One score in [0, 1] per step (see `split_steps`) of each candidate; model tokens charged to budget."""
        ...


AGGREGATIONS = ("last", "min", "prod", "mean")


def aggregate(step_scores: Seq[float], how: str = "last") -> float:
    """One score for a whole candidate from its step scores."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}: use one of {', '.join(AGGREGATIONS)}")
    if not step_scores:
        return 0.0
    if how == "last":
        return step_scores[-1]
    if how == "min":
        return min(step_scores)
    if how == "prod":
        return math.prod(step_scores)
    return sum(step_scores) / len(step_scores)
