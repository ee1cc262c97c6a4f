"""The evaluation harness: the grid, its reuse of samples, resuming, Ray, metrics and the report."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cli import error_line, ponder
from ponder.errors import BadParameter
from ponder.eval.grid import GridSettings
from ponder.eval.metrics import frontier, oracle_difficulty, quantile_bins, summarize
from ponder.eval.report import Run, build_report, write_report
from ponder.jobs import RunStore, run_all
from ponder.search import Search, make_strategy
from ponder.stats import bootstrap_interval
from scripted import ScriptedGenerator, ScriptedVerifier
from scripted import GOOD_STEPS, SPLIT
from scripted_jobs import GRID, ScriptedEvalJob, task

TESTS = Path(__file__).parent
KEYS = [f"{q}#{s}" for q in range(10) for s in range(2)]


def test_the_grid_reads_pooled_strategies_off_one_pool_without_changing_a_result() -> None:
    item = ScriptedEvalJob()("0#3")
    assert set(item["results"]) == set(GRID.runs()) - {"greedy@1"}  # greedy runs under seed 0 only
    assert "beam@1" not in item["results"] and len(item["pool"]) == 8  # 1 beam cannot split 4 ways
    assert ScriptedEvalJob()("0#0")["results"]["greedy@1"]["answer"] == "6"
    for name in ("majority", "bon", "weighted_bon"):
        for n in (1, 4, 8):
            alone = make_strategy(name, n, seed=3).run(Search(ScriptedGenerator(SPLIT), task(0), None,
                                                             ScriptedVerifier(GOOD_STEPS)))
            assert item["results"][f"{name}@{n}"]["answer"] == alone.answer, (name, n)
    pooled = [item["results"][f"majority@{n}"] for n in (1, 4, 8)]
    assert pooled[0]["tokens"] < pooled[1]["tokens"] < pooled[2]["tokens"]
    assert item["results"]["bon@4"]["flops"] > item["results"]["majority@4"]["flops"]  # the verifier's share
    assert item["results"]["pass@8"]["correct"] and item["results"]["beam@8"]["answer"] == "7"


def test_bad_grids_are_refused_in_one_line() -> None:
    with pytest.raises(BadParameter, match="unknown strategy 'telepathy'"):
        GridSettings(("telepathy",), (1,))
    with pytest.raises(BadParameter, match="need a verifier"):
        GridSettings(("bon",), (4,))
    with pytest.raises(BadParameter, match="positive"):
        GridSettings(("majority",), (0, 4))
    with pytest.raises(BadParameter, match="temperature must be 0"):
        GridSettings(("majority",), (4,), temperature=-1)


def test_ponder_eval_refuses_bad_verifiers_and_policies_before_loading_anything(tmp_path: Path) -> None:
    args = ["eval", "--model", "no-such-model", "--task", "chain_sum", "--strategies", "bon", "--budgets", "4",
            "--out", str(tmp_path / "run.db")]
    assert "unknown verifier 'oracle'" in error_line(ponder(*args, "--verifier", "oracle"))
    auto = ["--strategies", "auto", "--policy", str(tmp_path / "missing.json")]
    assert "ponder allocate" in error_line(ponder(*args[:-6], *auto, *args[-4:]))  # a policy it cannot read
    assert not (tmp_path / "run.db").exists()


def test_an_evaluation_killed_at_a_random_point_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    whole = RunStore(tmp_path / "whole.db", {"grid": 1})
    run_all(KEYS, ScriptedEvalJob(), whole)
    script = (f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
              "from ponder.jobs import RunStore, run_all\nfrom scripted_jobs import ScriptedEvalJob\n"
              f"run_all({KEYS!r}, ScriptedEvalJob(pause=0.05), "
              f"RunStore({str(tmp_path / 'killed.db')!r}, {{'grid': 1}}))")
    child = subprocess.Popen([sys.executable, "-c", script])
    time.sleep(random.uniform(2.0, 3.0))  # imports take about 2 s; items 0.05 s each
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    subprocess.run([sys.executable, "-c", script], check=True)
    resumed = RunStore.existing(tmp_path / "killed.db").items()
    assert [k for k, _ in resumed] == sorted({k for k, _ in resumed}, key=KEYS.index)  # each once
    assert dict(resumed) == dict(whole.items())


def test_the_ray_path_gives_what_the_local_path_gives(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    import scripted
    import scripted_jobs

    local = RunStore(tmp_path / "local.db", {"grid": 1})
    run_all(KEYS[:6], ScriptedEvalJob(), local)
    for module in (scripted, scripted_jobs):  # Ray workers cannot import the tests: ship them by value
        ray.cloudpickle.register_pickle_by_value(module)
    try:
        remote = RunStore(tmp_path / "ray.db", {"grid": 1})
        assert run_all(KEYS[:6], ScriptedEvalJob(), remote, ray_address="local") == 6
    finally:
        for module in (scripted, scripted_jobs):
            ray.cloudpickle.unregister_pickle_by_value(module)
    assert dict(remote.items()) == dict(local.items())


def test_bootstrap_intervals_cover_a_known_mean_at_the_expected_width() -> None:
    rng = random.Random(1)
    covered = 0
    for trial in range(40):
        values = [float(rng.random() < 0.7) for _ in range(400)]
        low, high = bootstrap_interval(values, seed=trial)
        covered += low <= 0.7 <= high
        assert 0.06 < high - low < 0.11  # 2 x 1.96 x sqrt(0.21 / 400) = 0.090
    assert covered >= 34  # 95% coverage: 38 of 40 expected


def rows(correct: dict[str, list[bool]], flops: float = 1e9) -> list[dict]:
    """Grid items where each question's pool has the given outcomes and majority@4 is right iff most are."""
    return [{"question": q, "seed": 0, "pool": [{"correct": c} for c in outcomes],
             "results": {"majority@4": {"correct": sum(outcomes) > len(outcomes) / 2, "flops": flops, "tokens": 10,
                                        "seconds": 1.0},
                         "greedy@1": {"correct": outcomes[0], "flops": flops / 4, "tokens": 3, "seconds": 0.2}}}
            for q, outcomes in correct.items()]


