"""Tasks: answer extraction from what small models write, reasoning-gym, HumanEval and JSONL tasks."""

from __future__ import annotations

import dataclasses
import json
import pickle
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from ponder.errors import BadParameter, PonderError
from ponder.tasks import (
    MATH_SYSTEM_PROMPT,
    HumanEvalTask,
    JsonlTask,
    ReasoningGymTask,
    answers_equivalent,
    chain_sum_ladder,
    extract_answer,
    load_humaneval,
    load_jsonl,
    load_reasoning_gym,
    load_tasks,
    normalize_answer,
    numbers_equal,
)
from ponder.tasks import reasoning_gym as rg_tasks
from ponder.tasks.humaneval import extract_code, full_program

# (completion, extracted answer): what small models end their solutions with.
EXTRACTION = [
    ("3 + 4 = 7\n\nThe answer is 7.", "7"),
    ("The answer is $1,234.", "1234"),
    ("**Answer:** 12 dollars", "12"),
    ("The final answer is $\\boxed{\\frac{3}{4}}$", "3/4"),
    ("First \\boxed{5}, but wait, it is \\boxed{6}.", "6"),
    ("\\boxed{\\frac{1}{2}} is wrong, so the answer is 3.", "1/2"),  # a box beats a phrase
    ("The answer is: **42**.", "42"),
    ("#### 288", "288"),
    ("She has 5 apples and buys 3 more. 5 + 3 = 8", "8"),
    ("The answer is -7.", "-7"),
    ("The answer is 2.50", "2.5"),
    ("The answer is 3.0.", "3"),
    ("The answer is 5 cm.", "5"),
    ("The answer is 50%.", "50"),
    ("**Answer:**\n\n17", "17"),
    ("The answer is x = 5.", "5"),
    ("The answer is 2 + 3 = 5.", "5"),
    ("Final Answer: The final answer is $12$. I hope it is correct.", "12"),
    ("So she pays \\$18 in total. The answer is \\$18.", "18"),
    ("The answer is 42 because 6*7=42.", "42"),
    ("The answer is \u22124.", "-4"),  # a Unicode minus sign
    ("In total they raised 1,000,000 dollars", "1000000"),
    ("\\boxed{x^2+1}", "x^2+1"),
    ("\\boxed{18 \\text{ dollars}}", "18"),
    ("\\boxed{\\dfrac{-3}{4}}", "-3/4"),
    ("The answer is 3/4.", "3/4"),
    ("The answer is 1,234.56.", "1234.56"),
    ("The answer is 12.5%", "12.5"),
    ("The answer is .5", "0.5"),
    ("The answer is **$12.00**.", "12"),
    ("The cost is \\boxed{12", "12"),  # a box cut off by the token limit: fall back to the last number
    ("answer = 99", "99"),
    ("The ANSWER IS 64", "64"),
    ("The answer is 10 sq. ft. of carpet.", "10"),
    ("The answer is 5 km/h", "5"),
    ("The answer is -$5.", "-5"),
    ("The answer is apple, banana, cherry.", "apple, banana, cherry"),
    ("The answer is 12 dollars and 50 cents.", "12 dollars and 50 cents"),  # not one number: left as text
    ("So 4 - 1 - 7 = -4", "-4"),
    ("Step 1: 3-4 is negative", "4"),  # a hyphen is not a minus sign
    ("He has x2 more", None),  # digits glued to letters are not a number
    ("I am not sure.", None),
    ("", None),
]


@pytest.mark.parametrize(("completion", "expected"), EXTRACTION)
def test_extract_answer(completion: str, expected: str | None) -> None:
    assert extract_answer(completion) == expected


@pytest.mark.parametrize(
    ("answer", "reference", "equal"),
    [
        ("1/2", "0.5", True),
        ("\\frac{3}{4}", "3/4", True),
        ("6/8", "3/4", True),
        ("$1,234", "1234", True),
        ("12 dollars", "12", True),
        ("2.50", "2.5", True),
        ("-0", "0", True),
        ("0.333", "1/3", False),  # numbers compare exactly
        ("x+1", "1+x", True),
        ("2x+1", "1+2*x", True),
        ("\\sqrt{4}", "2", True),
        ("\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}", True),
        ("x^2", "x**2", True),
        ("Paris", "paris", True),
        ("dog", "god", False),  # words are not products of symbols
        ("garbage }{", "1", False),
        ("\\frac{", "\\boxed{", False),
        ("7", "8", False),
        (None, "1", False),
        ("", "", False),
        ("1/0", "1", False),
    ],
)
def test_answers_equivalent(answer: str | None, reference: str, equal: bool) -> None:
    assert answers_equivalent(answer, reference) is equal


