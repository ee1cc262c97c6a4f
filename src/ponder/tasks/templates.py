"""Seen and unseen templates: whole question templates held out of training, so that a trained model is judged
on questions it could not have memorised the shape of (gsm_symbolic's questions come from ~100 templates)."""

from __future__ import annotations

import hashlib
from typing import Any

from ponder.errors import BadParameter
from ponder.tasks.base import Task


def template_of(task: Task) -> int | None:
    """The template a question was generated from, where its task set has templates."""
    question = getattr(task, "question", None) or task  # a program-format task: its word problem
    value = question.metadata.get("template")
    return None if value is None else int(value)


def unseen(template: int, share: float) -> bool:
    """Whether a template is held out of training: a stable `share` of them, by a hash of its number."""
    return int.from_bytes(hashlib.sha256(f"template-{template}".encode()).digest()[:8], "big") / 2**64 < share


def rows_of_templates(rows: list[dict[str, Any]], tasks: list[Task], which: str, share: float) -> list[dict[str, Any]]:
    """The stored rows whose questions come from templates held out of training (`which` "unseen") or not
    ("seen")."""
    if which not in ("seen", "unseen"):
        raise BadParameter(f"--templates is seen or unseen, not {which!r}")
    template = {t.id: template_of(t) for t in tasks}
    if all(v is None for v in template.values()):
        raise BadParameter("these questions come from no templates: leave out --templates")
    return [r for r in rows if unseen(template[r["question"]], share) == (which == "unseen")]
