"""Confidence intervals for accuracies: the percentile bootstrap over questions."""

from __future__ import annotations

import random
from collections.abc import Sequence


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95, rounds: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of `values` (resampled with replacement)."""
    if not values:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(rounds))
    tail = (1 - confidence) / 2
    return means[int(tail * rounds)], means[min(rounds - 1, int((1 - tail) * rounds))]
