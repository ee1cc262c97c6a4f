"""An outcome verifier for code: run each candidate program on the examples its prompt shows.

The examples are the prompt's own (see `ponder.tasks.code_examples`), never the oracle's hidden
tests. Each candidate scores the fraction of examples it passes, on every step: a program is judged
as a whole. Programs run in `ponder.sandbox`; one that crashes on load, times out or breaks the
sandbox's rules scores 0, and nothing a candidate does stops the search.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ponder.budget import Budget
from ponder.engine.protocol import Sequence
from ponder.errors import BadParameter
from ponder.tasks.base import Task
from ponder.tasks.code_examples import Example, last_python_block, prompt_examples, run_examples
from ponder.tasks.humaneval import full_program
from ponder.verify.base import split_steps

__all__ = ["CodeExecutionVerifier", "Example", "last_python_block", "prompt_examples"]

log = logging.getLogger(__name__)

_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


class CodeExecutionVerifier:
    """Scores each candidate by the share of the prompt's examples its program passes (0 to 1)."""

    name = "code_execution"

    def __init__(self, extract: Callable[[str], str | None] | None = None, *, timeout_s: float = 5.0,
                 memory_mb: int = 1024, workers: int = 2, score_without_tests: float = 0.5):
        """extract: the program in a completion (default: the task's own `extract`, see
        `last_python_block` for tasks whose answers are not programs); score_without_tests: what a
        program that loads cleanly scores when the prompt shows no examples (it says little)."""
        if timeout_s <= 0 or memory_mb <= 0 or workers < 1 or not 0.0 <= score_without_tests <= 1.0:
            raise BadParameter("timeout_s and memory_mb must be positive, workers at least 1 and "
                               "score_without_tests within [0, 1]")
        self.extract = extract
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.workers = workers
        self.score_without_tests = score_without_tests

    def score(self, task: Task, candidates: list[Sequence], budget: Budget) -> list[list[float]]:
        prompt, entry_point = _prompt_of(task)
        functions = (entry_point,) if entry_point else tuple(dict.fromkeys(_DEF.findall(prompt)))
        examples = prompt_examples(prompt, functions)
        extract = self.extract or task.extract
        programs = [self._program(extract, c.text, task, entry_point) for c in candidates]
        unique = list(dict.fromkeys(p for p in programs if p is not None))  # samples often agree
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            scores = dict(zip(unique, pool.map(lambda p: self._score_program(p, examples, entry_point),
                                               unique)))
        budget.charge_verifier(0, 0)  # no model: only the clock moves
        return [[scores.get(p, 0.0) if p is not None else 0.0] * len(split_steps(c.text))
                for p, c in zip(programs, candidates)]

    def _program(self, extract: Callable[[str], str | None], text: str, task: Task,
                 entry_point: str | None) -> str | None:
        try:
            code = extract(text)
        except Exception:  # an extractor that trips on odd text must not stop the search
            log.debug("extract failed on a candidate of %s", task.id, exc_info=True)
            return None
        if code is None or not code.strip():
            return None
        prompt = task.metadata.get("prompt")
        if isinstance(prompt, str) and entry_point:
            return full_program(prompt, code, entry_point)
        return code

    def _score_program(self, program: str, examples: list[Example], entry_point: str | None) -> float:
        """The share of scored examples passed; 0 on a crash, a timeout or a sandbox violation."""
        checks = list(examples)
        if entry_point:  # the function must exist, whatever the examples say
            checks.insert(0, Example(f"callable({entry_point})", "True"))
        run = run_examples(program, checks, self.timeout_s, self.memory_mb)
        if not run.loaded or (entry_point and not run.passed[0]):
            return 0.0
        offset = 1 if entry_point else 0
        scored = [i + offset for i, e in enumerate(examples) if e.want.strip()]
        if not scored:
            return self.score_without_tests if run.clean_exit else 0.0
        return sum(bool(run.passed[i]) for i in scored) / len(scored)


def _prompt_of(task: Task) -> tuple[str, str | None]:
    """The prompt text to read examples from, and the function under test when the task names it."""
    prompt = task.metadata.get("prompt")
    if not isinstance(prompt, str):
        prompt = "\n".join(m.get("content", "") for m in task.messages if m.get("role") != "system")
    entry_point = task.metadata.get("entry_point")
    return prompt, entry_point if isinstance(entry_point, str) and entry_point else None
