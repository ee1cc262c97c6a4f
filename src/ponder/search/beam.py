"""Step-level beam search against a process verifier (Snell et al. 2024; search-and-learn).

n beams grow one step (up to a blank line) per round, all in one batched `extend`; the verifier
scores each beam's newest step; the best n / width beams are kept and each forks into `width`
children that share its past (the engine reuses its cached keys and values). Beams that end (end
of generation, or the token cap) become candidates; the answer is the best candidate's, or with
`weighted`, the answer whose candidates' scores sum highest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.engine.protocol import Sequence
from ponder.search.base import Candidate, Node, Sampling, Search, SearchResult, best, check_width, weighted


@dataclass(frozen=True)
class BeamSearch:
    n: int = 16
    width: int = 4  # children per kept beam: n / width beams survive each round
    max_steps: int = 12
    weighted: bool = False
    sampling: Sampling = field(default_factory=Sampling)
    name = "beam"

    def __post_init__(self) -> None:
        check_width("beam search", self.n, self.width)

    def selection_scores(self, search: Search, beams: list[Sequence], step_scores: list[list[float]]) -> list[float]:
        """What ranks the beams for survival: here, the verifier's score of each beam's newest step."""
        return [scores[-1] if scores else 0.0 for scores in step_scores]

    def run(self, search: Search) -> SearchResult:
        search.needs_verifier(f"the {self.name} strategy")
        tree: list[Node] = []
        finished: list[Candidate] = []
        beams = search.extend(Sequence(search.prompt).fork(self.n), self.sampling.step())
        nodes = [self._node(tree, None, 0, b.text) for b in beams]
        for depth in range(1, self.max_steps + 1):
            step_scores = search.score(beams)
            ranks = self.selection_scores(search, beams, step_scores)
            for node, scores in zip(nodes, step_scores):
                node.score = scores[-1] if scores else 0.0
            last_round = depth == self.max_steps or search.budget.exhausted
            active = []
            for i, beam in enumerate(beams):
                if self.ended(beam, search) or last_round:
                    nodes[i].state = "finished"
                    finished += search.candidates([beam], [step_scores[i]])
                else:
                    active.append(i)
            if not active:
                break
            kept = sorted(active, key=lambda i: -ranks[i])[: max(1, self.n // self.width)]
            for i in active:
                nodes[i].state = "kept" if i in kept else "pruned"
            parents = [(nodes[i].id, len(beams[i].text)) for i in kept for _ in range(self.width)]
            beams = search.extend([child for i in kept for child in beams[i].fork(self.width)], self.sampling.step())
            nodes = [self._node(tree, parent, depth, b.text[start:]) for (parent, start), b in zip(parents, beams)]
            search.progress(f"step {depth}: {len(kept)} beams kept, {len(finished)} finished, "
                            f"best step score {max(ranks[i] for i in kept):.2f}")
        answer = (weighted if self.weighted else best)(finished)
        return search.result(self.name, answer, finished, self, tree)

    def ended(self, beam: Sequence, search: Search) -> bool:
        return beam.done or len(beam.tokens) >= self.sampling.max_tokens

    @staticmethod
    def _node(tree: list[Node], parent: int | None, depth: int, step: str) -> Node:
        tree.append(node := Node(len(tree), parent, depth, step))
        return node
