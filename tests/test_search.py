"""Every strategy against a scripted generator and verifier where the right answer is known."""

from __future__ import annotations

import pytest
from scripted import GOOD_STEPS, SPLIT, ScriptedGenerator, ScriptedVerifier, task

from ponder.budget import Budget
from ponder.errors import BadParameter
from ponder.search import Search, make_strategy
from ponder.search.beam import BeamSearch
from ponder.search.lookahead import LookaheadSearch



def run(strategy: str, tree: dict, verifier: ScriptedVerifier | None = None, budget: Budget | None = None,
        revised: str | None = None, **settings: object):
    search = Search(ScriptedGenerator(tree, revised), task("7"), budget, verifier)
    return make_strategy(strategy, **settings).run(search)


def test_greedy_misses_what_majority_finds() -> None:
    assert run("greedy", SPLIT).answer == "6"
    result = run("majority", SPLIT, n=64)
    assert result.answer == "7" and len(result.candidates) == 64
    assert result.spend.generated_tokens > 0 and result.spend.flops == 2 * 1000 * (
        result.spend.generated_tokens + result.spend.prompt_tokens_computed)


def test_weighted_best_of_n_is_not_fooled_by_a_lone_outlier() -> None:
    tree = {"": [("The answer is 5.", 0.15), ("The answer is 7.", 0.85)]}
    verifier = ScriptedVerifier({"The answer is 5.": 0.95, "The answer is 7.": 0.6})
    plain = run("bon", tree, verifier, n=16)
    assert any(c.answer == "5" for c in plain.candidates) and plain.answer == "5"  # the outlier wins alone
    assert run("weighted_bon", tree, verifier, n=16).answer == "7"  # twelve 0.6s outweigh one 0.95


def test_beam_search_finds_the_path_greedy_decoding_misses() -> None:
    verifier = ScriptedVerifier(GOOD_STEPS)
    result = run("beam", SPLIT, verifier, n=8, width=4)
    assert result.answer == "7"
    roots = [node for node in result.tree if node.parent is None]
    assert len(roots) == 8 and {n.state for n in roots} <= {"kept", "pruned"}
    kept = [n for n in roots if n.state == "kept"]
    assert len(kept) == 2 and all(n.score >= 0.8 for n in kept)
    assert all(c.answer == "7" for c in result.candidates) and len(result.candidates) == 8


def test_lookahead_ranks_a_step_by_where_it_leads() -> None:
    tree = {"": [("Try a.\n\n", 0.5), ("Try b.\n\n", 0.5)],
            "Try a.\n\n": [("Then c.\n\n", 1.0)], "Try a.\n\nThen c.\n\n": [("The answer is 6.", 1.0)],
            "Try b.\n\n": [("Then d.\n\n", 1.0)], "Try b.\n\nThen d.\n\n": [("The answer is 7.", 1.0)]}
    verifier = ScriptedVerifier({"Try a.": 0.6, "Try b.": 0.4, "Then c.": 0.1, "Then d.": 0.9,
                                 "The answer is 6.": 0.1, "The answer is 7.": 0.9})
    assert isinstance(make_strategy("lookahead"), LookaheadSearch)
    beam = run("beam", tree, verifier, n=4, width=4)  # one beam survives: the best first step
    assert beam.answer == "6"
    assert run("lookahead", tree, verifier, n=4, width=4, lookahead=1).answer == "7"


def test_dvts_keeps_the_best_child_of_each_subtree() -> None:
    result = run("dvts", SPLIT, ScriptedVerifier(GOOD_STEPS), n=8, width=4)
    assert len(result.candidates) == 2 and result.answer == "7"
    assert sum(n.state == "kept" for n in result.tree if n.depth == 0) == 2


def test_revisions_recover_from_a_wrong_first_attempt() -> None:
    wrong_first = {"": [("The answer is 6.", 1.0)]}
    verifier = ScriptedVerifier({"The answer is 6.": 0.1, "The answer is 7.": 0.9})
    fixed = "Check: 3 + 4 = 7, not 6.\n\nThe answer is 7."
    parallel = run("revisions", wrong_first, verifier, revised=fixed, n=2, length=1, select="best")
    assert parallel.answer == "6"  # without revising, every attempt is the same wrong one
    result = run("revisions", wrong_first, verifier, revised=fixed, n=2, length=2, select="best")
    assert [c.answer for c in result.candidates] == ["7", "6"] and result.answer == "7"
    assert run("revisions", wrong_first, revised=fixed, n=3, length=3, select="majority").answer == "7"


def test_a_token_budget_stops_the_search() -> None:
    unlimited = run("beam", SPLIT, ScriptedVerifier(GOOD_STEPS), n=8, width=4)
    limited = run("beam", SPLIT, ScriptedVerifier(GOOD_STEPS), Budget(tokens=100), n=8, width=4)
    assert limited.spend.generated_tokens < unlimited.spend.generated_tokens
    assert len(limited.candidates) == 8  # the beams it had become candidates


def test_strategies_that_need_a_verifier_say_so() -> None:
    for name in ("bon", "weighted_bon", "beam", "lookahead", "dvts"):
        with pytest.raises(BadParameter, match="needs a verifier"):
            run(name, SPLIT)
    with pytest.raises(BadParameter, match="multiple of width"):
        BeamSearch(n=6, width=4)
    with pytest.raises(BadParameter, match="unknown strategy"):
        make_strategy("telepathy")
    with pytest.raises(BadParameter, match="temperature"):
        run("majority", SPLIT, temperature=-1.0)


def test_a_strategy_variant_carries_settings_of_its_own_which_win() -> None:
    from ponder.specs import split_specs

    assert make_strategy("beam:width=2", 8, width=4).width == 2
    look = make_strategy("lookahead:width=2,lookahead=1", 4)
    assert (look.width, look.lookahead, look.n) == (2, 1, 4)
    assert make_strategy("revisions:length=2", 8).length == 2
    assert split_specs("greedy, beam:width=2,max_steps=8,revisions:length=2") == (
        "greedy", "beam:width=2,max_steps=8", "revisions:length=2")
    with pytest.raises(BadParameter, match="strategy beam:wdith=2: .*wdith"):
        make_strategy("beam:wdith=2", 8)
    with pytest.raises(BadParameter, match="bad setting 'width' in 'beam:width'"):
        make_strategy("beam:width", 8)