def test_answers_equivalent_off_the_main_thread() -> None:
    # math-verify's own timeout needs the main thread; workers must still get an answer, not an error.
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(answers_equivalent, "x+1", "1+x").result() is True


def test_numbers_equal_and_normalize() -> None:
    assert numbers_equal("1,000", "1000.0")
    assert not numbers_equal("x", "x")
    assert not numbers_equal(None, "1")
    assert normalize_answer("  **$1,234.50**. ") == "1234.5"
    assert normalize_answer("\\(\\frac{3}{4}\\)") == "3/4"
    assert normalize_answer("") is None


# --- reasoning-gym ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gsm_symbolic", "chain_sum", "basic_arithmetic"])
def test_reasoning_gym_tasks(name: str) -> None:
    tasks = load_reasoning_gym(name, size=4, seed=7)
    assert len(tasks) == 4 and len({t.id for t in tasks}) == 4
    for task in tasks:
        assert task.id.startswith(f"{name}/")
        assert task.messages[0] == {"role": "system", "content": MATH_SYSTEM_PROMPT}
        assert task.messages[1]["role"] == "user" and task.messages[1]["content"] == task.entry["question"]
        assert task.check(task.reference)
        assert not task.check(str(Decimal(task.reference) + 1))
        assert not task.check(None)
        assert task.is_correct(f"Let me work it out.\n\nThe answer is {task.reference}.")
        assert not task.is_correct(f"The answer is {Decimal(task.reference) - 3}.")
    # Same name, size and seed: the same questions.
    assert [t.entry for t in load_reasoning_gym(name, size=4, seed=7)] == [t.entry for t in tasks]


def test_reasoning_gym_tasks_pickle() -> None:
    task = load_reasoning_gym("gsm_symbolic", size=2, seed=1)[1]
    copy = pickle.loads(pickle.dumps(task))
    assert copy == task
    rg_tasks._dataset.cache_clear()  # as in a fresh worker: the scorer is rebuilt from name and settings
    assert copy.check(copy.reference) and not copy.check("0")


def test_scorer_sees_only_the_final_answer() -> None:
    # reasoning-gym's scorers give partial credit when the reference is inside a longer answer; a
    # number buried in working, or partial credit, is not correct.
    task = load_reasoning_gym("chain_sum", size=1, seed=0, terms=2, digits=1)[0]
    assert not task.check(f"{task.reference} or maybe {task.reference}0")
    assert task.is_correct(f"I think {task.reference}0 at first.\n\nThe answer is {task.reference}.")


def test_gsm_symbolic_keeps_reference_chain_of_thought() -> None:
    task = load_reasoning_gym("gsm_symbolic", size=1, seed=0)[0]
    assert task.metadata["reference_cot"].rstrip().endswith(f"#### {task.reference}")
    assert task.is_correct(task.metadata["reference_cot"])


def test_chain_sum_difficulty_knobs() -> None:
    tasks = load_reasoning_gym("chain_sum", size=20, seed=3)
    for task in tasks:
        assert set(task.difficulty) == {"num_terms", "num_digits"}
        assert task.difficulty["num_terms"] == len(task.metadata["expression"].split()) // 2 + 1
    assert len({t.difficulty["num_terms"] for t in tasks}) > 1  # the default config varies them
    for task in load_reasoning_gym("basic_arithmetic", size=5, seed=3):
        assert set(task.difficulty) == {"num_terms", "num_digits"}


def test_chain_sum_ladder() -> None:
    levels = [(2, 1), (3, 1), (4, 2)]
    tasks = chain_sum_ladder(levels, per_level=3, seed=0)
    assert len(tasks) == 9 and len({t.id for t in tasks}) == 9
    got = [(t.difficulty["num_terms"], t.difficulty["num_digits"]) for t in tasks]
    assert got == [level for level in levels for _ in range(3)]
    assert tasks[0].id == "chain_sum:terms=2,digits=1/0"
    assert all(t.check(t.reference) for t in tasks)
    assert [t.entry for t in chain_sum_ladder(levels, 3, seed=0)] == [t.entry for t in tasks]


