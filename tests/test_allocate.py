"""Compute-optimal allocation: the policy from a calibration grid, and `auto` at run time."""

from __future__ import annotations

from pathlib import Path

import pytest

from ponder.eval.allocate import build_policy
from ponder.search.auto import AutoStrategy, Choice, Policy
from ponder.errors import BadParameter
from ponder.search import Search, make_strategy
from scripted import ScriptedGenerator, ScriptedVerifier
from scripted import SPLIT
from scripted_jobs import task

SETTINGS = {"model": "m", "verifier": "v", "budgets": [1, 4, 16], "width": 4}


def calibration_rows() -> list[dict]:
    """20 questions: the verifier likes the easy half's probes (0.9), not the hard half's (0.2). On easy
    questions majority@4 is already right; on hard ones only beam@16 is; best-of-16 helps neither."""
    rows = []
    for i in range(20):
        easy = i < 10
        pool = [{"correct": easy, "step_scores": [0.5, 0.9 if easy else 0.2]} for _ in range(16)]

        def cell(right: bool, n: int, extra: float = 0.0) -> dict:
            return {"correct": right, "flops": n * 1e9 + extra, "tokens": n * 100, "seconds": n}

        rows.append({"question": f"q{i}", "seed": 0, "pool": pool, "results": {
            "majority@1": cell(easy, 1), "majority@4": cell(easy, 4), "majority@16": cell(easy, 16),
            "bon@16": cell(False, 16, 1e8), "beam@4": cell(False, 4, 2e9), "beam@16": cell(not easy, 16, 2e9)}})
    return rows


def test_the_policy_picks_the_known_best_strategy_for_each_bin_and_budget() -> None:
    policy = build_policy(calibration_rows(), SETTINGS, probe=4, bins=2)
    assert policy.thresholds == [0.9] and policy.sample_flops == pytest.approx(1e9, rel=0.01)
    assert policy.bin_of(0.9) == 1 and policy.bin_of(0.2) == 2
    assert policy.table[1][4].strategy == "majority" and policy.table[1][4].n == 4
    assert policy.table[1][16].strategy == "majority" and policy.table[1][16].n <= 4  # cheaper among equals
    # beam@16 costs 18 samples plus the probe: over a budget of 16 the hard bin has nothing better than chance
    assert policy.table[2][16].accuracy == 0.0
    roomy = build_policy(calibration_rows(), SETTINGS | {"budgets": [1, 4, 16, 64]}, probe=4, bins=2)
    assert (roomy.table[2][64].strategy, roomy.table[2][64].n, roomy.table[2][64].accuracy) == ("beam", 16, 1.0)


def test_a_budget_of_n_samples_fits_majority_of_n_even_where_the_first_samples_run_short() -> None:
    # Seen on the chain_sum ladder: the first samples of a seed answered in one line, later ones reasoned
    # at length, so a sample costs 4 times more in the pool of 16 than alone.
    rows = calibration_rows()
    for row in rows:
        row["results"] = {"majority@1": {"correct": False, "flops": 0.5e9, "tokens": 8, "seconds": 1},
                          "majority@16": {"correct": True, "flops": 32e9, "tokens": 500, "seconds": 8},
                          "beam@4": {"correct": True, "flops": 40e9, "tokens": 600, "seconds": 9}}
    policy = build_policy(rows, SETTINGS, probe=4, bins=2)
    assert policy.sample_flops == pytest.approx(2e9)  # from the largest pool
    assert (policy.table[1][16].strategy, policy.table[1][16].n) == ("majority", 16)
    assert policy.table[1][4].strategy == "majority" and policy.table[1][4].n == 1  # beam@4 costs 20 samples


def test_a_bin_does_not_follow_a_strategy_that_a_few_lucky_questions_favour() -> None:
    # Majority@4 is right on 6 of 10 questions in each bin; best-of-4 on 7 of the easy bin's and none of
    # the hard bin's: 0.70 against 0.60 where it looks best, 0.35 against 0.60 overall.
    rows = calibration_rows()
    for i, row in enumerate(rows):
        easy, k = i < 10, i % 10
        row["results"] = {"majority@4": {"correct": k < 6, "flops": 4e9, "tokens": 400, "seconds": 4},
                          "bon@4": {"correct": easy and k < 7, "flops": 4e9, "tokens": 400, "seconds": 4}}
    raw = build_policy(rows, SETTINGS | {"budgets": [4]}, probe=4, bins=2, prior=0)
    assert (raw.table[1][4].strategy, raw.table[1][4].accuracy) == ("bon", 0.7)
    shrunk = build_policy(rows, SETTINGS | {"budgets": [4]}, probe=4, bins=2, prior=10)
    assert (shrunk.table[1][4].strategy, shrunk.table[1][4].accuracy) == ("majority", 0.6)
    assert shrunk.table[2][4].strategy == "majority" and shrunk.settings["prior"] == 10


