"""Shortcuts and journeys from a stored search tree.

The right path is the root-to-leaf path of the best-scored leaf whose answer was checked right. A wrong branch is
an explored node off that path, at one of its branching points, whose subtree reached an answer and only wrong
ones (a branch the search pruned before it answered may have been right: it is never called wrong); which one is a
setting (`BRANCHES`). A journey walks the right path to the branching point, takes the wrong branch (down to
where the search left it), says what went wrong (a reflection) and returns to the branching point, then goes on
along the right path to the verified answer. A shortcut is the right path alone; both sets hold the same
questions, so that they differ only in the journey.

Reflections come from templates: cheap, and every word of a journey other than them is the policy's own. The
policy's own critique of the wrong turn is the other choice the o1 replication used (`reflect`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ponder.journey.trees import path
from ponder.tasks.base import Task

BRANCHES = {
    "highest": "the wrong step the verifier scored highest (the most tempting wrong turn), one step",
    "sibling": "a wrong sibling of a right step, at a branching point drawn at random, one step",
    "deepest": "the wrong branch that went deepest, followed down to where the search left it",
}
REFLECTIONS = (  # {answer}: the answer the wrong branch reached
    "Wait, {answer} does not look right. Let me go back and check my work.",
    "Hmm, that gives {answer}, which cannot be right. Let me look at this again.",
    "Wait, let me double-check: {answer} does not fit the question. I will go back and redo it.",
)
STEP_BREAK = "\n\n"


@dataclass
class Built:
    shortcuts: list[dict[str, Any]] = field(default_factory=list)
    journeys: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> questions

    def skip(self, reason: str, question: str) -> None:
        self.skipped.setdefault(reason, []).append(question)


def build(records: list[dict[str, Any]], tasks: dict[str, Task], branch: str = "deepest", wrong: int = 1,
          seed: int = 0) -> Built:
    """Both sets from stored trees (see `trees.tree_record`); `wrong` wrong branches a journey at most."""
    rng = random.Random(seed)
    built = Built()
    for record in records:
        question = record["question"]
        nodes = record.get("nodes") or []
        if not nodes:
            built.skip("no tree stored", question)
            continue
        right = _right_leaf(nodes, record.get("leaves", {}))
        if right is None:
            built.skip("no verified right path", question)
            continue
        right_path = path(nodes, right)
        branches = wrong_branches(nodes, record["leaves"], right_path, branch, wrong, rng)
        if not branches:  # the two sets hold the same questions: a shortcut only beside its journey
            built.skip("no wrong branch that reached a wrong answer", question)
            continue
        task = tasks[question]
        prompt = [{"role": m["role"], "content": m["content"]} for m in task.messages]
        built.shortcuts.append({"messages": prompt + [{"role": "assistant", "content": _join(right_path)}],
                                "question": question})
        segments = journey_segments(right_path, branches, record["leaves"], rng)
        built.journeys.append({"messages": prompt + [{"role": "assistant", "content": "".join(
            s["text"] for s in segments)}], "question": question, "segments": segments})
    return built


def _right_leaf(nodes: list[dict[str, Any]], leaves: dict[str, Any]) -> int | None:
    right = [n for n in nodes if leaves.get(str(n["id"]), {}).get("correct")]
    return max(right, key=lambda n: (n.get("score") or 0.0, -n["id"]))["id"] if right else None


def wrong_branches(nodes: list[dict[str, Any]], leaves: dict[str, Any], right_path: list[dict[str, Any]],
                   branch: str, most: int, rng: random.Random) -> list[tuple[int, list[dict[str, Any]]]]:
    """(depth on the right path where it branches off, the wrong branch's nodes from the branching point down),
    at most `most` of them, at distinct branching points, shallowest first."""
    if branch not in BRANCHES:
        from ponder.errors import BadParameter

        raise BadParameter(f"unknown branch choice {branch!r}: use one of {', '.join(BRANCHES)}")
    children: dict[int | None, list[dict[str, Any]]] = {}
    for n in nodes:
        children.setdefault(n["parent"], []).append(n)

    def subtree(node: dict[str, Any]) -> list[dict[str, Any]]:
        out, todo = [], [node]
        while todo:
            out.append(todo.pop())
            todo += children.get(out[-1]["id"], [])
        return out

    def checked(node: dict[str, Any]) -> bool | None:
        leaf = leaves.get(str(node["id"]))
        return None if leaf is None else bool(leaf.get("correct"))

    options = []  # (depth, alternative node, its wrong leaves)
    for depth, step in enumerate(right_path):
        for alternative in children.get(step["parent"], []):
            outcomes = [(n, checked(n)) for n in subtree(alternative)]
            wrong_leaves = [n for n, right in outcomes if right is False]
            if alternative["id"] != step["id"] and wrong_leaves and not any(right for _, right in outcomes):
                options.append((depth, alternative, wrong_leaves))
    if not options:
        return []
    if branch == "highest":
        ranked = sorted(options, key=lambda o: -(o[1].get("score") or 0.0))
    elif branch == "sibling":
        ranked = rng.sample(options, len(options))
    else:
        ranked = sorted(options, key=lambda o: -max(n["depth"] for n in o[2]))
    chosen: dict[int, tuple[int, list[dict[str, Any]]]] = {}
    for depth, alternative, below in ranked:
        if depth in chosen or len(chosen) == most:
            continue
        if branch == "deepest":  # down to its deepest wrong answer
            end = max(below, key=lambda n: (n["depth"], -n["id"]))
            line = [n for n in path(nodes, end["id"]) if n["depth"] >= alternative["depth"]]
        else:
            line = [alternative]
        chosen[depth] = (depth, line)
    return [chosen[d] for d in sorted(chosen)]


def journey_segments(right_path: list[dict[str, Any]], branches: list[tuple[int, list[dict[str, Any]]]],
                     leaves: dict[str, Any], rng: random.Random) -> list[dict[str, str]]:
    """The journey as marked segments: right steps, wrong steps (with their node ids), reflections."""
    segments: list[dict[str, Any]] = []
    position = 0
    for depth, line in branches:
        if depth > position:
            segments.append({"kind": "right", "text": _join(right_path[position:depth])})
        wrong_text = _join(line)
        segments.append({"kind": "wrong", "text": _with_break(wrong_text), "nodes": [n["id"] for n in line]})
        answer = leaves.get(str(line[-1]["id"]), {}).get("answer")
        reflection = rng.choice(REFLECTIONS).format(answer=answer) if answer else \
            "Wait, this is not going anywhere. Let me go back and redo it."  # a one-step branch, cut before answering
        segments.append({"kind": "reflection", "text": reflection + STEP_BREAK, "answer": answer, "by": "template"})
        position = depth
    segments.append({"kind": "right", "text": _join(right_path[position:])})
    return segments


def _join(steps: list[dict[str, Any]]) -> str:
    return "".join(n["text"] for n in steps)


def _with_break(text: str) -> str:
    """A wrong branch cut mid-step still ends its paragraph before the reflection."""
    return text if text.endswith(STEP_BREAK) else text.rstrip("\n") + STEP_BREAK
