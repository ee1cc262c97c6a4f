"""An arithmetic step checker: recompute every `a op b = c` a reasoning step claims, exactly.

Small models slip most often in plain arithmetic, and a wrong product is wrong whatever a judge
thinks. This process verifier finds the claims in a step (`12 * 3 = 36`, `$12 + $8 = $20`,
`\\frac{3}{4} \\times 8 = 6`, `20% of 50 = 10`, chains like `total = 5 + 7 = 12`, GSM8K calculator
annotations `<<12*3=36>>`) and recomputes each side with `fractions.Fraction` through a small
evaluator over Python's `ast` that admits only numbers, + - * /, small integer powers, signs and
parentheses: step text is never `eval`ed. Anything it cannot read as numbers alone (an equation in x,
a date, a percentage without "of") is not a claim, so it cannot be refuted.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise

from ponder.budget import Budget
from ponder.engine.protocol import Sequence
from ponder.errors import BadParameter
from ponder.tasks.base import Task
from ponder.verify.base import split_steps

MAX_EXPRESSION_CHARS = 200  # a claim longer than this is not something a model computed in its head
MAX_EXPONENT = 64
MAX_FRAC_NESTING = 4  # deeper \frac nests stay unread: each level is another pass over the text
MAX_BITS = 4096  # of any numerator or denominator along the way: keeps every claim cheap to check

_NUMBER = r"(?:\d+(?:\.\d+)?|\.\d+)"
_START = r"(?<![\d./])"  # match numbers from their first digit only: no quadratic backtracking
# A stretch of text made only of numbers, operators, parentheses, equals signs and spaces (not
# newlines: a line break ends a claim). Only such stretches ever reach the parser.
_RUN = re.compile(rf"(?:{_NUMBER}|[-+*/()=])(?:[ \t]*(?:{_NUMBER}|[-+*/()=]))*")
_LITERAL = re.compile(r"[-+]?(?:\d+(?:\.(\d+))?|\.(\d+))")
_LEADING_LITERAL = re.compile(rf"\s*(-?{_NUMBER})\s*[-+*/]")

_BINARY: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY: dict[type[ast.unaryop], Callable[[Fraction], Fraction]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}

_UNICODE = str.maketrans({
    "\N{MULTIPLICATION SIGN}": "*", "\N{MULTIPLICATION X}": "*", "\N{DOT OPERATOR}": "*",
    "\N{MIDDLE DOT}": "*", "\N{BULLET OPERATOR}": "*", "\N{DIVISION SIGN}": "/", "\N{DIVISION SLASH}": "/",
    "\N{MINUS SIGN}": "-", "\N{EN DASH}": "-", "\N{FIGURE DASH}": "-", "\N{FULLWIDTH EQUALS SIGN}": "=",
    "\N{ALMOST EQUAL TO}": "=",  # 10 / 3 ≈ 3.33 is checked as a rounding like any other
})
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox|boxed)\s*\{([^{}]*)\}")
_LATEX = ((re.compile(r"\\[()\[\]]"), " "),  # math delimiters
          (re.compile(r"\\left|\\right"), ""),
          (re.compile(r"\\(?:times|cdot|ast)(?![a-zA-Z])"), "*"),
          (re.compile(r"\\div(?![a-zA-Z])"), "/"),
          (re.compile(r"(?<=\d)\\,(?=\d{3})"), ""),  # 1\,200
          (re.compile(r"\\(?:[,;:! ]|quad(?![a-zA-Z]))"), " "),
          (re.compile(r"\\([$%])"), r"\1"))
_PLAIN = ((re.compile(r"<<([^<>\n]*)>>"), r"\n\1\n"),  # a calculator annotation is a claim of its own
          (re.compile(r"(?m)^[ \t]*[-+•][ \t]+"), ""),  # list bullets are not minus signs
          (re.compile(r"[$€£¥]"), ""),
          (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), ""),  # thousands separators
          (re.compile(r"(?<=\d)[ \t]*[xX][ \t]*(?=\d)"), "*"),  # 3 x 4
          (re.compile(r"==+"), "="),
          (re.compile(rf"{_START}({_NUMBER})[ \t]*%[ \t]*of[ \t]+"), r"(\1/100)*"),  # 20% of 50
          (re.compile(rf"{_START}(\d+/\d+)[ \t]+of[ \t]+"), r"(\1)*"),  # 3/4 of 8
          (re.compile(rf"{_START}({_NUMBER})[ \t]*%(?=[ \t]*\*)"), r"(\1/100)"),  # 20% * 50
          (re.compile(rf"(?<=\*)([ \t]*)({_NUMBER})[ \t]*%"), r"\1(\2/100)"))  # 50 * 20%
_STARS = re.compile(r"\*+")
_IMPLICIT_PRODUCT = re.compile(r"(?<=[\d)])\(")  # 2(3 + 4)
_LEADING_ZEROS = re.compile(r"(?<![\d.])0+(?=\d)")  # Python rejects 007


class _NotArithmetic(Exception):
    """Outside the safe subset, too large, or undefined (a division by zero)."""


def evaluate(expression: str) -> Fraction | None:
    """The exact value of a plain arithmetic expression; None for anything else (names, calls, huge powers)."""
    text = expression.strip()
    if not text or len(text) > MAX_EXPRESSION_CHARS:
        return None
    try:
        return _evaluate(ast.parse(text, mode="eval").body, text)
    except (SyntaxError, ValueError, ZeroDivisionError, _NotArithmetic):
        return None


def _evaluate(node: ast.expr, source: str) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        # From the digits as written, never through a binary float: 0.1 stays 1/10.
        return _bounded(Fraction(ast.get_source_segment(source, node) or ""))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand, source))
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, source), _evaluate(node.right, source)
        if isinstance(node.op, ast.Pow):
            return _bounded(_power(left, right))
        if type(node.op) in _BINARY:
            return _bounded(_BINARY[type(node.op)](left, right))
    raise _NotArithmetic(ast.dump(node))


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    # Refused before computing, so 9**9**9 costs nothing.
    if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
        raise _NotArithmetic(f"exponent {exponent}")
    if max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(exponent) > MAX_BITS:
        raise _NotArithmetic(f"{base} ** {exponent} is too large")
    return base ** int(exponent)


def _bounded(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_BITS:
        raise _NotArithmetic("number too large")
    return value


@dataclass(frozen=True)
class Claim:
    """One `lhs = rhs` in a step, and whether it holds."""

    lhs: str  # as normalised: `20% of $50` reads `(20/100)*50`
    rhs: str
    correct: bool


@dataclass(frozen=True)
class _Side:
    text: str
    value: Fraction
    has_operator: bool  # a bare number claims nothing
    decimals: int | None  # digits after the point when the side is a bare number, else None


def find_claims(step: str) -> list[Claim]:
    """The arithmetic claims in a step, in order, each with whether it holds.

    Every `=` between two readable sides of which at least one computes something is a claim, so
    `5 + 7 = 12 * 2 = 24` makes two. A claim holds when both sides are equal exactly; when one side is a
    bare number with decimals that is the other rounded to as many decimals (`10 / 3 = 3.33` holds,
    `10 / 3 = 3.34` and `2 / 3 = 0.66` do not; an integer must be exact: `7 / 2 = 3` is wrong); or, for a
    running total like `5 + 7 = 12 * 2`, when the left side equals the number the right side starts from.
    """
    text = _normalize(step)
    claims = []
    for run in _RUN.finditer(text):
        if "=" not in run.group():
            continue
        sides = _read_sides(run.group(), before=text[run.start() - 1:run.start()], after=text[run.end():run.end() + 2])
        for left, right in pairwise(sides):
            if left and right and (left.has_operator or right.has_operator):
                claims.append(Claim(left.text, right.text, _holds(left, right)))
    return claims


def check_claims(step: str) -> tuple[int, int]:
    """(claims found, claims that hold) in a step."""
    claims = find_claims(step)
    return len(claims), sum(c.correct for c in claims)


def _normalize(text: str) -> str:
    """Step text with the many ways of writing arithmetic brought to Python's +, -, *, /, ** and ()."""
    for _ in range(MAX_FRAC_NESTING):  # innermost first, so nesting works
        if (unfolded := _LATEX_FRAC.sub(r"((\1)/(\2))", text)) == text:
            break
        text = unfolded
    text = _LATEX_WRAPPER.sub(r" \1 ", text)
    for pattern, replacement in _LATEX:
        text = pattern.sub(replacement, text)
    text = text.replace("{", "(").replace("}", ")").translate(_UNICODE)
    for pattern, replacement in _PLAIN:
        text = pattern.sub(replacement, text)
    text = _unstar(text)
    text = text.replace("^", "**")  # after _unstar: x^2 must stay a power, not become markdown
    text = _IMPLICIT_PRODUCT.sub("*(", text)
    return _LEADING_ZEROS.sub("", text)


