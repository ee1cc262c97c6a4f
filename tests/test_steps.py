"""The arithmetic step checker: which claims it finds in model-style steps, and how it scores them."""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass
from fractions import Fraction

import pytest

from ponder.budget import Budget
from ponder.engine.protocol import Sequence
from ponder.errors import BadParameter
from ponder.tasks.base import Task
from ponder.verify.base import Verifier, split_steps
from ponder.verify.steps import ArithmeticStepVerifier, check_claims, evaluate, find_claims


@dataclass(frozen=True)
class NumberTask(Task):
    def extract(self, completion: str) -> str | None:
        return completion.rsplit("####", 1)[-1].strip() if "####" in completion else None

    def check(self, answer: str | None) -> bool:
        return answer == self.reference


TASK = NumberTask(id="t/0", messages=({"role": "user", "content": "How many cookies?"},), reference="9")

# (step, claims found, claims that hold), in the styles small models write word-problem solutions.
STEPS = [
    ("First, find the total number of apples: 3 + 4 + 5 = 12 apples.", 1, 1),
    ("She buys 12 packs with 3 cookies each, so 12 * 3 = 36 cookies.", 1, 1),
    ("Split among 4 friends: 36 / 4 = 9 cookies each.", 1, 1),
    ("Each box holds 2 × 3 = 6 eggs.", 1, 1),
    ("After eating some, 10 − 4 = 6 remain.", 1, 1),
    ("Together they cost $12 + $8 = $20.", 1, 1),
    ("The school has 1,200 + 300 = 1,500 students.", 1, 1),
    ("Half an hour per task: 0.5 * 8 = 4 hours.", 1, 1),
    ("She used 3/4 * 8 = 6 cups of flour.", 1, 1),
    ("Group first: (3 + 4) * 2 = 14.", 1, 1),
    (r"So \frac{3}{4} \times 8 = 6 liters.", 1, 1),
    (r"The area is $3 \cdot 4 = 12$ square meters.", 1, 1),
    ("Total = 5 + 7 = 12 marbles.", 1, 1),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.", 1, 1),
    ("Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.", 1, 1),
    ("The discount is 20% of 50 = 10 dollars.", 1, 1),
    ("Each person pays 10 / 3 = 3.33 dollars.", 1, 1),
    ("Each person pays 10 / 3 = 3.5 dollars.", 1, 0),
    ("She has 7 * 8 = 54 stickers.", 1, 0),
    ("He reads 15 + 27 = 42 pages, then 42 - 10 = 32 pages remain.", 2, 2),
    ("He reads 15 + 27 = 43 pages, then 43 - 10 = 33 pages remain.", 2, 1),
    ("**Step 2:** 6 × $2.50 = $15.00", 1, 1),
    ("- 250 - 75 = 175 dollars left", 1, 1),
    ("5 + 7 = 12 * 2 = 24 wheels in all.", 2, 2),
    ("Ratio: 2/3 = 0.67, close to two thirds.", 1, 1),
    ("Ratio: 2/3 = 0.66, close to two thirds.", 1, 0),
    ("So 2^{10} = 1024 and 2^3 = 8.", 2, 2),
    ("The temperature drops: -3 - 5 = -8 degrees.", 1, 1),
    ("The cost is 3(4 + 5) = 27 cents.", 1, 1),
    ("15% of $80 = $12, so she pays 80 - 12 = 68.", 2, 2),
    ("1/3 of 90 = 30 students walk.", 1, 1),
    ("She saves 10 ÷ 4 = 2.5 dollars a day.", 1, 1),
    ("So 1,000,000 × 3 = 3,000,000 people.", 1, 1),
    ("3 + 4 = 7. 7 * 2 = 15.", 2, 1),
    ("Chain it: (3 + 4) * 2 = 7 * 2 = 15.", 2, 1),
    ("Each share is 10 / 3 ≈ 3.33 dollars.", 1, 1),
    ("Each share is 10 / 3 = 3.34 dollars.", 1, 0),
    ("Each child gets 7 / 2 = 3 apples.", 1, 0),
    ("The tiles cover 3 x 4 = 12 square feet.", 1, 1),
    ("**Total** 12 * 3 = 36", 1, 1),
    ("1) 3 + 4 = 8", 1, 0),
    # Not claims: nothing to refute.
    ("Step 1: Identify what we know.", 0, 0),
    ("Let x be the number of apples, so x + 3 = 5.", 0, 0),
    ("Then 2x = 10 and x - 4 = 1.", 0, 0),
    ("On 2023-01-15 she had 3 apples, or 12/25 of a box.", 0, 0),
    ("The price rose by 20% = a lot.", 0, 0),
    ("The interest is 5 + 5 = 10% of the loan.", 0, 0),
    ("y = 2x + 3 with x = 4.", 0, 0),
    ("The answer is 42.", 0, 0),
    ("#### 42", 0, 0),
    ("She now has 12 apples = 12.", 0, 0),
    ("Square both sides: x**2 + 3 = 12.", 0, 0),
    (r"Since \sqrt{16} + 2 = 6 is what we want, 12 = 2 + 3x.", 0, 0),
]


