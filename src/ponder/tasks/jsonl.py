"""The user's own questions: a JSONL file of {"question": ..., "answer": ...} lines (optional "id",
"difficulty"; other fields are kept as metadata), checked by `answers_equivalent`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.errors import BadParameter
from ponder.tasks.answers import answers_equivalent, extract_answer, math_messages
from ponder.tasks.base import Task

_FORMAT = 'write one {"question": ..., "answer": ...} object per line'


@dataclass(frozen=True)
class JsonlTask(Task):
    def extract(self, completion: str) -> str | None:
        return extract_answer(completion)

    def check(self, answer: str | None) -> bool:
        return answers_equivalent(answer, self.reference)


def load_jsonl(path: str | Path) -> list[JsonlTask]:
    """Every question in the file, in order."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BadParameter(f"no task file at {path}: give the path of a JSONL file ({_FORMAT})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadParameter(f"cannot read task file {path} ({e}): give a UTF-8 JSONL file ({_FORMAT})") from None
    tasks: list[JsonlTask] = []
    seen: dict[str, int] = {}  # id -> line
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        task = _task(path, number, line, index=len(tasks))
        if task.id in seen:
            first = seen[task.id]
            raise BadParameter(f"{path} line {number}: id {task.id!r} is already on line {first}; make ids unique")
        seen[task.id] = number
        tasks.append(task)
    if not tasks:
        raise BadParameter(f"{path} holds no questions: {_FORMAT}")
    return tasks


def _task(path: Path, number: int, line: str, index: int) -> JsonlTask:
    where = f"{path} line {number}"
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as e:
        raise BadParameter(f"{where} is not valid JSON ({e.msg}, column {e.colno}): {_FORMAT}") from None
    if not isinstance(record, dict):
        raise BadParameter(f"{where} is not a JSON object: {_FORMAT}")
    question, answer = record.get("question"), record.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise BadParameter(f'{where} has no "question" (a non-empty string): {_FORMAT}')
    if answer is None or isinstance(answer, (bool, dict, list)) or not str(answer).strip():
        raise BadParameter(f'{where} has no "answer" (a string or a number): {_FORMAT}')
    extra = {k: v for k, v in record.items() if k not in ("question", "answer", "id", "difficulty")}
    return JsonlTask(
        id=str(record["id"]) if record.get("id") is not None else f"{path.name}/{index}",
        messages=math_messages(question),
        reference=str(answer),
        difficulty={"difficulty": record["difficulty"]} if "difficulty" in record else {},
        metadata=extra,
    )
