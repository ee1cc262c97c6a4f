"""An outcome verifier for code: run each candidate program on the examples its prompt shows.

The tests come from the prompt, never from the oracle's hidden tests: the doctest examples of the
function's docstring (`>>> f(2)` followed by the expected output, as HumanEval prompts write them)
and lines of the form `f(2) == 4` / `f(2) -> 4` / `f(2) => true` that some prompts use instead
(literal arguments and results only). Outputs match as doctest's NORMALIZE_WHITESPACE does, or as
equal literals of the same types (prompts often quote strings with " where repr writes '). Each
candidate scores the fraction of examples it passes, on every step: a program is judged as a whole.
Programs run in `ponder.sandbox`; one that crashes on load, times out or breaks the sandbox's
rules scores 0, and nothing a candidate does stops the search.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import secrets
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ponder.budget import Budget
from ponder.engine.protocol import Sequence
from ponder.errors import BadParameter
from ponder.tasks.base import Task
from ponder.verify.base import split_steps
from ponder.sandbox import run_python

log = logging.getLogger(__name__)

_PYTHON_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_PROMPT = re.compile(r"^(\s*)>>>(?: (.*)|$)")
_CONTINUATION = re.compile(r"^\s*\.\.\.(?: (.*)|$)")
_ARROW = re.compile(r"^\s*(?P<call>(?P<name>[A-Za-z_]\w*)\(.*\))\s*(?:==>|=>|->|==|➞)\s*(?P<want>.+?)\s*$")
_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)
_TRACEBACK = "Traceback (most recent call last):"
_LOOSE_BOOLS = {"true": "True", "false": "False"}  # prompts written for other languages


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
        _ok = not _want.startswith(_TRACEBACK) and _same(_buf.getvalue(), _want)
    except BaseException as _e:
        _last = _want.strip().splitlines()[-1] if _want.strip() else ""
        _ok = _want.startswith(_TRACEBACK) and (
            _same(type(_e).__name__ + ": " + str(_e), _last) or _same(type(_e).__name__, _last))
    finally:
        _sys.stdout = _out
    print("\n" + _NONCE + " " + _json.dumps([_i, bool(_ok)]), file=_out, flush=True)
'''


def harness(program: str, examples: list[Example], nonce: str) -> str:
    """The sandboxed script that loads `program` and reports each example's result after `nonce`."""
    values = {"_PROGRAM": program, "_EXAMPLES": [(e.source, e.want) for e in examples], "_NONCE": nonce,
              "_TRACEBACK": _TRACEBACK}
    return "".join(f"{name} = {value!r}\n" for name, value in values.items()) + _HARNESS


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
            return _with_prompt(prompt, code, entry_point)
        return code

    def _score_program(self, program: str, examples: list[Example], entry_point: str | None) -> float:
        """The share of scored examples passed; 0 on a crash, a timeout or a sandbox violation."""
        nonce = secrets.token_hex(8)
        checks = list(examples)
        if entry_point:  # the function must exist, whatever the examples say
            checks.insert(0, Example(f"callable({entry_point})", "True"))
        try:
            result = run_python(harness(program, checks, nonce), timeout_s=self.timeout_s,
                                memory_mb=self.memory_mb)
        except Exception:  # the sandbox itself failed (no temp space, ...): this candidate scores 0
            log.warning("sandbox failed to run a candidate", exc_info=True)
            return 0.0
        if result.killed_reason is not None:
            log.debug("candidate stopped: %s", result.killed_reason)
            return 0.0
        passed: dict[int, bool] = {}
        loaded = False
        for line in result.stdout.splitlines():
            if not line.startswith(nonce + " "):
                continue
            payload = line[len(nonce) + 1:]
            if payload == "loaded":
                loaded = True
            elif not payload.startswith("load "):
                try:
                    i, ok = json.loads(payload)
                    passed[int(i)] = bool(ok)
                except (ValueError, TypeError):
                    continue
        if not loaded or (entry_point and not passed.get(0, False)):
            return 0.0
        offset = 1 if entry_point else 0
        scored = [i + offset for i, e in enumerate(examples) if e.want.strip()]
        if not scored:
            return self.score_without_tests if result.passed else 0.0
        return sum(passed.get(i, False) for i in scored) / len(scored)


def _prompt_of(task: Task) -> tuple[str, str | None]:
    """The prompt text to read examples from, and the function under test when the task names it."""
    prompt = task.metadata.get("prompt")
    if not isinstance(prompt, str):
        prompt = "\n".join(m.get("content", "") for m in task.messages if m.get("role") != "system")
    entry_point = task.metadata.get("entry_point")
    return prompt, entry_point if isinstance(entry_point, str) and entry_point else None


def _with_prompt(prompt: str, code: str, entry_point: str) -> str:
    """HumanEval-style: a program that redefines the function follows the prompt (keeping its imports
    and helpers); a bare body is appended to the prompt's signature and docstring."""
    prompt = prompt if prompt.endswith("\n") else prompt + "\n"
    if re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return f"{prompt}\n{code}"
    first = next((line for line in code.splitlines() if line.strip()), " ")
    return prompt + (code if first[0].isspace() else textwrap.indent(code, "    "))
