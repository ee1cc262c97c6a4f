"""Search trees on training questions, stored with every finished leaf checked: the raw material of journeys."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ponder.budget import Budget
from ponder.search import Search, make_strategy
from ponder.tasks import training_tasks
from ponder.tasks.base import Task


@dataclass(frozen=True)
class TreeJob:
    """The stored tree of one question, for `jobs.run_all` (picklable; one model per process)."""

    model: str
    backend: str
    tasks: str
    size: int
    seed: int
    strategy: str = "beam"
    n: int = 8
    verifier: str = "prm"
    temperature: float = 0.7
    max_tokens: int = 512
    hold_out_templates: float = 0.0  # no trees for this share of templates: the trained model is judged on them
    concurrent: int = 1  # questions at once, batched by one engine: the same trees, sooner (not a setting)

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "concurrent"}

    def keys(self) -> list[str]:
        return [t.id for t in training_tasks(self.tasks, self.size, self.seed, self.hold_out_templates)]

    def __call__(self, key: str) -> dict[str, Any]:
        from ponder.engine.backends import OPENING, shared_engine
        from ponder.verify import shared_verifier

        task = next(t for t in training_tasks(self.tasks, self.size, self.seed, self.hold_out_templates)
                    if t.id == key)
        with OPENING:
            generator = shared_engine(self.model, self.backend, self.concurrent > 1)
            verifier = shared_verifier(self.verifier, self.model, self.backend, self.concurrent > 1)
        strategy = make_strategy(self.strategy, self.n, temperature=self.temperature, max_tokens=self.max_tokens,
                                 seed=self.seed)
        result = strategy.run(Search(generator, task, Budget(), verifier))
        return tree_record(task, [n.to_dict() for n in result.tree or []])


def tree_record(task: Task, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """A tree as stored: its nodes, and for each finished leaf the answer its whole path gives and whether it is
    right (the path's text is its steps joined: a node holds only the text its step added)."""
    leaves = {}
    for node in nodes:
        if node["state"] == "finished":
            answer = task.extract(path_text(nodes, node["id"]))
            leaves[str(node["id"])] = {"answer": answer, "correct": task.check(answer)}
    return {"question": task.id, "nodes": nodes, "leaves": leaves}


def path(nodes: list[dict[str, Any]], node_id: int) -> list[dict[str, Any]]:
    """The nodes from a root down to `node_id`."""
    by_id = {n["id"]: n for n in nodes}
    out = [by_id[node_id]]
    while out[-1]["parent"] is not None:
        out.append(by_id[out[-1]["parent"]])
    return out[::-1]


def path_text(nodes: list[dict[str, Any]], node_id: int) -> str:
    return "".join(n["text"] for n in path(nodes, node_id))