def test_the_ladder_by_spec_climbs_its_rungs_and_refuses_what_it_cannot_split() -> None:
    tasks = load_tasks("chain_sum_ladder:levels=2x1/4x2", 4, seed=3)
    assert [(t.difficulty["num_terms"], t.difficulty["num_digits"]) for t in tasks] == [(2, 1), (2, 1), (4, 2), (4, 2)]
    assert len(load_tasks("chain_sum_ladder", 10, seed=3)) == 10
    with pytest.raises(BadParameter, match="multiple of the ladder's 5 rungs"):
        load_tasks("chain_sum_ladder", 7, seed=3)
    with pytest.raises(BadParameter, match="write levels=2x1/3x2"):
        load_tasks("chain_sum_ladder:levels=2by1", 4, seed=3)


def test_reasoning_gym_bad_names_and_settings() -> None:
    with pytest.raises(BadParameter, match=r"did you mean .*gsm_symbolic.*reasoning_gym\.factory"):
        load_reasoning_gym("gsm_symbolc", size=1, seed=0)
    with pytest.raises(BadParameter, match=r"no setting 'colour'.*min_terms"):
        load_reasoning_gym("chain_sum", size=1, seed=0, colour="red")
    with pytest.raises(BadParameter, match="max_terms must be >= min_terms"):
        load_reasoning_gym("chain_sum", size=1, seed=0, min_terms=5, max_terms=2)
    with pytest.raises(BadParameter, match="size"):
        load_reasoning_gym("chain_sum", size=0, seed=0)


# --- HumanEval ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def humaneval() -> list[HumanEvalTask]:
    return load_humaneval()


def test_humaneval_loads_offline(humaneval: list[HumanEvalTask]) -> None:
    assert len(humaneval) == 164 and humaneval[0].id == "HumanEval/0"
    task = humaneval[0]
    assert set(task.metadata) == {"prompt", "entry_point", "test"}
    # EvalPlus's prompt, as the Qwen2.5-Coder report was measured: the function, then the reply begun
    assert task.metadata["prompt"].strip() in task.messages[0]["content"]
    assert task.messages[1] == {"role": "assistant", "content": task.messages[1]["content"], "prefix": True}
    assert task.messages[1]["content"].endswith("```python\n")


@pytest.mark.parametrize("index", [0, 2, 10, 38])
def test_humaneval_canonical_solution_passes(humaneval: list[HumanEvalTask], index: int) -> None:
    task = humaneval[index]
    assert task.check(task.reference)  # prompt + canonical solution
    assert task.check(task.reference[len(task.metadata["prompt"]) :])  # the body alone


def test_humaneval_wrong_and_looping_bodies_fail(humaneval: list[HumanEvalTask]) -> None:
    task = dataclasses.replace(humaneval[0], timeout_s=1.0)
    assert not task.check("    return False\n")
    assert not task.check("    while True:\n        pass\n")  # killed at the timeout
    assert not task.check("    return (\n")  # a syntax error
    assert not task.check(None) and not task.check("  \n")


def test_humaneval_completion_with_code_block(humaneval: list[HumanEvalTask]) -> None:
    task = humaneval[2]  # truncate_number
    completion = (
        "Here is the function:\n\n```python\ndef truncate_number(number: float) -> float:\n"
        "    return number % 1.0\n```\n\nIt returns the decimal part. For example:\n"
        "```\n>>> truncate_number(3.5)\n0.5\n```"
    )
    code = task.extract(completion)
    assert code == "def truncate_number(number: float) -> float:\n    return number % 1.0\n"
    assert task.is_correct(completion)
    assert not task.is_correct(completion.replace("% 1.0", "% 2.0"))


def test_humaneval_code_forms(humaneval: list[HumanEvalTask]) -> None:
    task = humaneval[2]
    assert task.is_correct("return number % 1.0")  # a body written flush left, no code block
    assert task.is_correct("```python\n    return number % 1.0\n")  # a block cut off by the token limit
    assert extract_code("   \n") is None
    assert extract_code("```python\nx = 1\n```\nRun it:\n```bash\npython f.py\n```") == "x = 1\n"
    # A redefinition keeps the prompt's imports (HumanEval/0 needs typing.List).
    zero = humaneval[0]
    body = zero.reference[len(zero.metadata["prompt"]) :]
    redefined = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n" + body
    program = full_program(zero.metadata["prompt"], redefined, zero.metadata["entry_point"])
    assert program.startswith(zero.metadata["prompt"]) and zero.check(redefined)


def test_humaneval_tasks_pickle(humaneval: list[HumanEvalTask]) -> None:
    copy = pickle.loads(pickle.dumps(humaneval[3]))
    assert copy == humaneval[3] and copy.check(copy.reference)


