"""A code prompt's examples, and what a program does on them in the sandbox.

The examples come from the prompt, never from an oracle's hidden tests: the doctest examples of a
function's docstring (`>>> f(2)` followed by the expected output, as HumanEval prompts write them)
and lines of the form `f(2) == 4` / `f(2) -> 4` / `f(2) => true` that some prompts use instead
(literal arguments and results only). Outputs match as doctest's NORMALIZE_WHITESPACE does, or as
equal literals of the same types (prompts often quote strings with " where repr writes '). The code
verifier scores a program by the examples it passes; majority voting over programs groups them by
what they print on the examples' inputs (two programs that behave alike are one answer).
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from ponder.sandbox import run_python

log = logging.getLogger(__name__)

_PYTHON_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_PROMPT = re.compile(r"^(\s*)>>>(?: (.*)|$)")
_CONTINUATION = re.compile(r"^\s*\.\.\.(?: (.*)|$)")
_ARROW = re.compile(r"^\s*(?P<call>(?P<name>[A-Za-z_]\w*)\(.*\))\s*(?:==>|=>|->|==|➞)\s*(?P<want>.+?)\s*$")
_TRACEBACK = "Traceback (most recent call last):"
_LOOSE_BOOLS = {"true": "True", "false": "False"}  # prompts written for other languages
MAX_OUTPUT_CHARS = 300  # of each example's output, as reported back (enough to tell programs apart)


@dataclass(frozen=True)
class Example:
    source: str  # a statement or expression, as after ">>> "
    want: str  # the expected output ("" for a set-up statement: run, not scored)


def last_python_block(text: str) -> str | None:
    """The last ```python block of a completion (the last one may be cut off), None if there is none."""
    blocks = _PYTHON_BLOCK.findall(text)
    return blocks[-1] if blocks and blocks[-1].strip() else None


def prompt_examples(prompt: str, functions: tuple[str, ...] = ()) -> list[Example]:
    """The doctest examples of a prompt, plus `f(x) == y`-style lines that call one of `functions`."""
    examples: list[Example] = []
    lines = prompt.splitlines()
    i = 0
    while i < len(lines):
        m = _PROMPT.match(lines[i])
        if not m:
            arrow = _ARROW.match(lines[i])
            want = arrow and _LOOSE_BOOLS.get(arrow["want"], arrow["want"])
            if arrow and arrow["name"] in functions and _literal_call(arrow["call"]) and _literal(want):
                # print(repr(...)): a call that returns None must show "None", as the prompt wrote it
                examples.append(Example(f"print(repr({arrow['call']}))", repr(ast.literal_eval(want))))
            i += 1
            continue
        indent, source = m.group(1), [m.group(2) or ""]
        i += 1
        while i < len(lines) and (c := _CONTINUATION.match(lines[i])):
            source.append(c.group(1) or "")
            i += 1
        want, i = _expected_output(lines, i, indent)
        examples.append(Example("\n".join(source), want))
    return list(dict.fromkeys(examples))  # a prompt may repeat an example: count it once


def _expected_output(lines: list[str], i: int, indent: str) -> tuple[str, int]:
    """The output lines after an example, up to a blank line, the next example or the docstring's end."""
    want: list[str] = []
    while i < len(lines):
        line = lines[i]
        if not line.strip() or _PROMPT.match(line) or line.strip() in ('"""', "'''"):
            break
        content = line[len(indent):] if line.startswith(indent) else line.strip()
        i += 1
        closing = content.rstrip().endswith(('"""', "'''"))
        want.append(content.rstrip()[:-3] if closing else content)
        if closing:
            break
    return "\n".join(want).replace("<BLANKLINE>", ""), i


def _literal(text: str | ast.expr) -> bool:
    """Whether text (or a parsed node) is a Python literal; prompt text is only parsed, never run here."""
    try:
        ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return False
    return True


def _literal_call(text: str) -> bool:
    """Whether text is a call whose arguments are all literals (`f(3, "a")`, not `f(a)`)."""
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return isinstance(node, ast.Call) and all(_literal(a) for a in node.args) \
        and all(_literal(k.value) for k in node.keywords)


# Runs in the sandbox: loads the program under a name other than __main__ (so its own `if __name__
# == "__main__":` demo does not run), then each example as doctest would, one flushed result line at
# a time, so a program that ends the process early keeps what it passed (a timeout or a sandbox
# violation still scores 0, see `_score_program`). The nonce keeps the program's own
# prints from passing for results by accident; it is not a defence against a program that reads it.
_HARNESS = r'''
import ast as _ast, io as _io, json as _json, sys as _sys
_out = _sys.stdout
_ns = {"__name__": "__candidate__"}
try:
    exec(compile(_PROGRAM, "candidate.py", "exec"), _ns)
except BaseException as _e:
    print("\n" + _NONCE + " load " + _json.dumps(type(_e).__name__ + ": " + str(_e)), file=_out, flush=True)
    raise SystemExit(3)
print("\n" + _NONCE + " loaded", file=_out, flush=True)

def _strict_equal(a, b):  # 1 is not True, 1.0 is not 1, even inside containers
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(_strict_equal, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strict_equal(a[k], b[k]) for k in a)
    return a == b

def _same(got, want):
    # doctest's NORMALIZE_WHITESPACE, or equal values when both sides are literals: prompts often
    # quote strings with " where repr uses '
    if got.split() == want.split():
        return True
    try:
        return _strict_equal(_ast.literal_eval(got.strip()), _ast.literal_eval(want.strip()))
    except Exception:
        return False

for _i, (_src, _want) in enumerate(_EXAMPLES):
    _buf = _io.StringIO()
    _sys.stdout = _buf
    try:
        exec(compile(_src, "<example %d>" % _i, "single"), _ns)
        _got = _buf.getvalue()
        _ok = not _want.startswith(_TRACEBACK) and _same(_got, _want)
    except BaseException as _e:
        _got = type(_e).__name__ + ": " + str(_e)
        _last = _want.strip().splitlines()[-1] if _want.strip() else ""
        _ok = _want.startswith(_TRACEBACK) and (_same(_got, _last) or _same(type(_e).__name__, _last))
    finally:
        _sys.stdout = _out
    print("\n" + _NONCE + " " + _json.dumps([_i, bool(_ok), _got[:_MAX_OUTPUT]]), file=_out, flush=True)
'''


