"""Code tasks: the program in a completion, HumanEval-format files, code questions, and voting by behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder.errors import BadParameter
from ponder.search import make_strategy
from ponder.search.base import Candidate, Search, majority
from ponder.tasks import load_tasks, question_task
from ponder.tasks.humaneval import HumanEvalTask, extract_code, sanitize
from scripted import Writes

PROMPT = '''def add(a: int, b: int) -> int:
    """Add two integers.
    >>> add(1, 2)
    3
    >>> add(-1, 1)
    0
    """
'''
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-4, 4) == 0\n"


def test_sanitize_keeps_definitions_and_drops_demo_runs() -> None:
    code = ("import math\nLIMIT = 10\n\n@staticmethod\ndef helper(x):\n    return x\n\n"
            "def add(a, b):\n    return a + b\n\nresult = add(1, 2)\nprint(result)\n"
            "if __name__ == '__main__':\n    print(add(3, 4))\n    print(add(")
    assert sanitize(code) == ("import math\n\nLIMIT = 10\n\n@staticmethod\ndef helper(x):\n    return x\n\n"
                              "def add(a, b):\n    return a + b\n")
    assert sanitize("    return a + b\n") == "    return a + b\n"  # a body is left to full_program


def test_extract_prefers_the_block_that_defines_the_function() -> None:
    completion = ("```python\ndef add(a, b):\n    return a + b\n```\nFor example:\n```python\nprint(add(1, 2))\n```\n"
                  "Output:\n```\n3\n```\n")
    assert extract_code(completion, "add") == "def add(a, b):\n    return a + b\n"


def _task(tmp_path: Path) -> HumanEvalTask:
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"task_id": "mine/0", "prompt": PROMPT, "entry_point": "add", "test": TEST}) + "\n")
    (task,) = load_tasks(str(path), 10, 0)
    assert isinstance(task, HumanEvalTask)
    return task


def test_a_jsonl_file_in_humaneval_format_is_a_code_task_set(tmp_path: Path) -> None:
    task = _task(tmp_path)
    # The reply is begun as an open python block: a completion is the code that follows it.
    assert task.messages[-1]["prefix"] and task.messages[-1]["content"].endswith("```python\n")
    assert task.is_correct("def add(a, b):\n    return a + b\n```\n")
    assert not task.is_correct("def add(a, b):\n    return a - b\n```\n")
    # Cut off by the token limit after a right function: the function still counts.
    assert task.is_correct("def add(a, b):\n    return a + b\n\nprint(add(1, 2)")


@pytest.mark.parametrize("line, says", [
    ("{not json", "line 2 is not valid JSON"),
    ('{"task_id": "b", "prompt": "def f():\\n", "entry_point": "f"}', "line 2 has no 'test'"),
    ('["a list"]', "line 2 is not a JSON object"),
])
def test_a_malformed_code_task_line_is_one_error_with_its_number(tmp_path: Path, line: str, says: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"task_id": "a", "prompt": PROMPT, "entry_point": "add", "test": TEST})
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(BadParameter, match=says):
        load_tasks(str(path), 10, 0)


def test_a_function_prompt_is_a_code_question() -> None:
    task = question_task(PROMPT)
    assert isinstance(task, HumanEvalTask) and task.metadata["entry_point"] == "add"
    assert not isinstance(question_task("What is 17 + 25?"), HumanEvalTask)
    assert not isinstance(question_task(PROMPT, kind="math"), HumanEvalTask)
    with pytest.raises(BadParameter, match="a `def` line"):
        question_task("What is 17 + 25?", kind="code")
    with pytest.raises(BadParameter, match="use auto, math or code"):
        question_task(PROMPT, kind="poem")


def test_programs_vote_by_what_they_print_on_the_prompts_inputs(tmp_path: Path) -> None:
    task = _task(tmp_path)
    plain = "def add(a, b):\n    return a + b\n"
    other_way = "def add(a, b):\n    # the same behaviour, written differently\n    return sum([a, b])\n"
    wrong = "def add(a, b):\n    return a * b\n"
    broken = "def add(a, b):\n    return a +\n"
    assert task.vote_key(plain) == task.vote_key(other_way) != task.vote_key(wrong)
    assert task.vote_key("def add(a, b):\n    raise ValueError\n") is not None  # it loads: errors are outputs
    assert task.vote_key("while True:\n    pass\n") is None  # a program that never loads has no vote
    candidates = [Candidate(f"c{i}", task.extract(code)) for i, code in enumerate([wrong, plain, other_way, broken])]
    chosen = majority(candidates, task.vote_key)
    assert chosen == plain and task.check(chosen)  # two programs that agree beat one that differs


def test_majority_and_best_of_n_over_programs(tmp_path: Path) -> None:
    task = _task(tmp_path)
    programs = ["def add(a, b):\n    return a * b\n```\n", "def add(a, b):\n    return b + a\n```\n",
                "def add(a, b):\n    return a + b\n```\n", "import socket\nsocket.socket()\n```\n"]
    generator = Writes(programs)
    voted = make_strategy("majority", 4).run(Search(generator, task))
    assert task.check(voted.answer) and voted.answer.startswith("def add")
    from ponder.verify import make_verifier

    chosen = make_strategy("bon", 4).run(Search(generator, task, verifier=make_verifier("code")))
    assert task.check(chosen.answer) and chosen.candidates[0].score == 1.0
    assert chosen.candidates[-1].score == 0.0  # the program that opens a socket is a failed candidate


def test_without_examples_the_model_writes_tests_and_programs_are_ranked_by_dual_agreement() -> None:
    from ponder.budget import Budget
    from ponder.engine.protocol import Sequence
    from ponder.verify.code import CodeExecutionVerifier

    task = question_task('def double(x):\n    """Twice x."""\n')
    tests = "assert double(2) == 4\nassert double(0) == 0\nassert double(-3) == -6\nprint('not a test')\n"
    tester = Writes([tests])
    right, also_right = "def double(x):\n    return 2 * x\n", "def double(x):\n    return x + x\n"
    squares, broken = "def double(x):\n    return x * x\n", "def double(x)\n"
    candidates = [Sequence((1,), text=code) for code in (squares, right, also_right, broken)]
    budget = Budget()
    scores = CodeExecutionVerifier(tester=tester, timeout_s=3).score(task, candidates, budget)
    # right and also_right pass all 3 tests together (2 x 4); squares passes double(2) and double(0) alone (1 x 3)
    assert [s[-1] for s in scores] == [3 / 8, 1.0, 1.0, 0.0]
    assert budget.spent.verifier_tokens == len(tests)  # the tests the model wrote are charged to the verifier
