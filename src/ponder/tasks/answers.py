"""Final answers in what small models write, and whether two answers agree.

Small models box their answers, or say "The answer is $1,234.", or "**Answer:** 12 dollars", or just
stop after the last line of arithmetic. `extract_answer` finds the answer in any of these and
normalises numbers ("1,234" -> "1234", "2.50" -> "2.5", "\\frac{3}{4}" -> "3/4"); answers that are
not numbers come back cleaned of markdown but otherwise as written.
"""

from __future__ import annotations

import logging
import re
import threading
from decimal import Decimal, InvalidOperation
from fractions import Fraction

logger = logging.getLogger(__name__)

# One prompt for every task whose answer `extract_answer` reads: it asks for the phrase it looks for,
# and for blank lines between steps because step-wise search and step verifiers split there.
MATH_SYSTEM_PROMPT = (
    "Solve the problem step by step. Separate the steps with a blank line. "
    'End with a last line of the form "The answer is X." where X is only the final answer '
    "(for a number: just the number, without units)."
)


def math_messages(question: str) -> tuple[dict[str, str], ...]:
    return ({"role": "system", "content": MATH_SYSTEM_PROMPT}, {"role": "user", "content": question})


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MARKER = re.compile(r"\banswer\b\s*(?:is\b\s*:?|:|=)|####", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
# A number as it appears in running text. A minus sign counts only where it cannot be a hyphen or a
# subtraction ("3-4", "x-1"); digits glued to letters ("x2", "step1") are not numbers.
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|(?<![\w.])-?\.\d+")
# A whole answer that is a number: sign, currency, the number (thousands separators, decimals, a
# fraction), then at most units or words without digits ("12 dollars", "5 cm", "50%", "7 apples").
_NUMBER_ANSWER = re.compile(
    r"^(?P<sign>[-+]?)\s*(?:[$€£¥]|usd\b|rs\.?)?\s*(?P<sign2>[-+]?)\s*"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:\s*/\s*(?P<den>\d+))?"
    r"(?P<units>\s*(?:%|percent\b|°\s*[CF]?)|\s*[^\W\d_]{2,}[^\d=+*^]*|\s+[^\W\d_][^\d=+*^]*)?$",
    re.IGNORECASE,
)
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(-?\d+)\s*\}")
_LATEX_SUBS = (
    ("\\$", "$"), ("\\%", "%"), ("{,}", ","), ("\\,", ""), ("\\!", ""), ("\\;", " "), ("\\ ", " "), ("~", " "),
    ("^\\circ", "°"), ("^{\\circ}", "°"), ("\\left", ""), ("\\right", ""), ("\u2212", "-"), ("\u2013", "-"),
)
# Words only ("dog", "Paris, France"): math-verify would read them as products of symbols, so that
# "dog" equals "god"; they are compared as text.
_PROSE = re.compile(r"[^\W\d_]+(?:[\s,;.]+[^\W\d_]+)*")
_EDGE_JUNK = " \t\n*`$:"  # markdown emphasis, code and math delimiters, a leading colon
_TRAILING_PUNCT = ".,;!"


def extract_answer(text: str | None) -> str | None:
    """The final answer in a completion: the last \\boxed{}, else the last "The answer is X" (or
    "answer: X", "#### X"), else the last number; normalised (see `normalize_answer`). None if none."""
    if not text:
        return None
    for candidate in (_last_boxed(text), _last_marked(text)):
        if candidate is not None and (answer := normalize_answer(candidate)):
            return answer
    numbers = _NUMBER_IN_TEXT.findall(_delatex(text))
    return normalize_answer(numbers[-1]) if numbers else None


def vote_key(answer: str | None) -> str | None:
    """Answers that mean the same thing vote together ("1,000", "1000.0", "$1000"): the group an answer
    votes in (None: no vote), for tasks without a grouping of their own (see `Task.vote_key`)."""
    return None if answer is None else (normalize_answer(answer) or answer)


