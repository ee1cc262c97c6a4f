"""Lookahead search (Snell et al. 2024): beam search that ranks a step by where it leads.

Each surviving beam is rolled out k more steps at temperature 0, and the verifier's score of the
rollout's last step ranks the beam; the rollout itself is thrown away (its keys and values stay in
the engine's cache, so the beam's children reuse its prefix). k = 0 is plain beam search.
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.engine.protocol import Sequence
from ponder.search.base import Search
from ponder.search.beam import BeamSearch


@dataclass(frozen=True)
class LookaheadSearch(BeamSearch):
    lookahead: int = 2
    name = "lookahead"

    def selection_scores(self, search: Search, beams: list[Sequence], step_scores: list[list[float]]) -> list[float]:
        rollouts = beams
        for _ in range(self.lookahead):
            open_ = [i for i, r in enumerate(rollouts) if not self.ended(r, search)]
            if not open_ or search.budget.exhausted:
                break
            grown = search.extend([rollouts[i] for i in open_], self.sampling.step(temperature=0.0))
            rollouts = list(rollouts)
            for i, r in zip(open_, grown):
                rollouts[i] = r
        scores = search.score(rollouts)
        return [s[-1] if s else 0.0 for s in scores]
