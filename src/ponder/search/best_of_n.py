"""Best-of-N: n samples scored by a verifier; the best one's answer, or (weighted) the answer whose
candidates' scores sum highest, which a lone high-scoring outlier cannot win against a consensus."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.search.base import Sampling, Search, SearchResult, best, weighted


@dataclass(frozen=True)
class BestOfN:
    n: int = 16
    weighted: bool = False
    sampling: Sampling = field(default_factory=Sampling)

    @property
    def name(self) -> str:
        return "weighted_bon" if self.weighted else "bon"

    def run(self, search: Search) -> SearchResult:
        search.needs_verifier(f"the {self.name} strategy")
        sequences = search.sample(self.n, self.sampling.whole())
        candidates = search.candidates(sequences, search.score(sequences))
        return search.result(self.name, (weighted if self.weighted else best)(candidates), candidates, self)
