"""A task: the prompt messages, a reference answer, a checker, and difficulty metadata.

Tasks are plain picklable values (they travel to Ray workers and into the evaluation store). The
checker sees only the final answer extracted from a completion, never the reasoning, and only a
full score counts as correct.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ponder.tasks import answers


@dataclass(frozen=True)
class Task(ABC):
    id: str  # unique within its source: "gsm_symbolic/17", "HumanEval/0", "my.jsonl/3"
    messages: tuple[dict[str, str], ...]  # chat messages to render with the model's template
    reference: str  # the reference final answer (for code: the canonical solution)
    difficulty: dict[str, Any] = field(default_factory=dict)  # ground-truth knobs where the source has them
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. a reference chain of thought, tests

    @abstractmethod
    def extract(self, completion: str) -> str | None:
        """The final answer in a completion (a number, an expression, a program), None if there is none."""

    @abstractmethod
    def check(self, answer: str | None) -> bool:
        """Whether an extracted answer is correct (the oracle)."""

    # Stop strings after which a sampled answer is complete: what follows is commentary that costs
    # tokens and changes nothing (a code task's explanation after its code block).
    answer_ends: ClassVar[tuple[str, ...]] = ()

    def is_correct(self, completion: str) -> bool:
        return self.check(self.extract(completion))

    def no_answer_reason(self, completion: str) -> str | None:
        """Why a completion has no answer, where the task can say (a program task: how its program failed)."""
        return None

    def prompts(self) -> tuple[tuple[dict[str, Any], ...], ...]:
        """The ways this task is asked: sample i of a pool gets way i % len (a mixed-format task asks for
        chains of thought and programs in turn); strategies that need one prompt use the first."""
        return (self.messages,)

    def vote_key(self, answer: str | None) -> str | None:
        """What majority voting groups answers by: answers that mean the same thing vote together
        ("1,000", "1000.0", "$1000"); None casts no vote. Code tasks group programs by behaviour."""
        return answers.vote_key(answer)