def harness(program: str, examples: Iterable[Example], nonce: str) -> str:
    """The sandboxed script that loads `program` and reports each example's result after `nonce`."""
    values = {"_PROGRAM": program, "_EXAMPLES": [(e.source, e.want) for e in examples], "_NONCE": nonce,
              "_TRACEBACK": _TRACEBACK, "_MAX_OUTPUT": MAX_OUTPUT_CHARS}
    return "".join(f"{name} = {value!r}\n" for name, value in values.items()) + _HARNESS


@dataclass(frozen=True)
class ExampleRun:
    """What one program did: whether it loaded, and per example whether it passed and what it printed
    (its output, or "ExceptionType: message"; None for examples it never reached)."""

    loaded: bool
    passed: tuple[bool | None, ...]
    outputs: tuple[str | None, ...]
    killed_reason: str | None  # timeout, memory, a sandbox violation: then nothing counts
    clean_exit: bool


def run_examples(program: str, examples: Iterable[Example], timeout_s: float = 5.0,
                 memory_mb: int = 1024) -> ExampleRun:
    """Load `program` in the sandbox and run each example after it; never raises for what the program does.
    Cached: majority voting and the code verifier often ask about the same program."""
    return _run_examples(program, tuple(examples), timeout_s, memory_mb)


@functools.lru_cache(maxsize=4096)
def _run_examples(program: str, examples: tuple[Example, ...], timeout_s: float, memory_mb: int) -> ExampleRun:
    nonce = secrets.token_hex(8)
    none: tuple[None, ...] = (None,) * len(examples)
    try:
        result = run_python(harness(program, examples, nonce), timeout_s=timeout_s, memory_mb=memory_mb)
    except Exception as e:  # the sandbox itself failed (no temp space, ...): the program counts as failed
        log.warning("sandbox failed to run a program", exc_info=True)
        return ExampleRun(False, none, none, f"sandbox failed: {e}", False)
    if result.killed_reason is not None:
        log.debug("program stopped: %s", result.killed_reason)
        return ExampleRun(False, none, none, result.killed_reason, False)
    passed: dict[int, bool] = {}
    outputs: dict[int, str] = {}
    loaded = False
    for line in result.stdout.splitlines():
        if not line.startswith(nonce + " "):
            continue
        payload = line[len(nonce) + 1:]
        if payload == "loaded":
            loaded = True
        elif not payload.startswith("load "):
            try:
                i, ok, got = json.loads(payload)
                passed[int(i)], outputs[int(i)] = bool(ok), str(got)
            except (ValueError, TypeError):
                continue
    return ExampleRun(loaded, tuple(passed.get(i) for i in range(len(examples))),
                      tuple(outputs.get(i) for i in range(len(examples))), None, result.passed)
