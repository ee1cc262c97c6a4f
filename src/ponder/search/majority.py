"""Majority vote (self-consistency, Wang et al. 2022): n samples, the most common final answer."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ponder.search.base import Sampling, Search, SearchResult, majority


@dataclass(frozen=True)
class MajorityVote:
    n: int = 16
    sampling: Sampling = field(default_factory=Sampling)
    name = "majority"

    def run(self, search: Search) -> SearchResult:
        candidates = search.candidates(search.sample(self.n, self.sampling.whole()))
        key = search.task.vote_key
        votes = Counter(key(c.answer) for c in candidates)
        for c in candidates:  # a candidate's score: the share of the votes its answer got
            c.score = votes[k] / len(candidates) if (k := key(c.answer)) is not None else 0.0
        return search.result(self.name, majority(candidates, key), candidates, self)