# --- JSONL ----------------------------------------------------------------------------------------------


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jsonl_tasks(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "mine.jsonl",
        [
            json.dumps({"question": "What is 617 + 617?", "answer": "1,234"}),
            "",
            json.dumps({"question": "Half of 1?", "answer": 0.5, "id": "half", "difficulty": 2, "source": "me"}),
            json.dumps({"question": "Expand (x+1)^2.", "answer": "x^2 + 2x + 1"}),
        ],
    )
    tasks = load_jsonl(path)
    assert [t.id for t in tasks] == ["mine.jsonl/0", "half", "mine.jsonl/2"]
    assert all(isinstance(t, JsonlTask) for t in tasks)
    first, half, poly = tasks
    assert first.messages[0]["content"] == MATH_SYSTEM_PROMPT and first.messages[1]["content"] == "What is 617 + 617?"
    assert first.is_correct("617 + 617 = 1234.\n\nThe answer is $1,234.")
    assert not first.is_correct("The answer is 1233.")
    assert half.reference == "0.5" and half.difficulty == {"difficulty": 2} and half.metadata == {"source": "me"}
    assert half.is_correct("The answer is \\boxed{\\frac{1}{2}}.")
    assert poly.is_correct("The answer is \\boxed{(x+1)^2}.") and not poly.is_correct("The answer is x^2+1.")
    assert pickle.loads(pickle.dumps(first)) == first


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "q", "answer": 1}', '{"question": "q", "answer": }'], "line 2 is not valid JSON"),
        (['{"question": "q", "answer": 1}', "", '{"question": "q"}'], 'line 3 has no "answer"'),
        (['{"answer": 1}'], 'line 1 has no "question"'),
        (['["q", 1]'], "line 1 is not a JSON object"),
        (['{"question": "q", "answer": 1, "id": "a"}', '{"question": "r", "answer": 2, "id": "a"}'], "on line 1;"),
        (["", "  "], "holds no questions"),
    ],
)
def test_jsonl_errors(tmp_path: Path, lines: list[str], message: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(BadParameter, match=message) as error:
        load_jsonl(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_jsonl_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PonderError, match=r"no task file at .*nope\.jsonl"):
        load_jsonl(tmp_path / "nope.jsonl")


# --- load_tasks -----------------------------------------------------------------------------------------


def test_load_tasks_specs(tmp_path: Path) -> None:
    code = load_tasks("humaneval", size=3, seed=0)
    assert len(code) == 3 and all(isinstance(t, HumanEvalTask) for t in code)
    assert code == load_tasks("HumanEval", size=3, seed=0) and code != load_tasks("humaneval", size=3, seed=1)
    assert [t.id for t in code] == sorted((t.id for t in code), key=lambda i: int(i.split("/")[1]))

    ladder = load_tasks("chain_sum:terms=3,digits=2", size=5, seed=0)
    assert all(isinstance(t, ReasoningGymTask) for t in ladder)
    assert {(t.difficulty["num_terms"], t.difficulty["num_digits"]) for t in ladder} == {(3, 2)}
    assert ladder[0].id == "chain_sum:terms=3,digits=2/0"

    flat = load_tasks("basic_arithmetic:allow_parentheses=false,terms=4", size=3, seed=0)
    assert all("(" not in t.entry["question"] and t.difficulty["num_terms"] == 4 for t in flat)

    gsm = load_tasks("gsm_symbolic", size=2, seed=0)
    assert [t.id for t in gsm] == ["gsm_symbolic/0", "gsm_symbolic/1"] and "reference_cot" in gsm[0].metadata

    path = write_lines(tmp_path / "qs.jsonl", [json.dumps({"question": f"q{i}", "answer": i}) for i in range(5)])
    assert [t.reference for t in load_tasks(str(path), size=10, seed=0)] == ["0", "1", "2", "3", "4"]
    assert len(load_tasks(str(path), size=2, seed=0)) == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gsm8k", "unknown task set 'gsm8k'.*humaneval.*jsonl.*reasoning_gym"),
        ("chain_sum:terms", "bad setting 'terms'"),
        ("chain_sum:colour=red", "no setting 'colour'"),
        ("chain_sum:min_terms=4,max_terms=2", "max_terms must be >= min_terms"),
    ],
)
def test_load_tasks_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(BadParameter, match=message) as error:
        load_tasks(spec, size=2, seed=0)
    assert "\n" not in str(error.value)


def test_load_tasks_bad_size() -> None:
    with pytest.raises(BadParameter, match="size must be at least 1"):
        load_tasks("humaneval", size=0, seed=0)
