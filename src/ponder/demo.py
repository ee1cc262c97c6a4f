"""`ponder demo`: one question answered with one sample and with the default way of thinking harder, side by
side, then what that way measured on held-out questions (so one lucky answer is not taken for the rule).

The measured lines come from `measured.json`, written by `benchmarks/measured.py` from evaluation stores
(every line names the command that produced it); a way not measured yet says so.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module for its constants: torch waits until a demo runs
    from ponder.engine.protocol import Generator

QUESTION = ("A baker made 48 cookies. She sold 17 in the morning and 12 in the afternoon, then baked 9 more. "
            "How many cookies does she have now?")
ANSWER = "28"
MEASURED = Path(__file__).with_name("measured.json")
# The default way of thinking harder about a word problem: 8 programs, run, their printed results voted on.
DEFAULT_THINKING = {"strategy": "majority", "n": 8, "format": "program"}
ONE_SAMPLE = {"strategy": "greedy", "n": 1, "format": "cot"}


@dataclass(frozen=True)
class Attempt:
    label: str
    answer: str | None
    right: bool | None  # None: the right answer was not given
    seconds: float
    tflops: float
    tokens: int


def attempt(generator: Generator, question: str, answer: str | None, label: str, way: dict[str, Any],
            seed: int) -> Attempt:
    """One way of answering the question, timed and charged."""
    from ponder.budget import Budget
    from ponder.search import solve
    from ponder.tasks import question_task
    from ponder.tasks.program import with_format

    task = with_format(question_task(question, "math", answer), way["format"])
    start = time.perf_counter()
    result = solve(generator, task, way["strategy"], way["n"], None, Budget(), seed=seed)
    seconds = time.perf_counter() - start
    right = None if answer is None else task.check(result.answer)
    spend = result.spend
    return Attempt(label, result.answer, right, seconds, spend.flops / 1e12,
                   spend.generated_tokens + spend.prompt_tokens_computed)


def measured_lines(model: str) -> list[str]:
    """What the demo's two ways measured for `model`, one line each with its command; [] if not measured."""
    try:
        measured = json.loads(MEASURED.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    return [f"{m['label']}: {m['accuracy']:.2f} (95% CI {m['low']:.2f}-{m['high']:.2f}) on {m['questions']} "
            f"held-out {m['task']} questions, {m['tflops']:.2f} TFLOPs a question  [{m['command']}]"
            for m in measured.get(model, [])]