@pytest.mark.parametrize(("step", "found", "correct"), STEPS)
def test_claims_in_steps(step: str, found: int, correct: int) -> None:
    assert check_claims(step) == (found, correct), find_claims(step)


def test_claims_carry_their_sides() -> None:
    [claim] = find_claims("So 12 * 3 = 36 cookies.")
    assert (claim.lhs, claim.rhs, claim.correct) == ("12 * 3", "36", True)


def test_evaluate_is_exact() -> None:
    assert evaluate("0.1 + 0.2") == Fraction(3, 10)
    assert evaluate("(3 + 4) * 2 ** 3") == 56
    assert evaluate("2 ** -2") == Fraction(1, 4)
    assert evaluate("-(1/3)") == Fraction(-1, 3)
    assert evaluate("1/0") is None
    assert evaluate("4 ** 0.5") is None  # fractional powers are not exact


@pytest.mark.parametrize("expression", [
    "__import__('os').system('x')", "x + 1", "'a' * 3", "[1, 2]", "1 if 1 else 2", "2 // 3", "7 % 3",
    "True + 1", "(lambda: 1)()", "9**9**9", "(10**60)**60", "2**100000", "1" * 5000, "(" * 300 + "1" + ")" * 300,
])
def test_evaluate_refuses_anything_but_small_arithmetic(expression: str) -> None:
    assert evaluate(expression) is None


@pytest.mark.parametrize("step", [
    "__import__('os').system('x') = 0",
    "9**9**9 = 1",
    "9 ** 9 ** 9 ** 9 = 1",
    "(10**60)**60 = 0",
    "1" * 5000 + " + 1 = 2",
    "1 +" * 50_000 + " 1 = 2",
    "(" * 100_000 + "1" + ")" * 100_000 + " + 1 = 2",
])
def test_malicious_claims_are_ignored_quickly_without_eval(step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("step text reached eval/exec")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    start = time.perf_counter()
    assert check_claims(step) == (0, 0)
    assert time.perf_counter() - start < 1.0


CANDIDATE = (
    "There are 12 boxes with 3 cookies each, so 12 * 3 = 36 cookies.\n\n"
    "They eat 4 * 2 = 9 cookies.\n\n"
    "So 36 - 9 = 27 cookies are left.\n\n"
    "#### 27"
)


def test_one_score_per_step_with_the_wrong_product_marked() -> None:
    verifier = ArithmeticStepVerifier()
    budget = Budget()
    candidates = [Sequence(prompt=(1,), text=CANDIDATE), Sequence(prompt=(1,), text="36 / 4 = 9\n\n#### 9"),
                  Sequence(prompt=(1,), text="")]
    scores = verifier.score(TASK, candidates, budget)
    assert scores == [[1.0, 0.0, 1.0, 1.0], [1.0, 1.0], [1.0]]
    assert [len(s) for s in scores] == [len(split_steps(c.text)) for c in candidates]
    assert budget.total_tokens == 0 and budget.spent.flops == 0.0


def test_fraction_strict_and_neutral() -> None:
    half = "12 * 3 = 36 and 36 / 4 = 8"
    assert ArithmeticStepVerifier().score_step(half) == 0.5
    assert ArithmeticStepVerifier(strict=True).score_step(half) == 0.0
    assert ArithmeticStepVerifier(strict=True).score_step("12 * 3 = 36") == 1.0
    assert ArithmeticStepVerifier(neutral=0.5).score_step("We need the total first.") == 0.5
    assert ArithmeticStepVerifier(neutral=0.5).score_step("12 * 3 = 36") == 1.0


def test_neutral_must_be_a_score() -> None:
    with pytest.raises(BadParameter):
        ArithmeticStepVerifier(neutral=1.5)


def test_is_a_verifier() -> None:
    verifier: Verifier = ArithmeticStepVerifier()
    assert verifier.name == "arithmetic"
