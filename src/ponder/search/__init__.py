"""Search strategies on the Generator and Verifier protocols, all under one Budget (see `base`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ponder.budget import Budget
from ponder.engine.protocol import Generator
from ponder.errors import BadParameter
from ponder.search.base import Sampling, Search, SearchResult
from ponder.search.beam import BeamSearch
from ponder.search.best_of_n import BestOfN
from ponder.search.confidence import ConfidenceVote
from ponder.search.dvts import DVTS
from ponder.search.lookahead import LookaheadSearch
from ponder.search.majority import MajorityVote
from ponder.search.revise import Revisions
from ponder.specs import parse_spec
from ponder.tasks.base import Task
from ponder.verify import make_verifier
from ponder.verify.base import Verifier


class Strategy(Protocol):
    name: str

    def run(self, search: Search) -> SearchResult: ...


STRATEGIES: dict[str, tuple[type, dict[str, Any]]] = {  # and "auto" (see `make_strategy`)
    "greedy": (MajorityVote, {"n": 1, "sampling_temperature": 0.0}),
    "majority": (MajorityVote, {}),
    "bon": (BestOfN, {}),
    "weighted_bon": (BestOfN, {"weighted": True}),
    "beam": (BeamSearch, {}),
    "lookahead": (LookaheadSearch, {}),
    "dvts": (DVTS, {}),
    "revisions": (Revisions, {}),
    "confidence": (ConfidenceVote, {}),
}
SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens", "step_tokens", "seed")


def make_strategy(spec: str, n: int | None = None, **settings: Any) -> Strategy:
    """A strategy by name with budget n; settings are its fields or sampling ones (temperature, ...). The
    name may carry settings of its own, which win: "beam:width=2", "revisions:length=2" (a variant, as an
    evaluation grid and an allocation policy name one). "auto" takes a `policy` (a Policy or the path of
    one, see `ponder.search.auto`)."""
    name, own = parse_spec(spec)
    if name == "auto":
        return _auto(n, **settings)
    if name not in STRATEGIES:
        raise BadParameter(f"unknown strategy {name!r}: use one of {', '.join(STRATEGIES)}")
    cls, preset = STRATEGIES[name]
    merged = {**preset, **{k: v for k, v in settings.items() if v is not None}, **own}
    sampling = {k.removeprefix("sampling_"): merged.pop(k) for k in list(merged)
                if k.removeprefix("sampling_") in SAMPLING_FIELDS}
    if n is not None and name != "greedy":
        merged["n"] = n
    try:
        return cls(sampling=Sampling(**sampling), **merged)
    except TypeError as e:
        raise BadParameter(f"strategy {spec}: {e}") from None


def _auto(n: int | None, policy: Any = None, **settings: Any) -> Strategy:
    from pathlib import Path

    from ponder.search.auto import AutoStrategy, Policy

    if policy is None:
        raise BadParameter("the auto strategy needs an allocation policy: give --policy (see `ponder.search.auto`)")
    if not isinstance(policy, Policy):
        policy = Policy.load(Path(policy))
    sampling = {k: v for k, v in settings.items() if k in SAMPLING_FIELDS and v is not None}
    unknown = set(settings) - set(SAMPLING_FIELDS) - {"width"}
    if unknown:
        raise BadParameter(f"strategy auto: unknown settings {', '.join(sorted(unknown))}")
    return AutoStrategy(policy, n or 16, Sampling(**sampling))


def solve(generator: Generator, task: Task, strategy: str = "majority", n: int | None = None,
          verifier: str | Verifier | None = None, budget: Budget | None = None,
          progress: Callable[[str], None] | None = None, **settings: Any) -> SearchResult:
    """One task, one strategy: a verifier by name judges with the policy itself where it needs a model."""
    if strategy == "auto" and settings.get("policy") is None:  # the policy that ships for this model
        from ponder.search.auto import shipped_policy

        settings["policy"] = shipped_policy(generator.info.name)
    chosen = make_strategy(strategy, n, **settings)  # bad settings fail before any work
    if (policy := getattr(chosen, "policy", None)) is not None:  # auto: the policy's model and verifier
        if policy.model != generator.info.name:
            raise BadParameter(f"the allocation policy was made for {policy.model}, not {generator.info.name}: "
                               "calibrate one for this model with `ponder eval` and `ponder allocate`")
        verifier = verifier or policy.verifier
    judge = make_verifier(verifier, generator) if isinstance(verifier, str) else verifier
    return chosen.run(Search(generator, task, budget, judge, progress=progress))


__all__ = ["STRATEGIES", "Sampling", "Search", "SearchResult", "Strategy", "make_strategy", "solve"]