def normalize_answer(answer: str | None) -> str | None:
    """A bare answer in canonical form: numbers as "1234", "-2.5", "3/4"; "x = 5" as "5"; anything
    else stripped of markdown and LaTeX text markup. None for an empty answer."""
    if answer is None:
        return None
    cleaned = _clean(_delatex(answer))
    if not cleaned:
        return None
    number = _canonical_number(cleaned)
    if number is None and "=" in cleaned:
        number = _canonical_number(_clean(cleaned.rsplit("=", 1)[1]))
    return number if number is not None else cleaned


def numbers_equal(a: str | None, b: str | None) -> bool:
    """Whether two answers are the same number, compared exactly (so 0.333 is not 1/3)."""
    fa, fb = _as_fraction(a), _as_fraction(b)
    return fa is not None and fb is not None and fa == fb


def answers_equivalent(answer: str | None, reference: str | None) -> bool:
    """Whether an answer means the same as the reference: numbers exactly, other text after
    normalisation, expressions symbolically (math-verify). False, never an error, for garbage."""
    a, r = normalize_answer(answer), normalize_answer(reference)
    if a is None or r is None:
        return False
    fa, fr = _as_fraction(a), _as_fraction(r)
    if fa is not None and fr is not None:
        return fa == fr
    if " ".join(a.split()).casefold() == " ".join(r.split()).casefold():
        return True
    if any(_PROSE.fullmatch(s) and len(s) > 1 for s in (a, r)):
        return False
    return _symbolically_equal(a, r)


def _last_boxed(text: str) -> str | None:
    """The contents of the last \\boxed{...} whose braces balance (a truncated last one is skipped)."""
    for start in reversed([m.end() for m in _BOXED.finditer(text)]):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i]
    return None


def _last_marked(text: str) -> str | None:
    """What follows the last "answer is" / "answer:" / "####", up to the end of its sentence."""
    for marker in reversed(list(_MARKER.finditer(text))):
        rest = text[marker.end() :].lstrip(_EDGE_JUNK)  # also skips to the next line after "Answer:\n"
        line = rest.split("\n", 1)[0]
        candidate = _SENTENCE_END.split(line, 1)[0]
        if _clean(candidate):
            return candidate
    return None


def _delatex(text: str) -> str:
    for old, new in _LATEX_SUBS:
        text = text.replace(old, new)
    text = _LATEX_TEXT.sub(r"\1", text)
    return _LATEX_FRAC.sub(r"\1/\2", text)


def _clean(text: str) -> str:
    """Strip markdown and math delimiters and trailing punctuation from both ends, until none is left."""
    previous = None
    while text != previous:
        previous = text
        text = text.strip(_EDGE_JUNK).rstrip(_TRAILING_PUNCT)
        for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
            if text.startswith(left) and text.endswith(right):
                text = text[len(left) : -len(right)]
    return text


def _canonical_number(text: str) -> str | None:
    """The number a whole answer states, canonical ("2.50" -> "2.5", "3.0" -> "3"); None if it is not one."""
    m = _NUMBER_ANSWER.match(text)
    if m is None or (m["sign"] and m["sign2"]):
        return None
    negative = "-" in (m["sign"], m["sign2"])
    if m["den"] is not None:
        numerator, denominator = m["num"].replace(",", ""), int(m["den"])
        if denominator == 0 or "." in numerator:
            return None
        return f"{'-' if negative and int(numerator) else ''}{int(numerator)}/{denominator}"
    try:
        value = Decimal(m["num"].replace(",", ""))
    except InvalidOperation:
        return None
    if negative:
        value = -value
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _as_fraction(answer: str | None) -> Fraction | None:
    normal = normalize_answer(answer)
    number = _canonical_number(normal) if normal is not None else None
    return Fraction(number) if number is not None else None


def _symbolically_equal(answer: str, reference: str) -> bool:
    # Imported here: sympy makes it slow to import, and most tasks never compare expressions.
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    # math-verify times out with SIGALRM, which only the main thread may use; elsewhere, no timeout.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold = parse(f"${reference.replace('**', '^')}$", parsing_timeout=timeout)
        pred = parse(f"${answer.replace('**', '^')}$", parsing_timeout=timeout)
        return bool(gold and pred and verify(gold, pred, timeout_seconds=timeout))
    except (Exception, TimeoutException):
        logger.debug("math-verify failed on %r vs %r", answer, reference, exc_info=True)
        return False
