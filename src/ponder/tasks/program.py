"""Program-aided answers (PoT, Chen et al. 2022; PAL, Gao et al. 2022): the model writes a Python program
that prints the answer, ponder runs it in the sandbox, and the printed result is the candidate's answer.

A small model that slips on arithmetic in a chain of thought writes `48 - 17 - 12 + 9` correctly far more
often than it adds it up; the interpreter does the arithmetic. Any strategy works on a program task
unchanged: majority votes on the executed results. A program that fails (a crash, a loop, a blocked
call, no output) is a candidate with no answer and a reason (its `reason`, which `ponder solve` shows).
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any, ClassVar

from ponder.errors import BadParameter
from ponder.sandbox import run_python
from ponder.tasks.answers import normalize_answer
from ponder.tasks.base import Task
from ponder.tasks.code_examples import last_python_block

log = logging.getLogger(__name__)

PROGRAM_SYSTEM_PROMPT = (
    "Solve the problem by writing a Python program. Answer with one ```python code block: compute the "
    "answer from the numbers in the problem and print only the final answer (for a number: just the "
    "number, without units)."
)
TIMEOUT_S = 5.0
MEMORY_MB = 512
# Chained float arithmetic leaves noise in the last of a float's 15-17 digits (0.1 * 3 prints 0.30000000000000004):
# printed answers are rounded to this many, so that programs that agree vote together.
SIGNIFICANT_DIGITS = 12
_LONG_DECIMAL = re.compile(r"-?\d+\.\d{6,}")


@dataclass(frozen=True)
class ProgramTask(Task):
    """A word problem answered by a program; checked by the problem's own checker."""

    question: Task | None = None  # the task in its chain-of-thought form
    answer_ends: ClassVar[tuple[str, ...]] = ("\n```\n",)  # the program's block closed: the rest is talk

    def extract(self, completion: str) -> str | None:
        answer, reason = run_program(last_python_block(completion) or "")
        if answer is None:
            log.debug("%s: a candidate program gave no answer: %s", self.id, reason)
        return answer

    def no_answer_reason(self, completion: str) -> str | None:
        return run_program(last_python_block(completion) or "")[1]

    def check(self, answer: str | None) -> bool:
        assert self.question is not None
        return self.question.check(answer)

    def vote_key(self, answer: str | None) -> str | None:
        assert self.question is not None
        return self.question.vote_key(answer)


# Three of PAL's GSM8K exemplars (Gao et al. 2022, its prompt): worked examples show a small model to name
# each quantity, and to subtract what goes away and add what comes in.
EXAMPLES = (
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "money_initial = 23\nbagels = 5\nbagel_cost = 3\nmoney_spent = bagels * bagel_cost\n"
     "money_left = money_initial - money_spent\nprint(money_left)"),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
     "balls did he have at the end of wednesday?",
     "golf_balls_initial = 58\ngolf_balls_lost_tuesday = 23\ngolf_balls_lost_wednesday = 2\n"
     "golf_balls_left = golf_balls_initial - golf_balls_lost_tuesday - golf_balls_lost_wednesday\n"
     "print(golf_balls_left)"),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "computers_initial = 9\ncomputers_per_day = 5\nnum_days = 4  # monday to thursday\n"
     "computers_added = computers_per_day * num_days\ncomputers_total = computers_initial + computers_added\n"
     "print(computers_total)"),
)
EXAMPLE_TURNS = tuple(turn for question, program in EXAMPLES for turn in (
    {"role": "user", "content": question}, {"role": "assistant", "content": f"```python\n{program}\n```"}))


def as_program_task(task: Task) -> ProgramTask:
    """The same question, asked for a program."""
    users = [m for m in task.messages if m["role"] == "user"]
    messages = ({"role": "system", "content": PROGRAM_SYSTEM_PROMPT}, *EXAMPLE_TURNS, *users)
    return ProgramTask(id=task.id, messages=messages,
                       reference=task.reference, difficulty=task.difficulty, metadata=task.metadata,
                       question=task)


@functools.lru_cache(maxsize=4096)
def run_program(code: str) -> tuple[str | None, str | None]:
    """(the answer a program prints, None) or (None, why it gave none). The last line printed is the answer.
    Cached: the answer of a candidate is asked for more than once."""
    if not code.strip():
        return None, "no python code block"
    result = run_python(code, timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB)
    if not result.passed:
        return None, result.reason
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if not lines:
        return None, "printed nothing"
    answer = normalize_answer(lines[-1])
    if answer and _LONG_DECIMAL.fullmatch(answer):
        rounded = Context(prec=SIGNIFICANT_DIGITS).plus(Decimal(answer)).normalize()
        answer = normalize_answer(format(rounded, "f"))
    return (answer, None) if answer else (None, f"printed no answer: {lines[-1][:80]!r}")  # markup only: "**"


@dataclass(frozen=True)
class MixedTask(ProgramTask):
    """Chains of thought and programs in turn (sample i: a chain of thought when i is even, a program when odd),
    voted on together: a completion with a python block is answered by running it, any other as the question
    reads it. Greedy and the tree strategies ask only for a chain of thought."""

    program_messages: tuple[dict[str, str], ...] = ()

    def prompts(self) -> tuple[tuple[dict[str, Any], ...], ...]:
        return (self.messages, self.program_messages)

    def extract(self, completion: str) -> str | None:
        assert self.question is not None
        return super().extract(completion) if last_python_block(completion) else self.question.extract(completion)

    def no_answer_reason(self, completion: str) -> str | None:
        assert self.question is not None
        return super().no_answer_reason(completion) if last_python_block(completion) else \
            self.question.no_answer_reason(completion)


FORMATS = ("cot", "program", "mixed")


def with_format(task: Task, answer_format: str) -> Task:
    """The task asked for a chain of thought (cot: as it is), for a program, or for both in turn (mixed)."""
    if answer_format not in FORMATS:
        raise BadParameter(f"unknown format {answer_format!r}: use one of {', '.join(FORMATS)}")
    if answer_format == "cot":
        return task
    if "entry_point" in task.metadata:
        raise BadParameter(f"--format {answer_format} is for word problems, and {task.id!r} is a code task (its "
                           "answers are programs already): leave out --format")
    program = as_program_task(task)
    if answer_format == "program":
        return program
    return MixedTask(id=task.id, messages=task.messages, reference=task.reference, difficulty=task.difficulty,
                     metadata=task.metadata, question=task, program_messages=program.messages)