def test_a_policy_round_trips_and_bad_files_are_refused(tmp_path: Path) -> None:
    policy = build_policy(calibration_rows(), SETTINGS, probe=4, bins=2)
    policy.save(tmp_path / "p.json")
    assert Policy.load(tmp_path / "p.json") == policy
    (tmp_path / "old.json").write_text('{"version": 0}')
    with pytest.raises(BadParameter, match="version 0 policy"):
        Policy.load(tmp_path / "old.json")
    with pytest.raises(BadParameter, match="ponder allocate"):
        Policy.load(tmp_path / "missing.json")
    with pytest.raises(BadParameter, match="needs a run with a verifier"):
        build_policy(calibration_rows(), SETTINGS | {"verifier": None})


def hand_policy(easy: Choice, hard: Choice) -> Policy:
    return Policy("scripted", "scripted", 4, [0.5], 1.0, {1: {8: easy}, 2: {8: hard}}, {"width": 4})


def test_auto_probes_then_runs_what_the_policy_chose_reusing_the_probe() -> None:
    hard, easy = ScriptedVerifier({}, default=0.3), ScriptedVerifier({}, default=0.9)  # what the probes will score
    policy = hand_policy(Choice("majority", 8, 1.0, 8.0), Choice("beam", 8, 1.0, 12.0))
    easy_run = AutoStrategy(policy, n=8).run(Search(ScriptedGenerator(SPLIT), task("7"), None, easy))
    assert easy_run.settings["bin"] == 1 and easy_run.settings["choice"]["strategy"] == "majority"
    alone = make_strategy("majority", 8, seed=0).run(Search(ScriptedGenerator(SPLIT), task("7")))
    # The 4 probes and 4 more (not 12) are exactly the 8 samples majority-of-8 draws alone.
    assert sorted(c.text for c in easy_run.candidates) == sorted(c.text for c in alone.candidates)
    assert easy_run.answer == alone.answer and len(easy_run.candidates) == 8
    hard_run = AutoStrategy(policy, n=8).run(Search(ScriptedGenerator(SPLIT), task("7"), None, hard))
    assert hard_run.settings["bin"] == 2 and hard_run.settings["choice"]["strategy"] == "beam"
    assert hard_run.tree  # beam search ran, after the probe (charged to the same budget)
    assert hard_run.spend.generated_tokens > make_strategy("beam", 8, width=4).run(
        Search(ScriptedGenerator(SPLIT), task("7"), None, hard)).spend.generated_tokens


def test_auto_needs_a_policy_and_a_verifier() -> None:
    with pytest.raises(BadParameter, match="needs an allocation policy"):
        make_strategy("auto", 8)
    policy = hand_policy(Choice("majority", 8, 1.0, 8.0), Choice("majority", 8, 1.0, 8.0))
    with pytest.raises(BadParameter, match="needs a verifier"):
        make_strategy("auto", 8, policy=policy).run(Search(ScriptedGenerator(SPLIT), task("7")))


@pytest.mark.parametrize("chosen", [Choice("majority", 8, 1.0, 8.0), Choice("bon", 1, 1.0, 4.0),
                                    Choice("beam", 8, 1.0, 12.0)])
@pytest.mark.parametrize("question", [0, 3])
@pytest.mark.parametrize("budget", [1, 8])  # at 1, a single probe
@pytest.mark.parametrize("predictor", ["score", "agreement"])
def test_replaying_auto_on_a_grid_item_gives_what_running_it_gives(chosen: Choice, question: int,
                                                                   budget: int, predictor: str) -> None:
    from ponder.eval.allocate import replay
    from ponder.budget import Budget
    from ponder.search.base import Sampling
    from scripted import GOOD_STEPS
    from scripted_jobs import GRID, ScriptedEvalJob

    policy = Policy("scripted", "scripted", 4, [0.5], 1.0, {1: {8: chosen}, 2: {8: chosen}}, {"width": GRID.width},
                    predictor=predictor)
    row = ScriptedEvalJob()(f"{question}#1")
    replayed = replay(policy, row, budget)
    sampling = Sampling(temperature=GRID.temperature, max_tokens=GRID.max_tokens, seed=1)
    live = AutoStrategy(policy, budget, sampling).run(
        Search(ScriptedGenerator(SPLIT), task(question), Budget(), ScriptedVerifier(GOOD_STEPS)))
    assert replayed["choice"] == f"{chosen.strategy}@{chosen.n}" and replayed["bin"] == live.settings["bin"]
    assert replayed["answer"] == live.answer
    # The grid charges each budget the prompt once, which the scripted generator (no prefix sharing)
    # computes per sample: replay may overcharge auto here, never undercharge it; on the whole pool, exact.
    assert replayed["flops"] >= live.spend.flops
    if chosen.strategy == "majority":
        assert replayed["flops"] == pytest.approx(live.spend.flops)
        if budget == 8 and predictor == "score":  # only the 4 probes were judged: less than judging all 8
            assert row["results"]["majority@8"]["flops"] < replayed["flops"] < row["results"]["bon@8"]["flops"]
        elif budget == 8:  # by agreement nothing is judged
            assert replayed["flops"] == row["results"]["majority@8"]["flops"]