def test_oracle_difficulty_bins_easiest_first_and_the_frontier() -> None:
    data = rows({f"q{i}": [j < i for j in range(10)] for i in range(10)})  # q9: 9 of 10 right; q0: none
    difficulty = oracle_difficulty(data)
    assert difficulty["q9"] == 0.9 and difficulty["q0"] == 0.0
    bins = quantile_bins(difficulty, 5)
    assert bins["q9"] == bins["q8"] == 1 and bins["q0"] == bins["q1"] == 5
    cells = summarize(data, bins)
    overall = {c.key: c for c in cells if c.difficulty_bin is None}
    assert overall["majority@4"].accuracy == 0.4 and overall["majority@4"].questions == 10
    assert {c.accuracy for c in cells if c.key == "majority@4" and c.difficulty_bin == 1} == {1.0}
    assert [c.key for c in frontier([c for c in cells if c.difficulty_bin is None])] == ["greedy@1"]
    # greedy (0.9 of questions right first time) costs a quarter: majority never beats it here


def test_the_report_draws_every_bin_and_writes_a_table(tmp_path: Path) -> None:
    main = Run("small", rows({f"q{i}": [j < i for j in range(10)] for i in range(10)}), {"tasks": "t"})
    large = Run("large", rows({f"q{i}": [True] * 10 for i in range(10)}, flops=3e9), {"tasks": "t"})
    page, table = build_report(main, [large], bins=5)
    assert page.count("<img src='data:image/png;base64,") == 6 and "<h1>" in page
    assert "| large | majority | 4 | 1.00" in table and "| small | greedy | 1 |" in table
    assert "equal inference FLOPs" not in table  # no auto cells: nothing to compare at equal FLOPs
    for row in main.rows:
        row["results"]["auto@4"] = row["results"]["majority@4"]
    _, table = build_report(main, [large], bins=5)
    assert "At equal inference FLOPs" in table and "| 0.16 |" in table
    html_path, md_path = write_report(main, [], tmp_path / "r.html", figures=tmp_path / "figures")
    assert html_path.read_text().startswith("<!doctype html>") and md_path.read_text().startswith("| run |")
    pngs = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert pngs == ["all.png", *(f"bin-{b}.png" for b in range(1, 6))]
    assert all((tmp_path / "figures" / name).read_bytes().startswith(b"\x89PNG") for name in pngs)
    assert not list(tmp_path.glob("**/*.partial"))


