"""`ponder train data`: training sets from what search already drew and checked.

An evaluation store keeps every pooled sample of every question with whether it was right (the task's checker;
for code, the hidden tests run in the sandbox). Rejection-sampled SFT keeps the right ones (deduplicated, at most
K a question), as Llama 3 does; preference pairs join a right and a wrong answer to the same question; revision
rows (Snell et al.) show 0 to 4 wrong attempts, each followed by the revision prompt, then a right answer, the last
wrong attempt the one closest to the right answer by character edit distance, the others drawn at random: only the
right answer is learned (the attempts are marked "train": false). Questions
of ponder's evaluation sets are left out, and said so: what is learned from is never what is judged on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.errors import BadParameter
from ponder.tasks.base import Task


@dataclass(frozen=True)
class SearchData:
    sft: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    questions: int  # used
    held_out: int  # evaluation questions (and those of held-out templates) left out
    no_right_answer: int  # questions none of whose samples was right
    revisions: list[dict[str, Any]] = field(default_factory=list)


def conversation(task: Task, completion: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(the prompt, the reply) as chat messages: a reply the prompt began (a code block opened for the model)
    is joined to its beginning, so the reply is the whole assistant message."""
    messages = [{"role": m["role"], "content": m["content"]} for m in task.messages]
    if task.messages and task.messages[-1].get("prefix"):
        begun = messages.pop()
        return messages, [{"role": "assistant", "content": begun["content"] + completion}]
    return messages, [{"role": "assistant", "content": completion}]


def from_rows(rows: list[dict[str, Any]], tasks: dict[str, Task], per_question: int = 4,
              held: set[str] | None = None, seed: int = 0) -> SearchData:
    rng = random.Random(seed)
    sft, pairs, revisions, used, held_out, none_right = [], [], [], 0, 0, 0
    for row in sorted(rows, key=lambda r: (r["question"], r.get("seed", 0))):
        task = tasks.get(row["question"])
        if task is None:
            raise BadParameter(f"question {row['question']!r} of the store is not in its task set: was the store "
                               "made by another ponder version?")
        if held is not None and row["question"] in held:
            held_out += 1
            continue
        samples = [s for s in row.get("pool") or [] if s.get("text")]
        right = _unique([s["text"] for s in samples if s.get("correct")])[:per_question]
        wrong = _unique([s["text"] for s in samples if not s.get("correct")])
        if not right:
            none_right += 1
            continue
        used += 1
        for text in right:
            prompt, reply = conversation(task, text)
            sft.append({"messages": prompt + reply, "question": row["question"]})
        for good, bad in zip(right, wrong):
            prompt, chosen = conversation(task, good)
            rejected = conversation(task, bad)[1]
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "question": row["question"]})
        for good in right:
            revisions.append({"messages": revision(task, _attempts(good, wrong, rng), good),
                              "question": row["question"]})
    return SearchData(sft, pairs, used, held_out, none_right, revisions)


def _attempts(right: str, wrong: list[str], rng: random.Random, most: int = 4) -> list[str]:
    """0 to `most` wrong attempts before `right` (as many as there are, at most): the last the closest to it by
    character edit distance, the others at random."""
    from rapidfuzz.distance import Levenshtein

    k = rng.randint(0, min(most, len(wrong)))
    if not k:
        return []
    closest = min(wrong, key=lambda w: Levenshtein.distance(w, right))
    others = [w for w in wrong if w is not closest]
    return rng.sample(others, k - 1) + [closest]


def revision(task: Task, attempts: list[str], right: str) -> list[dict[str, Any]]:
    """The conversation the `revisions` strategy shows the model, ending in the right answer: each attempt (not
    learned) followed by the revision prompt."""
    from ponder.search.revise import REVISE_PROMPT

    prompt, reply = conversation(task, right)
    context: list[dict[str, Any]] = []
    for attempt in attempts:
        context += [conversation(task, attempt)[1][0] | {"train": False}, {"role": "user", "content": REVISE_PROMPT}]
    return prompt + context + reply


def _unique(texts: list[str]) -> list[str]:
    """In order, each text once (after trimming whitespace)."""
    seen: set[str] = set()
    out = []
    for text in texts:
        if text.strip() not in seen:
            seen.add(text.strip())
            out.append(text)
    return out


def from_store(path: Path, per_question: int = 4, hold_out_templates: float = 0.0) -> SearchData:
    """The store's training sets; `hold_out_templates`: the share of templates (see `tasks.templates`) whose
    questions are left out too, to judge the trained model on templates it never saw."""
    from ponder.jobs import RunStore
    from ponder.tasks import load_tasks, without_evaluation_questions
    from ponder.tasks.program import with_format
    from ponder.tasks.templates import template_of, unseen

    store = RunStore.existing(path)
    settings, rows = store.settings, [r for _, r in store.items()]
    if "tasks" not in settings or not rows or "pool" not in rows[0]:
        raise BadParameter(f"{path} is not an evaluation store with pooled samples: make one with `ponder eval` "
                           "(majority or bon keep every sample)")
    loaded = load_tasks(settings["tasks"], settings["size"], settings["task_seed"])
    held = {t.id for t in loaded} - {t.id for t in without_evaluation_questions(loaded)}
    if hold_out_templates:
        held |= {t.id for t in loaded if (k := template_of(t)) is not None and unseen(k, hold_out_templates)}
    tasks = {t.id: with_format(t, settings.get("answer_format") or "cot") for t in loaded}
    return from_rows(rows, tasks, per_question, held)