def test_folds_are_stable_and_split_questions_about_evenly() -> None:
    from ponder.eval.allocate import fold_of

    ids = [f"gsm_symbolic/{i}" for i in range(200)]
    folds = [fold_of(q, 2) for q in ids]
    assert folds == [fold_of(q, 2) for q in ids] and 80 < sum(folds) < 120


def test_each_question_is_judged_by_a_policy_calibrated_without_it() -> None:
    from ponder.eval.allocate import fold_of, with_auto
    from scripted_jobs import ScriptedEvalJob

    rows = [ScriptedEvalJob()(f"{i}#0") for i in range(8)]
    settings = {"model": "scripted", "verifier": "scripted", "budgets": [1, 4, 8], "width": 4}
    policies = [build_policy([r for r in rows if fold_of(r["question"], 2) != k], settings, probe=4, bins=2)
                for k in (0, 1)]
    held_out = with_auto(rows, policies[:1])
    assert {r["question"] for r in held_out} == {r["question"] for r in rows if fold_of(r["question"], 2) == 0}
    assert 0 < len(held_out) < len(rows)
    both = with_auto(rows, policies)
    assert len(both) == len(rows) and all({"auto@1", "auto@4", "auto@8"} <= set(r["results"]) for r in both)
    for row in both:  # whatever auto chose is a cell of the grid, and its answer is that cell's
        chosen = row["results"]["auto@8"]
        assert chosen["answer"] == row["results"][chosen["choice"]]["answer"]