def test_the_equal_flops_comparison_takes_the_largest_budget_that_fits() -> None:
    from ponder.eval.compare import equal_flops_table, largest_within, parameters, pretraining_table, token_multiplier
    from ponder.eval.metrics import Cell

    def cell(strategy: str, n: int, accuracy: float, flops: float, per_token: float) -> Cell:
        return Cell(strategy, n, accuracy, accuracy, accuracy, flops, flops / per_token, 1.0, 10)

    small = [cell("auto", n, acc, n * 1e9, 1e9) for n, acc in ((1, 0.3), (4, 0.6), (16, 0.5))]  # N = 0.5e9
    large = [cell("greedy", 1, 0.5, 3e9, 3e9), cell("majority", 4, 0.7, 12e9, 3e9)]  # N = 1.5e9
    assert parameters(small) == pytest.approx(0.5e9) and parameters(large) == pytest.approx(1.5e9)
    assert largest_within(small, "auto", 3e9, None).n == 1  # auto@4 costs 4e9: it does not fit
    assert largest_within(small, "auto", 20e9, None).n == 16  # the largest that fits, not the most accurate
    table = equal_flops_table(small, large, "0.5B", "1.5B", bins=1).splitlines()
    assert "| all | greedy@1 | 0.00 | 0.50 | auto@1 | 0.00 | 0.30 | -0.20 |" in table
    assert "| all | majority@4 | 0.01 | 0.70 | auto@4 | 0.00 | 0.60 | -0.10 |" in table
    # R -> infinity: k -> N_L / N_S = 3; at R = 22 a little more; tiny R: far more.
    assert token_multiplier(0.5e9, 1.5e9, 22.0) == pytest.approx(3 + 3 * (1.5 - 0.5) / (22 * 0.5))
    assert token_multiplier(0.5e9, 1.5e9, 0.16) > 20
    views = pretraining_table(small, large, "0.5B", "1.5B", bins=1)
    # R = 22: k = 3.3, so 3.3 x 1.5B greedy's 3e9 FLOPs at a third of the parameters: 3.3e9, auto@1 fits.
    assert "| 22 | 3.3 | all | 0.50 | auto@1 | 0.30 | -0.20 |" in views
    assert "| 0.79 | 10.6 | all | 0.50 | auto@4 | 0.60 | +0.10 |" in views


