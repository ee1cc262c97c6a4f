"""Diverse verifier tree search (search-and-learn, Beeching et al. 2024).

n / width independent subtrees; in each round every subtree's head forks `width` ways, one batched
step grows them all, and each subtree keeps only its best child (greedy against the verifier).
Splitting the budget over subtrees keeps the candidates diverse where one beam search collapses onto
a few prefixes; it pays off at larger n.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.engine.protocol import Sequence
from ponder.search.base import Candidate, Node, Sampling, Search, SearchResult, best, check_width, weighted


@dataclass(frozen=True)
class DVTS:
    n: int = 16
    width: int = 4
    max_steps: int = 12
    weighted: bool = True
    sampling: Sampling = field(default_factory=Sampling)
    name = "dvts"

    def __post_init__(self) -> None:
        check_width("DVTS", self.n, self.width)

    def run(self, search: Search) -> SearchResult:
        search.needs_verifier(f"the {self.name} strategy")
        tree: list[Node] = []
        roots = Sequence(search.prompt).fork(self.n // self.width)
        heads: list[tuple[Sequence, int | None]] = [(root, None) for root in roots]  # (head, its node)
        finished: list[Candidate] = []
        for depth in range(self.max_steps):
            children = search.extend([c for head, _ in heads for c in head.fork(self.width)], self.sampling.step())
            step_scores = search.score(children)
            survivors = []
            for k, (head, parent) in enumerate(heads):
                group = range(k * self.width, (k + 1) * self.width)
                nodes = [Node(len(tree) + j, parent, depth, children[i].text[len(head.text):],
                              step_scores[i][-1] if step_scores[i] else 0.0, "pruned") for j, i in enumerate(group)]
                tree += nodes
                top = max(group, key=lambda i: nodes[i - group.start].score or 0.0)
                chosen, node = children[top], nodes[top - group.start]
                last = depth == self.max_steps - 1 or search.budget.exhausted
                if chosen.done or len(chosen.tokens) >= self.sampling.max_tokens or last:
                    node.state = "finished"
                    finished += search.candidates([chosen], [step_scores[top]])
                else:
                    node.state = "kept"
                    survivors.append((chosen, node.id))
            search.progress(f"step {depth + 1}: {len(survivors)} subtrees open, {len(finished)} finished")
            if not survivors:
                break
            heads = survivors
        answer = (weighted if self.weighted else best)(finished)
        return search.result(self.name, answer, finished, self, tree)
