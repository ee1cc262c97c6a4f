"""The Verifier protocol: a score in [0, 1] for every step of a candidate solution.

A candidate is a generated `Sequence`; its steps are its text split at the step delimiter (a blank
line, as the step-wise search extends). Outcome verifiers (a checker, a sandbox run) give every step
the final score; process verifiers (arithmetic checks, a generative judge, a learned PRM) score each
step. Strategies aggregate step scores as the literature does: the last step's score (as Snell et
al. found best for PRMs), the minimum, or the product.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


def step_token_ends(decode: Callable[[tuple[int, ...]], str], tokens: tuple[int, ...]) -> list[int]:
    """For each step of `split_steps(decode(tokens))`: the index of the token that completes it and its
    delimiter (the last token, for the last step). A learned verifier reads the model's state there, and
    a Monte Carlo rollout continues from there."""
    text = decode(tokens)
    if not tokens:
        return []
    ends, cursor, parts = [], 0, text.split(STEP_DELIMITER)
    for k, part in enumerate(parts):
        cursor += len(part)
        if part.strip():
            ends.append(min(cursor + len(STEP_DELIMITER), len(text)) if k < len(parts) - 1 else len(text))
        cursor += len(STEP_DELIMITER)
    if not ends:
        return [len(tokens) - 1]
    ends[-1] = len(text)  # the last step runs to the end, blank lines and all
    return [_first_token_reaching(decode, tokens, end) for end in ends]


def _first_token_reaching(decode: Callable[[tuple[int, ...]], str], tokens: tuple[int, ...], chars: int) -> int:
    low, high = 0, len(tokens) - 1  # binary search: decoded prefixes only grow
    while low < high:
        middle = (low + high) // 2
        if len(decode(tokens[: middle + 1])) >= chars:
            high = middle
        else:
            low = middle + 1
    return low


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
