"""The task's own checker as a verifier: the oracle. Evaluations use it to grade; a search selects
with it only when the user asks (then it measures what a perfect verifier would reach: pass@n)."""

from __future__ import annotations

from ponder.budget import Budget
from ponder.engine.protocol import Sequence
from ponder.tasks.base import Task
from ponder.verify.base import split_steps


class CheckerVerifier:
    name = "checker"

    def score(self, task: Task, candidates: list[Sequence], budget: Budget) -> list[list[float]]:
        return [[float(task.is_correct(c.text))] * len(split_steps(c.text)) for c in candidates]