def test_auto_without_a_policy_uses_the_one_shipped_for_the_model(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import ponder.search.auto
    from ponder.search import solve

    generator = ScriptedGenerator(SPLIT)
    monkeypatch.setattr(ponder.search.auto, "POLICIES", tmp_path)
    with pytest.raises(BadParameter, match=f"no allocation policy ships for {generator.info.name}.*--policy"):
        solve(generator, task("7"), "auto", 8)
    policy = Policy(generator.info.name, "scripted", 4, [-1.0], 1.0, {1: {8: Choice("majority", 8, 1.0, 8.0)}})
    policy.save(tmp_path / f"{generator.info.name}.json")
    monkeypatch.setattr("ponder.search.make_verifier", lambda name, judge: ScriptedVerifier({}, default=0.9))
    result = solve(generator, task("7"), "auto", 8)
    assert result.strategy == "auto" and result.settings["choice"]["strategy"] == "majority"


def test_ponder_eval_runs_auto_live_as_a_cell_of_its_grid(tmp_path: Path) -> None:
    from ponder.eval.allocate import with_auto
    from ponder.budget import Budget
    from ponder.eval.grid import GridSettings
    from ponder.search.base import Sampling
    from scripted import GOOD_STEPS
    from scripted_jobs import ScriptedEvalJob

    generator = ScriptedGenerator(SPLIT)
    policy = Policy(generator.info.name, "scripted", 4, [0.5], 1.0,
                    {1: {8: Choice("majority", 8, 1.0, 8.0)}, 2: {8: Choice("beam", 8, 1.0, 12.0)}}, {"width": 4})
    policy.save(tmp_path / "policy.json")
    grid = GridSettings(("majority", "bon", "auto"), (4, 8), "scripted", policy=str(tmp_path / "policy.json"))
    assert grid.runs() == ["majority@4", "majority@8", "bon@4", "bon@8", "auto@4", "auto@8", "pass@4", "pass@8"]
    row = ScriptedEvalJob(grid)("3#1")
    live = AutoStrategy(policy, 8, Sampling(temperature=grid.temperature, max_tokens=grid.max_tokens, seed=1)).run(
        Search(ScriptedGenerator(SPLIT), task(3), Budget(), ScriptedVerifier(GOOD_STEPS)))
    assert row["results"]["auto@8"]["answer"] == live.answer
    assert row["results"]["auto@8"]["flops"] == pytest.approx(live.spend.flops)
    # A grid that evaluated a policy calibrates the next one from its strategies, never from auto's runs.
    rows = [ScriptedEvalJob(grid)(f"{i}#0") for i in range(6)]
    settings = {"model": generator.info.name, "verifier": "scripted", "budgets": [4, 8], "width": 4}
    made = build_policy(rows, settings, probe=4, bins=2)
    assert all(c.strategy != "auto" for levels in made.table.values() for c in levels.values())
    with pytest.raises(BadParameter, match="evaluated auto live"):  # a replay would overwrite its cells
        with_auto(rows, [made])
    with pytest.raises(BadParameter, match="unknown strategy 'telepathy'.*auto"):
        GridSettings(("telepathy",), (4,))


def test_the_policy_shipped_for_the_default_model_is_usable_and_calibrated_off_its_evaluation_fold() -> None:
    from ponder.eval.allocate import fold_of
    from ponder.search.auto import POLICIES, shipped_policy
    from ponder.models.registry import DEFAULT_MODEL
    from ponder.prm.verifier import HEADS

    policy = shipped_policy(DEFAULT_MODEL)
    assert policy.model == DEFAULT_MODEL and (POLICIES / f"{DEFAULT_MODEL}.json").is_file()
    assert (HEADS / f"{DEFAULT_MODEL}.{policy.verifier}.safetensors").is_file()  # its verifier ships too
    assert sorted(policy.table) == [1, 2, 3, 4, 5] and len(policy.thresholds) == 4
    # Made with `--folds 2 --hold-out 0`: the README judges it on fold 0, so it never saw one of those.
    assert policy.calibrated_on and all(fold_of(q, 2) == 1 for q in policy.calibrated_on)


def test_the_policy_chooses_among_variants_of_a_strategy_and_auto_runs_the_one_chosen() -> None:
    rows = calibration_rows()
    for i, row in enumerate(rows):  # on the hard half, only beam with 2 children a beam finds the answer
        row["results"]["beam:width=2@16"] = {"correct": i >= 10, "flops": 16e9 + 2e9, "tokens": 1600, "seconds": 16}
        row["results"]["beam@16"]["correct"] = False
    roomy = build_policy(rows, SETTINGS | {"budgets": [4, 64]}, probe=4, bins=2, prior=0)
    assert (roomy.table[2][64].strategy, roomy.table[2][64].n) == ("beam:width=2", 16)
    assert roomy.table[1][64].strategy == "majority"

    def tree(run) -> list[tuple]:
        return [(node.parent, node.depth, node.text, node.state) for node in run.tree]

    hard = ScriptedVerifier({}, default=0.3)
    policy = hand_policy(Choice("majority", 8, 1.0, 8.0), Choice("beam:width=2", 8, 1.0, 12.0))
    chosen = AutoStrategy(policy, n=8).run(Search(ScriptedGenerator(SPLIT), task("7"), None, hard))
    assert chosen.settings["choice"]["strategy"] == "beam:width=2"
    alone = {w: make_strategy("beam", 8, width=w).run(Search(ScriptedGenerator(SPLIT), task("7"), None, hard))
             for w in (2, 4)}
    assert tree(chosen) == tree(alone[2]) != tree(alone[4])  # width 2, not the policy's grid width of 4


def test_difficulty_can_be_predicted_by_the_probes_agreement_where_the_verifier_cannot_tell(tmp_path: Path) -> None:
    from ponder.search.auto import predicted_difficulty

    assert predicted_difficulty([("7", [0.2, 0.9]), ("7", [0.1]), ("8", []), (None, [])], "agreement") == 0.5
    assert predicted_difficulty([("7", [0.2, 0.9]), ("7", [0.1]), ("8", []), (None, [])], "score") == 0.5
    assert predicted_difficulty([(None, [])], "agreement") == 0.0
    with pytest.raises(BadParameter, match="unknown difficulty predictor 'vibes': use score or agreement"):
        predicted_difficulty([], "vibes")
    rows = calibration_rows()
    for i, row in enumerate(rows):  # every probe scored alike; the easy half's agree, the hard half's do not
        row["pool"] = [{"answer": "7" if i < 10 else str(k), "correct": i < 10, "step_scores": [0.5]}
                       for k in range(16)]
    by_score = build_policy(rows, SETTINGS, probe=4, bins=2)
    assert len(set(by_score.thresholds)) == 1 and by_score.bin_of(0.5) == 1  # one bin holds them all
    by_agreement = build_policy(rows, SETTINGS, probe=4, bins=2, predictor="agreement")
    assert by_agreement.thresholds == [1.0] and by_agreement.predictor == "agreement"
    assert by_agreement.table[1][4].strategy == "majority"  # right on the easy half, where probes agree
    by_agreement.save(tmp_path / "p.json")
    assert Policy.load(tmp_path / "p.json") == by_agreement