def _unstar(text: str) -> str:
    """Keep each `*` or `**` that multiplies or raises; blank markdown emphasis (`**Step 1:**`)."""

    def replace(m: re.Match[str]) -> str:
        pre, post = _neighbour(text, m.start() - 1, -1), _neighbour(text, m.end(), 1)
        between_numbers = (pre.isdigit() or pre == ")") and (post.isdigit() or post in ("(", ".", "-"))
        # x * 3 or x**2: an operator on a variable, kept so that the claim is recognised as not numeric.
        # Emphasis hugs its words on one side only (`**Total** 12`).
        spaced = text[m.start() - 1:m.start()] in (" ", "\t"), text[m.end():m.end() + 1] in (" ", "\t")
        between_operands = ((pre.isalnum() or pre == ")") and (post.isalnum() or post in ("(", "."))
                            and spaced[0] == spaced[1])
        return m.group() if len(m.group()) <= 2 and (between_numbers or between_operands) else " "

    return _STARS.sub(replace, text)


def _neighbour(text: str, i: int, step: int) -> str:
    """The first character from i on, going by step, that is not a space or a tab ('' past either end)."""
    while 0 <= i < len(text) and text[i] in " \t":
        i += step
    return text[i] if 0 <= i < len(text) else ""


def _read_sides(run: str, before: str, after: str) -> list[_Side | None]:
    """Each side of the `=` signs in a run, None where it is not plain arithmetic."""
    parts = run.split("=")
    first, last = _after_unmatched(parts[0]), _before_unmatched(parts[-1])
    # A run glued to a word continues it: `sqrt(16) + 2`, `2x + 3 = 7`, `x - 3 = 5`.
    first_ok = not (first == parts[0] and (before.isalpha() or before in ("_", "\\")))
    stripped = first.strip()
    if stripped[:1] in ("+", "-", "*", "/") and not (stripped[:1] in ("+", "-") and stripped[1:2] in ".(0123456789"):
        first_ok = False
    sides = [_side(first) if first_ok else None] + [_side(p) for p in parts[1:-1]] + [_side(last)]
    # `= 3x` or `= 2 + 3x` is algebra, `= 36 km` and `= 12cm` are units; `= 10%` is percentage points.
    glued = last == parts[-1] and after[:1].isalpha()
    if after[:1] == "%" or (glued and (not after[1:2].isalpha() or (sides[-1] and sides[-1].has_operator))):
        sides[-1] = None
    return sides