def test_the_search_benchmark_writes_the_store_ponder_eval_would_continue(tmp_path: Path) -> None:
    import argparse
    import importlib.util

    from ponder.eval.grid import EvalJob
    from ponder.tasks import load_tasks
    from reference import ponder_model

    ponder_model("qwen2.5-coder-0.5b-instruct")  # its parameter count prices the tokens
    spec = importlib.util.spec_from_file_location("bench_search", Path(__file__).parents[1] / "benchmarks" /
                                                  "bench_search.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    question = load_tasks("gsm_symbolic", 100, seed=2024)[0]

    def entry(correct: bool, flops: float) -> dict:
        return {"answer": question.reference if correct else "0", "correct": correct, "flops": flops, "seconds": 1.0}

    row = {"id": question.id, "prompt": [1] * 20, "greedy": entry(True, 1e11),
           "samples": [{"text": "x", "tokens": [1] * 10, "answer": question.reference if i % 2 else "0",
                        "step_scores": [0.5]} for i in range(16)]}
    for n in bench.SIZES:
        row |= {f"majority@{n}": entry(True, n * 1e10), f"bon@{n}": entry(False, n * 1.5e10),
                f"weighted_bon@{n}": entry(True, n * 1.5e10), f"pass@{n}": entry(True, n * 1e10)}
    row |= {"beam@4": entry(False, 5e11), "beam@16": entry(True, 2e12)}
    args = argparse.Namespace(model="qwen2.5-coder-0.5b-instruct", questions=100, verifier="generative-outcome",
                              temperature=0.4, head=None)
    assert bench.write_grid([row], args, tmp_path / "g.db") == 1
    assert bench.write_grid([row], args, tmp_path / "g.db") == 1  # written again: nothing twice
    grid = GridSettings(("greedy", "majority", "bon", "weighted_bon", "beam"), (1, 4, 16), "generative-outcome")
    job = EvalJob("qwen2.5-coder-0.5b-instruct", "native", "gsm_symbolic", 100, 2024, grid)
    with RunStore(tmp_path / "g.db", job.settings(seeds=1)) as store:  # what `ponder eval` opens: same settings
        [(key, item)] = store.items()
    assert key == job.keys(1)[0] and set(grid.runs()) == set(item["results"])
    assert item["results"]["bon@16"]["flops"] > item["results"]["majority@16"]["flops"]  # judging is charged
    assert sum(s["correct"] for s in item["pool"]) == 8

    # Judged again by a trained head, from the states stored with the samples: here one that reads the
    # first coordinate, which is positive exactly in the right samples.
    from ponder.models.loader import load
    from ponder.prm.features import encode_states
    from ponder.prm.head import ValueHead, fingerprint, save_head

    model = load("qwen2.5-coder-0.5b-instruct").model
    head = ValueHead(model.cfg.dim, 0)
    with torch.no_grad():
        head.net.weight.zero_()
        head.net.weight[0, 0], head.net.bias[0] = 10.0, 0.0
    save_head(tmp_path / "h.safetensors", head, {"kind": "prm", "base": {"model": args.model,
                                                                         "fingerprint": fingerprint(model)}})
    for i, sample in enumerate(row["samples"]):
        state = torch.zeros(1, model.cfg.dim)
        state[0, 0] = 1.0 if i % 2 else -1.0
        sample |= {"step_ends": [9], "states": encode_states(state)}
    [judged] = bench.judged_by_head([row], f"prm:{tmp_path / 'h.safetensors'}", args.model)
    assert judged["bon@16"]["correct"] and judged["weighted_bon@16"]["correct"] and "beam@16" not in judged
    assert judged["bon@16"]["flops"] == judged["majority@16"]["flops"]  # it rode along: no judging to pay
    assert judged["samples"][1]["step_scores"][0] > 0.99 > 0.01 > judged["samples"][0]["step_scores"][0]
    args.head = f"prm:{tmp_path / 'h.safetensors'}"
    assert bench.write_grid([judged], args, tmp_path / "prm.db") == 1
    grid = GridSettings(("greedy", "majority", "bon", "weighted_bon"), (1, 4, 16), args.head)
    job = EvalJob("qwen2.5-coder-0.5b-instruct", "native", "gsm_symbolic", 100, 2024, grid)
    with RunStore(tmp_path / "prm.db", job.settings(seeds=1)) as store:
        [(_, item)] = store.items()
    assert set(grid.runs()) == set(item["results"]) and item["results"]["bon@16"]["correct"]


@pytest.mark.slow
def test_eval_report_allocate_and_auto_on_real_weights(tmp_path: Path) -> None:
    from reference import ponder_model

    ponder_model("smollm2-135m-instruct")
    store, policy = tmp_path / "run.db", tmp_path / "policy.json"
    args = ["eval", "--model", "smollm2-135m-instruct", "--task", "chain_sum:min_terms=2,max_terms=2,max_digits=1",
            "--size", "2", "--strategies", "greedy,majority,bon", "--verifier", "arithmetic", "--budgets", "1,2",
            "--max-tokens", "32", "--out", str(store)]
    done = ponder(*args)
    assert done.returncode == 0, done.stderr
    assert "2 items (2 now)" in done.stdout
    items = RunStore.existing(store).items()
    assert sorted(k.rsplit("/", 1)[-1] for k, _ in items) == ["0#0", "1#0"]
    assert {"greedy@1", "majority@2", "bon@2", "pass@2"} <= set(items[0][1]["results"])
    assert "budgets" in error_line(ponder(*args[:-4], "--budgets", "1,x", *args[-2:]))
    done = ponder("report", str(store))
    assert done.returncode == 0, done.stderr
    assert store.with_suffix(".html").is_file() and "| smollm2-135m-instruct | majority | 2 |" in done.stdout
    done = ponder("allocate", str(store), "--out", str(policy), "--probe", "1", "--bins", "2")
    assert done.returncode == 0 and "bin 2: n=1:" in done.stdout, done.stderr
    assert "used to calibrate" in error_line(ponder("report", str(store), "--policy", str(policy)))
    assert "--hold-out must be" in error_line(ponder("allocate", str(store), "--out", str(policy), "--hold-out", "2",
                                                     "--folds", "2"))
    solved = ponder("solve", "What is 2 + 3?", "--model", "smollm2-135m-instruct", "--strategy", "auto", "--n", "2",
                    "--policy", str(policy), "--max-tokens", "32", "--json")
    assert solved.returncode == 0, solved.stderr
    assert '"strategy": "auto"' in solved.stdout and '"bin":' in solved.stdout
    auto_run = tmp_path / "auto.db"  # auto evaluated live on other questions, as a cell of a grid
    done = ponder(*args[:7], "--task-seed", "7", "--strategies", "majority,auto", "--policy", str(policy),
                  "--budgets", "2", "--max-tokens", "32", "--out", str(auto_run))
    assert done.returncode == 0, done.stderr
    assert all({"majority@2", "auto@2"} <= set(item["results"]) for _, item in RunStore.existing(auto_run).items())


def test_items_at_once_give_the_answers_and_samples_of_items_one_by_one(tmp_path: Path) -> None:
    from reference import ponder_model

    ponder_model("smollm2-135m-instruct")
    args = ["eval", "--model", "smollm2-135m-instruct", "--task", "gsm_symbolic", "--size", "4", "--strategies",
            "greedy,majority,bon", "--verifier", "arithmetic", "--budgets", "3", "--max-tokens", "40"]
    for name, concurrent in (("alone", "1"), ("together", "3")):
        done = ponder(*args, "--concurrent", concurrent, "--out", str(tmp_path / f"{name}.db"))
        assert done.returncode == 0, done.stderr
    alone, together = (dict(RunStore.existing(tmp_path / f"{name}.db").items()) for name in ("alone", "together"))
    assert alone.keys() == together.keys() and len(alone) == 4
    for key, item in alone.items():  # batched with other questions' sequences, each answer is the same
        other = together[key]
        assert [s["text"] for s in item["pool"]] == [s["text"] for s in other["pool"]]
        for cell, entry in item["results"].items():
            theirs = other["results"][cell]
            assert (entry["answer"], entry["correct"], entry.get("text")) == \
                (theirs["answer"], theirs["correct"], theirs.get("text"))
    assert "--concurrent" in error_line(ponder(*args, "--concurrent", "2", "--backend", "llamacpp", "--out",
                                               str(tmp_path / "x.db")))


def test_a_grid_runs_variants_of_a_strategy_apart_each_as_it_runs_alone() -> None:
    grid = GridSettings(("majority", "beam", "beam:width=2", "revisions", "revisions:length=2"), (2, 4),
                        verifier="scripted")
    assert grid.runs() == ["majority@2", "majority@4", "beam@4", "beam:width=2@2", "beam:width=2@4", "revisions@4",
                           "revisions:length=2@2", "revisions:length=2@4", "pass@2", "pass@4"]
    item = ScriptedEvalJob(grid)("3#1")
    for spec, n in (("beam:width=2", 4), ("beam", 4), ("revisions:length=2", 4)):
        tree = {"width": GRID.width} if spec.startswith("beam") else {}
        alone = make_strategy(spec, n, seed=1, temperature=grid.temperature, max_tokens=grid.max_tokens,
                              **tree).run(
            Search(ScriptedGenerator(SPLIT), task(3), None, ScriptedVerifier(GOOD_STEPS)))
        assert item["results"][f"{spec}@{n}"]["answer"] == alone.answer
        assert item["results"][f"{spec}@{n}"]["flops"] == pytest.approx(alone.spend.flops), spec
    with pytest.raises(BadParameter, match="only the tree strategies, revisions and confidence take settings"):
        GridSettings(("majority:temperature=1",), (4,))
    with pytest.raises(BadParameter, match="wdith"):
        GridSettings(("beam:wdith=2",), (4,), verifier="scripted")


def test_auto_is_set_against_best_of_n_at_its_largest_n_per_bin() -> None:
    from ponder.eval.compare import auto_against_best_of_n
    from ponder.eval.metrics import Cell

    def cell(strategy: str, n: int, accuracy: float, difficulty_bin: int | None = None) -> Cell:
        return Cell(strategy, n, accuracy, accuracy, accuracy, n * 1e9 + 1e9, n * 100.0, 1.0, 10, difficulty_bin)

    cells = [cell("bon", 4, 0.5), cell("bon", 16, 0.6), cell("auto", 4, 0.6), cell("auto", 16, 0.7),
             cell("bon", 16, 0.9, 1), cell("auto", 4, 0.9, 1)]
    table = auto_against_best_of_n(cells, bins=1).splitlines()
    assert table[0] == "| baseline | bin | its accuracy | auto@4 | auto@16 |"
    assert "| bon@16 | all | 0.60 | 0.60 (+0.00) at 0.29 | 0.70 (+0.10) at 1.00 |" in table
    assert "| bon@16 | 1 | 0.90 | 0.90 (+0.00) at 0.29 |  |" in table  # auto@16 absent in that bin
    assert not any(line.startswith("| weighted_bon") for line in table)  # no such cells: no rows


def test_the_report_links_each_question_to_a_page_of_its_search_tree(tmp_path: Path) -> None:
    from scripted_jobs import ScriptedEvalJob

    rows = [ScriptedEvalJob()(f"{q}#0") for q in range(3)]
    assert all(row["results"]["beam@8"]["tree"] for row in rows)  # tree strategies keep their trees
    page, _ = write_report(Run("scripted", rows, {"model": "scripted"}), [], tmp_path / "run.html")
    trees = sorted((tmp_path / "run-trees").glob("*.html"))
    assert len(trees) == 3 * sum(1 for cell in rows[0]["results"] if "tree" in rows[0]["results"][cell])
    text = page.read_text()
    assert "Search trees, question by question" in text and all(f"run-trees/{t.name}" in text for t in trees)
    one = trees[0].read_text()
    assert '"tree": [' in one and '"state": "' in one and "render(" in one  # the page draws the stored tree
