"""The budget: spend in every unit, limits in any of them."""

from __future__ import annotations

import pytest

from ponder.budget import Budget, Spend
from ponder.engine.protocol import Usage
from ponder.errors import BadParameter


def test_spend_is_counted_in_every_unit() -> None:
    budget = Budget()
    budget.charge_generation(Usage(prompt_tokens_computed=100, prompt_tokens_cached=900, generated_tokens=50), 1000)
    budget.charge_verifier(30, 10)
    s = budget.spent
    assert (s.generated_tokens, s.prompt_tokens_computed, s.prompt_tokens_cached) == (50, 100, 900)
    assert s.verifier_tokens == 30
    assert s.flops == 2 * 1000 * 150 + 2 * 10 * 30  # cached prompt tokens cost nothing
    assert budget.total_tokens == 180 and not budget.has_limits and not budget.exhausted
    assert (s + s).generated_tokens == 100 and Spend().to_dict()["flops"] == 0.0


@pytest.mark.parametrize(("limit", "exhausted"), [({"generated_tokens": 50}, True), ({"tokens": 181}, False),
                                                  ({"flops": 300_600}, True), ({"seconds": 3600}, False)])
def test_a_limit_in_any_unit(limit: dict, exhausted: bool) -> None:
    budget = Budget(**limit)
    budget.charge_generation(Usage(prompt_tokens_computed=100, generated_tokens=50), 1000)
    budget.charge_verifier(30, 10)
    assert budget.has_limits and budget.exhausted == exhausted


def test_a_limit_must_leave_something_to_spend() -> None:
    with pytest.raises(BadParameter, match="positive"):
        Budget(tokens=0)
