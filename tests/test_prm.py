"""The process reward model: Monte Carlo labels, the head, training, and the head as a verifier."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY
from ponder.budget import Budget
from ponder.engine.native import NativeEngine
from ponder.engine.protocol import Sequence
from ponder.engine.sampling import SamplingParams
from ponder.errors import BadParameter
from ponder.jobs import RunStore, run_all
from ponder.models.loader import LoadedModel
from ponder.prm.evaluate import answer_auc, held_out, selection_accuracy
from ponder.prm.features import decode_states, encode_states, fill_missing_states, fill_states, training_rows
from ponder.prm.head import ValueHead, fingerprint, load_head, save_head
from ponder.prm.label import LabelSettings, label_question
from ponder.prm.train import TrainSettings, auc, cross_validate, train_head
from ponder.verify.base import step_token_ends
from ponder.prm.verifier import LearnedVerifier
from ponder.tasks import EVALUATION_SETS, load_tasks
from scripted_jobs import TREE, ScriptedLabelJob, task
from scripted import ScriptedGenerator
from tiny_gguf import random_model

TESTS = Path(__file__).parent


def test_labels_are_the_exact_fractions_of_rollouts_that_reach_the_answer() -> None:
    result = label_question(ScriptedGenerator(TREE, round_robin=True), task(0), LabelSettings(samples=2, rollouts=3))
    first, second = result["samples"]  # fork 0 takes "a" then the first "7"; fork 1 takes "b" then "8"
    assert first["text"] == "a\n\nThe answer is 7." and second["text"] == "b\n\nThe answer is 8."
    assert first["labels"] == [2 / 3, 1.0] and second["labels"] == [0.0, 0.0]
    assert first["rollouts_correct"] == [[True, True, False]] and first["correct"] and not second["correct"]
    assert first["step_ends"] == [2, len(first["tokens"]) - 1]  # the token that closes "a\n\n", then the last
    assert result["spend"]["generated_tokens"] > 0 and "states" not in first  # a scripted model has no states


def test_a_labelling_run_killed_and_resumed_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    settings = LabelSettings(samples=2, rollouts=3)
    keys = [str(i) for i in range(24)]
    whole = RunStore(tmp_path / "whole.db", {"run": 1})
    run_all(keys, ScriptedLabelJob(settings), whole)
    script = (f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
              "from ponder.jobs import RunStore, run_all\nfrom ponder.prm.label import LabelSettings\n"
              "from scripted_jobs import ScriptedLabelJob\n"
              f"run_all({keys!r}, ScriptedLabelJob(LabelSettings(samples=2, rollouts=3), pause=0.1), "
              f"RunStore({str(tmp_path / 'killed.db')!r}, {{'run': 1}}))\n")
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if (tmp_path / "killed.db").exists() and len(RunStore.existing(tmp_path / "killed.db")) >= 3:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    stored = len(RunStore.existing(tmp_path / "killed.db"))
    assert 3 <= stored < len(keys)
    subprocess.run([sys.executable, "-c", script.replace("pause=0.1", "pause=0.0")], check=True)
    assert RunStore.existing(tmp_path / "killed.db").items() == whole.items()


def test_training_on_a_separable_set_reaches_an_auc_above_0_95() -> None:
    torch.manual_seed(0)
    x = torch.randn(1500, 32)
    y = (x @ torch.randn(32) > 0).float()
    head, metrics = train_head(x, y, [f"q{i // 10}" for i in range(len(y))], TrainSettings(hidden=32))
    assert metrics["val_auc"] > 0.95 and metrics["val_rows"] > 0
    assert auc(head(x), y) > 0.95
    shuffled = y[torch.randperm(len(y))]  # no signal: the same routine must not find one
    _, chance = train_head(x, shuffled, [f"q{i // 10}" for i in range(len(y))], TrainSettings(hidden=32))
    assert chance["val_auc"] < 0.65
    with pytest.raises(BadParameter, match="all 1500 labels are 0: nothing to tell apart"):  # a hard set's labels
        train_head(x, torch.zeros(len(y)), [f"q{i // 10}" for i in range(len(y))])
    folds, stops = cross_validate(x, y, [f"q{i // 10}" for i in range(len(y))], 3, TrainSettings(hidden=32))
    assert len(folds) == len(stops) == 3 and min(folds) > 0.95 and min(stops) >= 1
    noise, _ = cross_validate(x, shuffled, [f"q{i // 10}" for i in range(len(y))], 3, TrainSettings(hidden=32))
    assert max(noise) < 0.65
    epochs = sorted(stops)[1]  # as `prm train --folds` does: every question, the folds' median epochs
    refit, metrics = train_head(x, y, [f"q{i // 10}" for i in range(len(y))], TrainSettings(hidden=32), epochs)
    assert metrics["epochs"] == epochs and metrics["train_rows"] == len(y) and "val_auc" not in metrics
    assert auc(refit(x), y) > 0.95
    with pytest.raises(BadParameter, match="cannot cross-validate 3 questions over 2 folds"):
        cross_validate(x, y, ["q0", "q1", "q2"] * 500, 2)


def test_states_round_trip_and_training_rows_follow_the_kind() -> None:
    states = torch.randn(3, 8)
    back = decode_states(encode_states(states), 8)
    torch.testing.assert_close(back, states.half().float())
    result = {"id": "q", "samples": [{"step_ends": [1, 2, 4], "labels": [0.5, 1.0, 1.0], "correct": True,
                                      "states": encode_states(states)}]}
    x, y, groups = training_rows([result], "prm", 8)
    assert x.shape == (3, 8) and y.tolist() == [0.5, 1.0, 1.0] and groups == ["q"] * 3
    x, y, _ = training_rows([result], "orm", 8)
    assert x.shape == (1, 8) and y.tolist() == [1.0]
    with pytest.raises(BadParameter, match="without states"):
        training_rows([{"id": "q", "samples": [{"step_ends": [0], "labels": [1.0], "correct": True}]}], "prm", 8)


def test_samples_labelled_without_states_get_them_from_the_native_engine(tiny: LoadedModel) -> None:
    engine = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    prompt, tokens = tuple(range(10, 30)), tuple(range(40, 52))
    result = {"id": "q", "prompt": list(prompt), "samples": [
        {"step_ends": [3, 11], "tokens": list(tokens), "labels": [0.5, 1.0], "correct": True},
        {"step_ends": [], "tokens": [], "labels": [], "correct": False}]}  # no steps: nothing to fill
    restored = json.loads(json.dumps(result))  # as from a snapshot in evidence/: no states
    assert fill_states([result], engine) == 1 and fill_states([result], engine) == 0
    assert fill_missing_states([result], tiny, "tiny") == 0  # nothing missing: no engine is made
    assert fill_missing_states([restored], tiny, "tiny") == 1 and "states" in restored["samples"][0]
    x, y, _ = training_rows([result], "prm", tiny.config.dim)
    fresh = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    expected = fresh.states([prompt + tokens[:4], prompt + tokens])
    assert y.tolist() == [0.5, 1.0]
    torch.testing.assert_close(x, expected.half().float(), atol=2e-3, rtol=2e-3)


def test_step_auc_leaves_out_held_out_questions_that_were_trained_on(tmp_path: Path) -> None:
    def question(prompt: list[int]) -> dict:
        return {"id": str(prompt), "prompt": prompt, "samples": []}

    with RunStore(tmp_path / "train.db", {"labels": "train"}) as store:
        store.put("a", question([1, 2]))
        store.put("b", question([3, 4]))
    kept, note = held_out([question([3, 4]), question([5, 6])], [str(tmp_path / "train.db")])
    assert [r["prompt"] for r in kept] == [[5, 6]] and note == "1 questions, 1 trained on left out"
    with pytest.raises(BadParameter, match="distant --seed"):
        held_out([question([1, 2])], [str(tmp_path / "train.db")])
    kept, note = held_out([question([1, 2])], [str(tmp_path / "gone.db")])
    assert len(kept) == 1 and "unchecked" in note


def test_a_head_trained_for_another_model_is_refused(tiny: LoadedModel, tmp_path: Path) -> None:
    other = random_model(TINY["qwen2-bias"])  # same shape, other weights
    head = ValueHead(tiny.config.dim, 8)
    save_head(tmp_path / "head.safetensors", head, {"kind": "prm", "base": {"model": "tiny", "fingerprint":
                                                                            fingerprint(tiny.model)}})
    loaded, card = load_head(tmp_path / "head.safetensors", tiny.model)
    assert card["kind"] == "prm" and card["hidden"] == 8
    with pytest.raises(BadParameter, match="trained on the states of tiny, not of this model"):
        load_head(tmp_path / "head.safetensors", other)
    with pytest.raises(BadParameter, match="train one"):
        load_head(tmp_path / "missing.safetensors")
    assert not list(tmp_path.glob("*.partial"))


def test_the_head_reads_the_states_generation_computed_instead_of_a_second_pass(tiny: LoadedModel,
                                                                               tmp_path: Path) -> None:
    head = ValueHead(tiny.config.dim, 8)
    torch.nn.init.normal_(head.net[0].weight, std=0.5)  # scores that vary with the state
    riding = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    verifier = LearnedVerifier(head, riding)
    [samples] = riding.sample([list(range(10, 40))], 3, SamplingParams(1.0, max_tokens=24, seed=1))
    budget = Budget()
    read = verifier.score(task(0), samples, budget)
    assert budget.spent.verifier_tokens == 0 and verifier.separate_pass_tokens == 0
    apart = LearnedVerifier(head, NativeEngine(tiny, cache_bytes=8 << 20, block_size=4), ride_along=False)
    computed = apart.score(task(0), [Sequence(s.prompt, s.tokens, text=s.text) for s in samples], budget)
    assert budget.spent.verifier_tokens > 0 and apart.separate_pass_tokens > 0
    # A separate pass computes a candidate once, not each step's prefix anew: beyond the whole sequence,
    # at most a partial block (4 tokens here) again for each step end.
    steps = tuple(tiny.tokenizer.encode("First, 3 + 4 = 7.\n\nThen 7 x 2 = 14.\n\nSo 14 - 7 = 7.\n\n"
                                        "The answer is 7.", add_bos=False))
    ends = step_token_ends(tiny.tokenizer.decode, steps)
    fresh = LearnedVerifier(head, NativeEngine(tiny, cache_bytes=8 << 20, block_size=4), ride_along=False)
    fresh.score(task(0), [Sequence(tuple(range(10, 40)), steps, text=tiny.tokenizer.decode(steps))], Budget())
    assert len(ends) == 4 and fresh.separate_pass_tokens <= 30 + len(steps) + 4 * len(ends)
    for a, b in zip(read, computed):
        assert len(a) == len(b) >= 1
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=1e-4, rtol=1e-4)
    assert len({round(x, 4) for s in read for x in s}) > 1


def test_a_verifier_that_knows_the_right_solution_beats_majority_in_selection() -> None:
    spec, size, seed = EVALUATION_SETS[0]
    target = load_tasks(spec, size, seed)[0]
    good, bad = torch.full((1, 4), 3.0), torch.full((1, 4), -3.0)

    def sample(answer: str, states: torch.Tensor) -> dict:
        return {"text": f"The answer is {answer}.", "answer": answer, "step_ends": [0], "states": encode_states(states)}

    row = {"id": target.id, "samples": [sample("-1", bad), sample("-1", bad), sample(target.reference, good),
                                        sample("-2", bad)] * 4}
    head = ValueHead(4, 0)
    with torch.no_grad():
        head.net.weight.fill_(1.0)
        head.net.bias.zero_()
    accuracy = selection_accuracy([row], {"prm": (head, "last")}, 4)
    assert accuracy["majority"][4] == [0.0] and accuracy["best-of-N, prm"][4] == [1.0]
    assert accuracy["pass@N (oracle)"][16] == [1.0] and accuracy["weighted best-of-N, prm"][16] == [1.0]
    assert answer_auc([row], {"prm": (head, "last")}, 4) == {"prm": (1.0, 1.0)}
    with torch.no_grad():
        head.net.weight.fill_(-1.0)  # a judge that prefers the wrong answers
    assert answer_auc([row], {"prm": (head, "last")}, 4) == {"prm": (0.0, 0.0)}


@pytest.mark.slow
def test_label_train_and_search_with_the_head_from_the_command_line(tmp_path: Path) -> None:
    from cli import error_line, ponder
    from reference import ponder_model

    ponder_model("smollm2-135m-instruct")
    labels, head = tmp_path / "labels.db", tmp_path / "head.safetensors"
    common = ["--model", "smollm2-135m-instruct", "--out", str(labels), "--size", "3", "--samples", "2",
              "--rollouts", "2", "--max-tokens", "40", "--task", "chain_sum:min_terms=2,max_terms=2,max_digits=1"]
    done = ponder("prm", "label", *common)
    assert done.returncode == 0, done.stderr
    assert "3 questions labelled (3 now)" in done.stdout
    again = ponder("prm", "label", *common)  # everything is stored: nothing runs again
    assert "3 questions labelled (0 now)" in again.stdout, again.stderr
    assert "rollouts=2" in error_line(ponder("prm", "label", *common, "--rollouts", "3"))
    done = ponder("prm", "train", str(labels), "--out", str(head), "--hidden", "8")
    assert done.returncode == 0, done.stderr
    assert "validation AUC" in done.stdout and head.is_file() and head.with_suffix(".json").is_file()
    solved = ponder("solve", "What is 2 + 3?", "--model", "smollm2-135m-instruct", "--strategy", "bon", "--n", "2",
                    "--max-tokens", "32", "--verifier", f"prm:{head}", "--json")
    assert solved.returncode == 0, solved.stderr
    assert '"verifier_tokens": 0' in solved.stdout  # the head rode along with generation

    # `prm eval` on labels and samples kept without their states (as evidence/ keeps them) computes them again.
    from ponder.jobs import RunStore
    from ponder.tasks import load_tasks

    held_out = tmp_path / "held-out.db"
    assert ponder("prm", "label", *common[:2], "--out", str(held_out), *common[4:], "--seed", "1000").returncode == 0
    with RunStore.existing(held_out) as store:
        results = [r for _, r in store.items()]
    bare = [r | {"samples": [{k: v for k, v in x.items() if k != "states"} for x in r["samples"]]} for r in results]
    with RunStore(tmp_path / "bare.db", store.settings) as kept:
        for r in bare:
            kept.put(r["id"], r)
    question = load_tasks("gsm_symbolic", 100, seed=2024)[0]  # the selection rows must be evaluation questions
    (tmp_path / "samples.jsonl").write_text(json.dumps({"id": question.id, "prompt": bare[0]["prompt"],
                                                        "samples": bare[0]["samples"]}) + "\n")
    judged = ponder("prm", "eval", str(head), "--labels", str(tmp_path / "bare.db"),
                    "--samples", str(tmp_path / "samples.jsonl"), "--aggregate", "last", "--aggregate", "min")
    assert judged.returncode == 0, judged.stderr
    assert "step AUC" in judged.stdout and "best-of-N" in judged.stdout and "(min)" in judged.stdout
    assert "answer AUC, prm" in judged.stdout
    assert "--aggregate 'median'" in error_line(ponder("prm", "eval", str(head), "--aggregate", "median"))
