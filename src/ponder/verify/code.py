"""An outcome verifier for code: run each candidate program on the examples its prompt shows.

The examples are the prompt's own (see `ponder.tasks.code_examples`), never the oracle's hidden
tests. Each candidate scores the fraction of examples it passes, on every step: a program is judged
as a whole. Programs run in `ponder.sandbox`; one that crashes on load, times out or breaks the
sandbox's rules scores 0, and nothing a candidate does stops the search.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ponder.budget import Budget
from ponder.engine.protocol import Generator, Sequence
from ponder.engine.sampling import SamplingParams
from ponder.errors import BadParameter
from ponder.tasks.base import Task
from ponder.tasks.code_examples import Example, last_python_block, prompt_examples, run_examples
from ponder.tasks.humaneval import full_program
from ponder.verify.base import split_steps

__all__ = ["CodeExecutionVerifier", "Example", "last_python_block", "prompt_examples"]

log = logging.getLogger(__name__)

WRITE_TESTS = ("Write {k} different assert statements, one per line, that test the function `{entry_point}` "
               "below on typical and edge-case inputs. Answer with the assert lines only.\n\n{prompt}")
_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


class CodeExecutionVerifier:
    """Scores each candidate by the share of the prompt's examples its program passes (0 to 1)."""

    name = "code_execution"

    def __init__(self, extract: Callable[[str], str | None] | None = None, *, timeout_s: float = 5.0,
                 memory_mb: int = 1024, workers: int = 2, score_without_tests: float = 0.5,
                 tester: Generator | None = None, tests: int = 5):
        """extract: the program in a completion (default: the task's own `extract`, see
        `last_python_block` for tasks whose answers are not programs); score_without_tests: what a
        program that loads cleanly scores when the prompt shows no examples and there is no `tester`,
        a model that writes `tests` assert-tests for such prompts (CodeT's dual agreement)."""
        if timeout_s <= 0 or memory_mb <= 0 or workers < 1 or not 0.0 <= score_without_tests <= 1.0:
            raise BadParameter("timeout_s and memory_mb must be positive, workers at least 1 and "
                               "score_without_tests within [0, 1]")
        self.extract = extract
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.workers = workers
        self.score_without_tests = score_without_tests
        self.tester, self.tests = tester, tests
        self._tests: dict[str, list[Example]] = {}

    def score(self, task: Task, candidates: list[Sequence], budget: Budget) -> list[list[float]]:
        prompt, entry_point = _prompt_of(task)
        functions = (entry_point,) if entry_point else tuple(dict.fromkeys(_DEF.findall(prompt)))
        examples = prompt_examples(prompt, functions)
        extract = self.extract or task.extract
        programs = [self._program(extract, c.text, task, entry_point) for c in candidates]
        unique = list(dict.fromkeys(p for p in programs if p is not None))  # samples often agree
        if not examples and self.tester is not None and entry_point and unique:
            scores = self._dual_agreement(task, prompt, entry_point, unique, budget)
        else:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                scores = dict(zip(unique, pool.map(lambda p: self._score_program(p, examples, entry_point),
                                                   unique)))
            budget.charge_verifier(0, 0)  # no model: only the clock moves
        return [[scores.get(p, 0.0) if p is not None else 0.0] * len(split_steps(c.text))
                for p, c in zip(programs, candidates)]

    def example_results(self, task: Task, texts: list[str]) -> list[list[dict[str, Any]]]:
        """What each candidate's program printed on the prompt's scored examples, for people to read (the
        thinking page): per candidate a list of {example, want, got, passed}; empty where there is no program or
        no example."""
        prompt, entry_point = _prompt_of(task)
        functions = (entry_point,) if entry_point else tuple(dict.fromkeys(_DEF.findall(prompt)))
        examples = prompt_examples(prompt, functions)
        extract = self.extract or task.extract
        shown = []
        for text in texts:
            program = self._program(extract, text, task, entry_point) if examples else None
            if program is None:
                shown.append([])
                continue
            run = run_examples(program, examples, self.timeout_s, self.memory_mb)
            reason = run.killed_reason or ("the program does not load" if not run.loaded else None)
            shown.append([{"example": e.source, "want": e.want, "got": reason if got is None else got.strip(), "passed": ok}
                          for e, ok, got in zip(examples, run.passed, run.outputs) if e.want.strip()])
        return shown

    def _dual_agreement(self, task: Task, prompt: str, entry_point: str, programs: list[str],
                        budget: Budget) -> dict[str, float]:
        """CodeT (Chen et al. 2022) where the prompt shows no examples: the model writes assert-tests for
        the function; programs that pass the same tests form a consensus set, scored by its size times
        the tests it passes (so neither a lone program that passes much nor many that pass nothing
        win). A program's score is its set's, relative to the best set's."""
        tests = self._written_tests(task, prompt, entry_point, budget)
        sets: dict[str, frozenset[int] | None] = {}  # the tests each program passes; None: it does not load
        for program in programs:
            run = run_examples(program, [Example(f"callable({entry_point})", "True"), *tests],
                               self.timeout_s, self.memory_mb)
            loads = run.loaded and bool(run.passed[0])
            sets[program] = frozenset(i for i, ok in enumerate(run.passed[1:]) if ok) if loads else None
        size = Counter(s for s in sets.values() if s is not None)
        worth = {s: n * (len(s) + 1) for s, n in size.items()}  # +1: programs that agree on failing all still agree
        top = max(worth.values(), default=0)
        return {p: worth[s] / top if s is not None and top else 0.0 for p, s in sets.items()}

    def _written_tests(self, task: Task, prompt: str, entry_point: str, budget: Budget) -> list[Example]:
        """Assert lines the model writes for the function (each one a test; the scoring run reports which
        pass: an assert prints nothing when it holds)."""
        assert self.tester is not None
        if prompt in self._tests:  # written once per prompt, however often the search scores
            return self._tests[prompt]
        before = self.tester.usage.snapshot()
        messages = [{"role": "user", "content": WRITE_TESTS.format(k=self.tests, entry_point=entry_point,
                                                                       prompt=prompt.strip())}]
        prompt_ids = tuple(self.tester.encode_chat(messages))
        (written,) = self.tester.extend([Sequence(prompt_ids)], SamplingParams(max_tokens=40 * self.tests))
        spent = self.tester.usage - before
        budget.charge_verifier(spent.prompt_tokens_computed + spent.generated_tokens, self.tester.info.n_params)
        lines = [line.strip() for line in written.text.splitlines()]
        asserts = [line for line in lines if line.startswith("assert ") and f"{entry_point}(" in line]
        self._tests[prompt] = [Example(line, "") for line in dict.fromkeys(asserts)][:self.tests]
        return self._tests[prompt]

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
