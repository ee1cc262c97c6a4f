"""Sequential revisions (Snell et al. 2024), and their mix with parallel sampling.

A chain of attempts: each sees the earlier ones (the last `context` of them) and is asked to check
and correct them. `length` attempts per chain, n / length chains side by side in one batch: length
= n is purely sequential, length = 1 is plain parallel sampling, and what lies between is the
parallel-by-sequential mix whose best ratio depends on the question's difficulty. The answer is
chosen across every attempt of every chain: by verifier (best or weighted) or by majority vote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.engine.protocol import Sequence
from ponder.errors import BadParameter
from ponder.search.base import Sampling, Search, SearchResult, best, majority, weighted

REVISE_PROMPT = (
    "Check the solution above step by step. If you find a mistake, write a corrected solution; if it is "
    'right, write it again. Separate the steps with a blank line and end with "The answer is X."'
)
SELECTIONS = {"weighted": weighted, "best": best, "majority": majority}


@dataclass(frozen=True)
class Revisions:
    n: int = 4  # attempts in all
    length: int = 4  # attempts per chain
    context: int = 4  # earlier attempts of its chain that an attempt sees
    select: str = "majority"
    sampling: Sampling = field(default_factory=Sampling)
    name = "revisions"

    def __post_init__(self) -> None:
        if self.n < 1 or self.length < 1 or self.n % self.length:
            raise BadParameter(f"revisions need n a multiple of length (n={self.n}, length={self.length})")
        if self.select not in SELECTIONS:
            raise BadParameter(f"unknown selection {self.select!r}: use one of {', '.join(SELECTIONS)}")

    def run(self, search: Search) -> SearchResult:
        if self.select != "majority":
            search.needs_verifier(f"revisions with {self.select} selection")
        chains, params = self.n // self.length, self.sampling.whole()
        attempts: list[list[Sequence]] = [[] for _ in range(chains)]
        for round_ in range(self.length):
            if round_ and search.budget.exhausted:
                break
            if round_ == 0:
                starts = Sequence(search.prompt).fork(chains)
            else:
                starts = [Sequence(tuple(search.generator.encode_chat(self._messages(search, chain))),
                                   branch=(c, round_)) for c, chain in enumerate(attempts)]
            for chain, attempt in zip(attempts, search.extend(starts, params)):
                chain.append(attempt)
            search.progress(f"round {round_ + 1} of {self.length}: {chains} chains")
        flat = [a for chain in attempts for a in chain]
        scored = search.verifier is not None and self.select != "majority"
        candidates = search.candidates(flat, search.score(flat) if scored else None)
        return search.result(self.name, SELECTIONS[self.select](candidates), candidates, self)

    def _messages(self, search: Search, chain: list[Sequence]) -> list[dict[str, str]]:
        messages = [dict(m) for m in search.task.messages]
        for attempt in chain[-self.context:]:
            messages += [{"role": "assistant", "content": attempt.text}, {"role": "user", "content": REVISE_PROMPT}]
        return messages


