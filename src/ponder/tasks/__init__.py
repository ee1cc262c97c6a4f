"""Problems with reference answers and checkers: reasoning-gym datasets, HumanEval, the user's JSONL.

`load_tasks` turns a task-set spec, as a user types it, into tasks:

    humaneval                        HumanEval's 164 problems (a seeded sample of `size`)
    my_questions.jsonl               the user's own file (a seeded sample of `size`): questions, or code
                                     problems in HumanEval's format (task_id, prompt, entry_point, test)
    gsm_symbolic                     `size` questions of any reasoning-gym dataset
    chain_sum:terms=3,digits=2       ... with config fields set ("terms=3" sets min_terms and max_terms)
    chain_sum_ladder                 `chain_sum` rungs of known difficulty (terms x digits: 2x1, 3x1, 3x2,
                                     4x2, 5x3), size / 5 questions each; `chain_sum_ladder:levels=2x1/4x3`
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from typing import Any, TypeVar

from ponder.errors import BadParameter
from ponder.specs import parse_spec
from ponder.tasks.answers import (
    MATH_SYSTEM_PROMPT,
    answers_equivalent,
    extract_answer,
    math_messages,
    normalize_answer,
    numbers_equal,
)
from ponder.tasks.base import Task
from ponder.tasks.humaneval import (
    HumanEvalTask,
    code_prompt_task,
    is_code_task_file,
    load_code_jsonl,
    load_humaneval,
    looks_like_code,
)
from ponder.tasks.jsonl import JsonlTask, load_jsonl
from ponder.tasks.reasoning_gym import (
    FIND_NAMES,
    ReasoningGymTask,
    chain_sum_ladder,
    load_reasoning_gym,
    reasoning_gym_names,
)

__all__ = [
    "EVALUATION_SETS",
    "MATH_SYSTEM_PROMPT",
    "HumanEvalTask",
    "JsonlTask",
    "ReasoningGymTask",
    "Task",
    "answers_equivalent",
    "chain_sum_ladder",
    "extract_answer",
    "load_code_jsonl",
    "load_humaneval",
    "load_jsonl",
    "load_reasoning_gym",
    "load_tasks",
    "question_task",
    "normalize_answer",
    "numbers_equal",
    "training_tasks",
    "without_evaluation_questions",
]

T = TypeVar("T")

# The questions ponder's benchmarks are scored on (spec, size, seed): what is learned from (PRM
# labels, the allocation policy) must not include them.
EVALUATION_SETS = (("gsm_symbolic", 100, 2024), ("chain_sum_ladder", 50, 2024))


def without_evaluation_questions(tasks: list[Task]) -> list[Task]:
    """The tasks whose prompts are in no evaluation set."""
    def prompt(task: Task) -> str:
        return "\n".join(m["content"] for m in task.messages)

    held = {prompt(t) for spec, size, seed in EVALUATION_SETS for t in load_tasks(spec, size, seed)}
    return [t for t in tasks if prompt(t) not in held]


@functools.cache  # every job of a run asks again
def training_tasks(spec: str, size: int, seed: int, hold_out_templates: float = 0.0) -> list[Task]:
    """The task set's questions less the evaluation sets' and, with `hold_out_templates`, less those of that share
    of templates (see `tasks.templates`), so that a trained model can be judged on templates it never saw."""
    from ponder.tasks.templates import template_of, unseen

    return [t for t in without_evaluation_questions(load_tasks(spec, size, seed))
            if not hold_out_templates or (k := template_of(t)) is None or not unseen(k, hold_out_templates)]


def question_task(question: str, kind: str = "auto", answer: str | None = None) -> Task:
    """One question typed by a user: a word problem (`answer` its right answer, if known), or a code task
    when it is a Python function with a docstring (kind "code", or "auto" and it looks like one)."""
    if kind not in ("auto", "math", "code"):
        raise BadParameter(f"unknown kind {kind!r}: use auto, math or code")
    if kind == "code" or (kind == "auto" and looks_like_code(question)):
        return code_prompt_task(question)
    return JsonlTask("question", math_messages(question), answer or "")


def load_tasks(spec: str, size: int, seed: int) -> list[Task]:
    """The tasks a spec names (see the module docstring): `size` of them, chosen by `seed`."""
    if size < 1:
        raise BadParameter(f"size must be at least 1, not {size}")
    if spec.lower() == "humaneval":
        return _sample(load_humaneval(), size, seed)
    if spec.lower().endswith(".jsonl"):  # questions, or code problems in HumanEval's format
        return _sample(load_code_jsonl(spec) if is_code_task_file(spec) else load_jsonl(spec), size, seed)
    name, settings = parse_spec(spec)
    if name == "chain_sum_ladder":
        return _ladder(spec, size, seed, settings)
    if name in reasoning_gym_names():
        return load_reasoning_gym(name, size, seed, **settings)
    raise BadParameter(
        f"unknown task set {spec!r}: use humaneval, a .jsonl file of questions, or a reasoning-gym "
        f"dataset name such as gsm_symbolic (list them with {FIND_NAMES})"
    )


LADDER = ((2, 1), (3, 1), (3, 2), (4, 2), (5, 3))  # (terms, digits), easiest first


def _ladder(spec: str, size: int, seed: int, settings: dict[str, Any]) -> list[Task]:
    levels = LADDER
    if unknown := set(settings) - {"levels"}:
        raise BadParameter(f"chain_sum_ladder takes only levels=TERMSxDIGITS/..., not {', '.join(sorted(unknown))}")
    if "levels" in settings:
        try:
            levels = tuple(tuple(int(x) for x in level.split("x")) for level in str(settings["levels"]).split("/"))
        except ValueError:
            levels = ()
        if not levels or any(len(level) != 2 or min(level) < 1 for level in levels):
            raise BadParameter(f"bad levels in {spec!r}: write levels=2x1/3x2 (terms x digits, / between rungs)")
    if size % len(levels):
        raise BadParameter(f"size must be a multiple of the ladder's {len(levels)} rungs, not {size}")
    return list(chain_sum_ladder(list(levels), size // len(levels), seed))  # type: ignore[arg-type]


def _sample(tasks: Sequence[T], size: int, seed: int) -> list[T]:
    """`size` of the tasks chosen by `seed`, in their original order; all of them if there are no more."""
    if size >= len(tasks):
        return list(tasks)
    return [tasks[i] for i in sorted(random.Random(seed).sample(range(len(tasks)), size))]