def _unmatched(part: str) -> list[int]:
    """Positions of the parentheses in part that have no partner."""
    opened: list[int] = []
    lone: list[int] = []
    for i, ch in enumerate(part):
        if ch == "(":
            opened.append(i)
        elif ch == ")":
            if opened:
                opened.pop()
            else:
                lone.append(i)
    return lone + opened


def _after_unmatched(part: str) -> str:
    """The left side of `1) (3 + 4 = 7)` is `3 + 4`."""
    unmatched = _unmatched(part)
    return part[max(unmatched) + 1:] if unmatched else part


def _before_unmatched(part: str) -> str:
    """The right side of `(3 + 4 = 7)` is `7`."""
    unmatched = _unmatched(part)
    return part[:min(unmatched)] if unmatched else part


def _side(part: str) -> _Side | None:
    value = evaluate(part)
    if value is None:
        return None
    text = " ".join(part.split())
    literal = _LITERAL.fullmatch(text.replace(" ", ""))
    decimals = len(literal[1] or literal[2] or "") if literal else None
    return _Side(text, value, has_operator=literal is None and any(c in text for c in "+-*/"), decimals=decimals)


def _holds(left: _Side, right: _Side) -> bool:
    if left.value == right.value or _rounds_to(left.value, right) or _rounds_to(right.value, left):
        return True
    leading = _LEADING_LITERAL.match(right.text)  # 5 + 7 = 12 * 2 = 24: the model carries 12 on
    return leading is not None and Fraction(leading[1]) == left.value


def _rounds_to(exact: Fraction, stated: _Side) -> bool:
    """Whether stated, a bare number with decimals, is exact rounded to as many decimals (either way at a tie)."""
    if not stated.decimals:
        return False
    return abs(exact - stated.value) * 10 ** stated.decimals <= Fraction(1, 2)


class ArithmeticStepVerifier:
    """Scores each step by its arithmetic claims: the fraction that hold, or (strict) 0 if any fails.

    A step without claims gets `neutral` (default 1.0: nothing to refute). No model runs, so nothing is
    charged to the budget but the time.
    """

    name: str = "arithmetic"

    def __init__(self, neutral: float = 1.0, strict: bool = False) -> None:
        if not 0.0 <= neutral <= 1.0:
            raise BadParameter(f"neutral must be a score in [0, 1], not {neutral}")
        self.neutral = neutral
        self.strict = strict

    def score_step(self, step: str) -> float:
        found, correct = check_claims(step)
        if not found:
            return self.neutral
        if self.strict:
            return 1.0 if correct == found else 0.0
        return correct / found

    def score(self, task: Task, candidates: list[Sequence], budget: Budget) -> list[list[float]]:
        scores = [[self.score_step(step) for step in split_steps(c.text)] for c in candidates]
        budget.charge_verifier(0, 0)
        return scores
