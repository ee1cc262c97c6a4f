"""Spend accounting shared by every layer: tokens, FLOPs, seconds, and limits in any of them.

FLOPs follow the usual estimate: about 2 x parameters per token a model processes (prompt tokens it
computes, tokens it generates), verifier models included; prompt tokens served from cache cost
nothing. One `Budget` travels through a whole search, charged by every generator and verifier call.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields

from ponder.engine.protocol import Usage
from ponder.errors import BadParameter


@dataclass
class Spend:
    generated_tokens: int = 0
    prompt_tokens_computed: int = 0
    prompt_tokens_cached: int = 0
    verifier_tokens: int = 0  # tokens a verifier model computed (prompt and generated)
    flops: float = 0.0
    seconds: float = 0.0

    def __add__(self, other: Spend) -> Spend:
        return Spend(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


LIMIT_UNITS = ("generated_tokens", "tokens", "flops", "seconds")


@dataclass
class Budget:
    """What a search may spend (None: no limit) and what it has spent so far."""

    generated_tokens: int | None = None
    tokens: int | None = None  # generated + prompt computed + verifier tokens
    flops: float | None = None
    seconds: float | None = None
    spent: Spend = field(default_factory=Spend)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        for unit in LIMIT_UNITS:
            limit = getattr(self, unit)
            if limit is not None and limit <= 0:
                raise BadParameter(f"a budget of {limit} {unit} leaves nothing to spend: give a positive limit")

    def charge_generation(self, usage: Usage, n_params: int) -> None:
        """A generator call's usage (a difference of two `Usage` snapshots) by a model of n_params."""
        s = self.spent
        s.generated_tokens += usage.generated_tokens
        s.prompt_tokens_computed += usage.prompt_tokens_computed
        s.prompt_tokens_cached += usage.prompt_tokens_cached
        s.flops += 2.0 * n_params * (usage.generated_tokens + usage.prompt_tokens_computed)
        self._tick()

    def charge_verifier(self, tokens: int, n_params: int) -> None:
        """Tokens a verifier model computed; a verifier without a model (a checker, a sandbox) charges 0."""
        self.spent.verifier_tokens += tokens
        self.spent.flops += 2.0 * n_params * tokens
        self._tick()

    def _tick(self) -> None:
        self.spent.seconds = time.monotonic() - self.started

    @property
    def total_tokens(self) -> int:
        s = self.spent
        return s.generated_tokens + s.prompt_tokens_computed + s.verifier_tokens

    def used(self, unit: str) -> float:
        self._tick()
        return self.total_tokens if unit == "tokens" else getattr(self.spent, unit)

    def fraction_used(self) -> float:
        """The largest share of any limit spent so far (0 without limits)."""
        shares = [self.used(u) / getattr(self, u) for u in LIMIT_UNITS if getattr(self, u) is not None]
        return max(shares, default=0.0)

    @property
    def has_limits(self) -> bool:
        return any(getattr(self, u) is not None for u in LIMIT_UNITS)

    @property
    def exhausted(self) -> bool:
        return self.fraction_used() >= 1.0
