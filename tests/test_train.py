"""Learning from search: SFT and DPO on ponder's own decoder, full or LoRA, resumable, into a model folder."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ponder.errors import BadParameter
from ponder.models.config import ModelConfig, preset
from ponder.models.hf import write_folder
from ponder.models.loader import load
from ponder.train.data import CONTENT, FORMAT, PROMPT, load_pairs, load_sft, tokenize
from ponder.train.from_search import from_rows
from ponder.train.losses import collate, token_logps
from ponder.train.memory import estimate_bytes
from ponder.train.trainer import LogpsModel, TrainSettings, _step
from cli import PONDER, error_line, ponder
from reference import ponder_model
from tiny_gguf import random_model

BIN = PONDER.parent

PAIRS = [
    {"prompt": [{"role": "user", "content": "What is 2+3?"}], "chosen": [{"role": "assistant", "content": "2 + 3 = 5."}],
     "rejected": [{"role": "assistant", "content": "It is 6, I think."}]},
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "A dog."},  # plain strings, as TRL accepts
]
SFT = [{"messages": [{"role": "user", "content": f"What is {a} + {b}?"},
                     {"role": "assistant", "content": f"{a} + {b} = {a + b}. The answer is {a + b}."}]}
       for a, b in [(2, 3), (4, 1), (6, 2), (3, 3)]]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def smol_tokenizer():  # noqa: ANN201
    return ponder_model("smollm2-135m-instruct").tokenizer


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory, smol_tokenizer) -> dict[str, Path]:  # noqa: ANN001
    """Two small random models (a policy and another as a reference) with SmolLM2's tokenizer and chat template."""
    cfg = ModelConfig(arch="llama", vocab_size=smol_tokenizer.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                      ffn_dim=128, rope_theta=1e5, tie_embeddings=True, max_seq_len=512)
    folders = {}
    for name, seed in (("policy", 1), ("reference", 2)):
        torch.manual_seed(seed)
        tensors = {k: v for k, v in random_model(cfg).state_dict().items() if k != "head.weight"}
        folders[name] = tmp_path_factory.mktemp(name)
        write_folder(folders[name], cfg, tensors, smol_tokenizer)
    return folders


def test_assistant_tokens_are_labelled_token_by_token(smol_tokenizer) -> None:  # noqa: ANN001
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"},
                {"role": "assistant", "content": "5"}, {"role": "user", "content": "Why?"},
                {"role": "assistant", "content": "2 and 3 make 5."}]
    got = tokenize(smol_tokenizer, messages)
    turn = ["<|im_start|>", "ass", "istant", "Ċ"]
    expected = [(t, PROMPT) for t in ["<|im_start|>", "system", "Ċ", "Be", "Ġbrief", ".", "<|im_end|>", "Ċ",
                                      "<|im_start|>", "user", "Ċ", "2", "+", "3", "?", "<|im_end|>", "Ċ", *turn]]
    expected += [("5", CONTENT), ("<|im_end|>", FORMAT), ("Ċ", FORMAT)]
    expected += [(t, PROMPT) for t in ["<|im_start|>", "user", "Ċ", "Why", "?", "<|im_end|>", "Ċ", *turn]]
    expected += [(t, CONTENT) for t in ["2", "Ġand", "Ġ", "3", "Ġmake", "Ġ", "5", "."]]
    expected += [("<|im_end|>", FORMAT), ("Ċ", FORMAT)]
    assert [(smol_tokenizer.token_text(i), part) for i, part in zip(got.ids, got.parts)] == expected
    assert smol_tokenizer.decode(got.ids) == smol_tokenizer.render_chat(messages, add_generation_prompt=False)


def test_dpo_loss_equals_trls_on_the_same_batch_and_models(tiny_folders: dict[str, Path], tmp_path: Path) -> None:
    trl = pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def hf(name: str):  # noqa: ANN202
        return AutoModelForCausalLM.from_pretrained(tiny_folders[name], dtype=torch.float32)

    rows = [PAIRS[0], {k: ([{"role": "user" if k == "prompt" else "assistant", "content": v}]) for k, v in
                       PAIRS[1].items()}]
    args = trl.DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=2, max_steps=1, beta=0.1,
                         loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.2], report_to=[], use_cpu=True,
                         save_strategy="no")
    trainer = trl.DPOTrainer(model=hf("policy"), ref_model=hf("reference"), args=args,
                             train_dataset=Dataset.from_list(rows),
                             processing_class=AutoTokenizer.from_pretrained(tiny_folders["policy"]))
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    theirs = trainer.compute_loss(trainer.model, batch).item()

    policy, reference = load(tiny_folders["policy"]), load(tiny_folders["reference"])
    pairs, _ = load_pairs(write_rows(tmp_path / "pairs.jsonl", PAIRS), policy.tokenizer, 512)
    sides = [p.chosen for p in pairs] + [p.rejected for p in pairs]  # TRL's batch: the chosen, then the rejected
    assert [batch["input_ids"][i, : len(side.ids)].tolist() for i, side in enumerate(sides)] == [s.ids for s in sides]
    settings = TrainSettings(kind="dpo", batch_size=2, micro_batch=2, mask_formatting=False)  # TRL's completion mask
    ids, parts = collate([p.chosen for p in pairs] + [p.rejected for p in pairs])
    ref = token_logps(reference.model, ids, parts).per_row(4, content_only=False)
    mine = _step(LogpsModel(policy.model), pairs, torch.stack([ref[:2], ref[2:]], 1), settings, torch.device("cpu"),
                 0, 1)
    assert mine["loss"] == pytest.approx(theirs, rel=1e-4)
    assert mine["rewards_chosen"] == pytest.approx(trainer._metrics["train"]["rewards/chosen"][0], abs=1e-3)
    assert mine["rewards_rejected"] == pytest.approx(trainer._metrics["train"]["rewards/rejected"][0], abs=1e-3)


def test_dpo_starts_at_ln_2_and_a_run_killed_with_sigkill_resumes_to_the_same_model(
        tiny_folders: dict[str, Path], tmp_path: Path) -> None:
    data = write_rows(tmp_path / "pairs.jsonl", PAIRS * 8)
    common = ["train", "dpo", str(tiny_folders["policy"]), str(data), "--steps", "40", "--batch-size", "4",
              "--micro-batch", "1", "--save-every", "5", "--lr", "1e-3"]
    whole = ponder(*common, "--out", str(tmp_path / "whole"), home=tmp_path)
    assert whole.returncode == 0, whole.stderr
    assert f"step 1: DPO loss {math.log(2):.6f}" in whole.stdout
    first = json.loads((tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()[0])
    assert abs(first["loss_dpo"] - math.log(2)) < 1e-4 and first["rewards_chosen"] == 0.0

    out = tmp_path / "killed"
    env = dict(os.environ, PONDER_HOME=str(tmp_path))
    run = subprocess.Popen([str(BIN / "ponder"), *common, "--out", str(out)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    while run.poll() is None and not (out / "checkpoint.pt").is_file():
        time.sleep(0.05)
    time.sleep(0.3)
    run.send_signal(signal.SIGKILL)
    run.wait()
    if run.returncode != -signal.SIGKILL:
        pytest.skip("the run finished before it could be killed (a fast machine)")
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    resumed = ponder(*common, "--out", str(out), home=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step" in resumed.stdout and int(resumed.stdout.split("resuming from step ")[1].split()[0]) \
        >= max(steps) - 5  # loses at most --save-every steps
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == \
        list(range(1, 41))
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert "already trained" in ponder(*common, "--out", str(out), home=tmp_path).stdout


def test_bad_rows_name_their_line_and_unusable_ones_are_counted(smol_tokenizer, tmp_path: Path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(SFT[0]) + "\n\n{not json\n")
    with pytest.raises(BadParameter, match="bad.jsonl, line 3: not JSON"):
        load_sft(bad, smol_tokenizer, 512)
    bad.write_text(json.dumps({"prompt": "hi", "chosen": "yes"}) + "\n")
    with pytest.raises(BadParameter, match="line 1: a preference row needs .* missing rejected"):
        load_pairs(bad, smol_tokenizer, 512)
    bad.write_text(json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n")
    with pytest.raises(BadParameter, match="line 1: each message needs a role"):
        load_sft(bad, smol_tokenizer, 512)
    rows = [PAIRS[0], {"prompt": "hi", "chosen": " ", "rejected": "no"}, {**PAIRS[1], "chosen": "Blue. " * 300}]
    pairs, skipped = load_pairs(write_rows(tmp_path / "p.jsonl", rows), smol_tokenizer, 256)
    assert len(pairs) == 1
    assert skipped.summary() == "1 pairs with an empty side (line 2); 1 pairs longer than 256 tokens (line 3)"


@pytest.mark.parametrize("pairs_a_pass, measured_gib", [(1, 7.7), (2, 12.1)])
def test_the_memory_estimate_is_above_what_training_took_but_not_far(pairs_a_pass: int, measured_gib: float) -> None:
    # Peak RSS measured on 2 cores (session 23): the 0.5B, LoRA 16, bf16, DPO on pairs of 708 tokens (514 of them
    # scored). Counting attention scores and every token's logits, the estimate was 11.7 and 20.9 GiB, and it
    # refused a run that fit with 22.5 GiB free.
    settings = TrainSettings(kind="dpo", lora_rank=16, bf16=True, micro_batch=pairs_a_pass)
    estimate = estimate_bytes(preset("qwen2.5-coder-0.5b-instruct"), settings, 708, 514) / 2**30
    assert measured_gib < estimate < 1.25 * measured_gib


def test_the_cli_refuses_bad_settings_and_a_run_that_would_not_fit_in_memory_before_training(
        tiny_folders: dict[str, Path], tmp_path: Path) -> None:
    data = write_rows(tmp_path / "sft.jsonl", SFT)
    model = str(tiny_folders["policy"])
    for args, says in [(["--batch-size", "8"], "4 usable rows, fewer than --batch-size 8"),
                       (["--micro-batch", "0"], "--micro-batch must be at least 1"),
                       (["--micro-batch", "100000000", "--batch-size", "2"], "training would need about"),
                       ]:
        done = ponder("train", "sft", model, str(data), "--out", str(tmp_path / "o"), *args, home=tmp_path)
        assert says in error_line(done)
        assert not (tmp_path / "o" / "model.safetensors").exists()
    lora = error_line(ponder("train", "sft", model, str(data), "--out", str(tmp_path / "o"), "--micro-batch",
                             "100000000", "--batch-size", "2", "--lora-rank", "4", home=tmp_path))
    assert "training would need about" in lora and "train LoRA" not in lora  # it is LoRA already
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    done = ponder("train", "sft", model, str(data), "--out", str(tmp_path / "taken"), "--batch-size", "2", home=tmp_path)
    assert "is not a training folder" in error_line(done)


def test_two_processes_over_gloo_give_the_losses_of_one_on_the_same_global_batch(
        tiny_folders: dict[str, Path], tmp_path: Path) -> None:
    data = write_rows(tmp_path / "sft.jsonl", SFT * 2)
    common = ["train", "sft", str(tiny_folders["policy"]), str(data), "--steps", "3", "--batch-size", "4",
              "--micro-batch", "1", "--lr", "1e-3"]
    one = ponder(*common, "--out", str(tmp_path / "one"), home=tmp_path)
    assert one.returncode == 0, one.stderr
    env = dict(os.environ, PONDER_HOME=str(tmp_path), OMP_NUM_THREADS="1")
    two = subprocess.run([str(BIN / "torchrun"), "--nproc-per-node", "2", "--master-port", "29533", "--no-python",
                          str(BIN / "ponder"), *common, "--out", str(tmp_path / "two")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]

    def losses(name: str) -> list[float]:
        return [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    assert losses("two") == pytest.approx(losses("one"), abs=1e-5) and len(losses("one")) == 3


def test_sft_on_smollm2_lowers_the_loss_and_the_folder_is_a_model_for_ponder_and_transformers(tmp_path: Path) -> None:
    ponder_model("smollm2-135m-instruct")  # skips when not pulled
    data = write_rows(tmp_path / "sft.jsonl", SFT)
    out = tmp_path / "smol-sft"
    from ponder.models.registry import model_dir

    home = tmp_path / "home"  # the pulled model, linked into a home of the test's own
    (home / "models").mkdir(parents=True)
    (home / "models" / "smollm2-135m-instruct").symlink_to(model_dir("smollm2-135m-instruct"))
    assert "cannot register a model as 'smollm2-135m-instruct'" in error_line(ponder(
        "train", "sft", "smollm2-135m-instruct", str(data), "--out", str(out), "--name", "smollm2-135m-instruct",
        home=home))
    done = ponder("train", "sft", "smollm2-135m-instruct", str(data), "--out", str(out), "--steps", "4",
                  "--batch-size", "4", "--lora-rank", "8", "--lr", "2e-3", "--name", "smol-sums", home=home)
    assert done.returncode == 0, done.stderr
    listed = ponder("models", home=home)
    assert "smol-sums" in listed.stdout and "trained" in listed.stdout
    by_name = ponder("generate", "smol-sums", "What is 4 + 4?", "--max-tokens", "4", home=home)
    assert by_name.returncode == 0 and by_name.stdout.strip(), by_name.stderr
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and losses[-1] < losses[0]
    metrics = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert {"step", "loss", "tokens_per_s"} <= metrics.keys()
    generated = ponder("generate", str(out), "What is 4 + 4?", "--max-tokens", "12")
    assert generated.returncode == 0 and generated.stdout.strip(), generated.stderr
    from transformers import AutoModelForCausalLM

    theirs = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    mine = load(out)
    tokens = torch.tensor([mine.tokenizer.encode_chat([{"role": "user", "content": "What is 4 + 4?"}])])
    with torch.no_grad():
        assert torch.allclose(theirs(tokens).logits, mine.model(tokens), atol=1e-3)
    # A snapshot keeps the adapters, the settings and the metrics; the same command makes the same model again.
    snapshot = tmp_path / "snapshot"
    (snapshot / "adapter").mkdir(parents=True)
    for name in ("adapter/adapter_model.safetensors", "train.json", "metrics.jsonl"):
        (snapshot / name).write_bytes((out / name).read_bytes())
    assert (out / "adapter/adapter_model.safetensors").stat().st_size < (out / "model.safetensors").stat().st_size / 20
    again = ponder("train", "sft", "smollm2-135m-instruct", str(data), "--out", str(snapshot), "--steps", "4",
                   "--batch-size", "4", "--lora-rank", "8", "--lr", "2e-3", home=home)
    assert again.returncode == 0 and "made again from its adapters" in again.stdout, again.stderr
    a, b = load_file(out / "model.safetensors"), load_file(snapshot / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_data_from_a_store_keeps_right_answers_once_and_pairs_them_with_wrong_ones() -> None:
    from ponder.tasks import load_tasks

    code = load_tasks("humaneval", 1, 0)[0]
    rows = [{"question": code.id, "seed": 0, "pool": [
        {"text": "    return 1\n```", "correct": True}, {"text": "    return 1\n```", "correct": True},
        {"text": "    return 2\n```", "correct": False}, {"text": "  return 3\n```", "correct": True}]},
        {"question": "held", "seed": 0, "pool": [{"text": "x", "correct": True}]}]
    made = from_rows(rows, {code.id: code, "held": code}, per_question=4, held={"held"})
    assert (len(made.sft), len(made.pairs), made.questions, made.held_out) == (2, 1, 1, 1)
    reply = made.sft[0]["messages"][-1]
    assert reply["role"] == "assistant" and reply["content"].startswith(code.messages[-1]["content"])
    assert reply["content"].endswith("    return 1\n```") and "prefix" not in json.dumps(made.sft[0])
    assert made.pairs[0]["chosen"][0]["content"].endswith("return 1\n```")
    assert made.pairs[0]["rejected"][0]["content"].endswith("return 2\n```")
    assert from_rows(rows[:1], {code.id: code}, per_question=1).sft.__len__() == 1


def test_revision_rows_end_in_a_right_answer_after_the_closest_wrong_attempt_and_learn_only_it(
        smol_tokenizer) -> None:  # noqa: ANN001
    from collections import Counter

    from ponder.search.revise import REVISE_PROMPT
    from ponder.tasks import question_task

    task = question_task("What is 17 + 25?", "math", "42")
    wrong = ["17 + 25 = 32. The answer is 32.", "The answer is 7.", "17 + 25 = 42. The answer is 41.",
             "I do not know.", "25 + 17 = 43. The answer is 43."]
    right = "17 + 25 = 42. The answer is 42."
    rows = [{"question": f"q{i}", "seed": 0, "pool": [{"text": right, "correct": True}] +
             [{"text": w, "correct": False} for w in wrong]} for i in range(200)]
    made = from_rows(rows, {f"q{i}": task for i in range(200)}, per_question=1, seed=3)
    counts = Counter()
    for row in made.revisions:
        messages = row["messages"]
        attempts = [m for m in messages if m["role"] == "assistant" and m.get("train") is False]
        counts[len(attempts)] += 1
        assert messages[-1] == {"role": "assistant", "content": right}
        if attempts:
            assert attempts[-1]["content"] == "17 + 25 = 42. The answer is 41."  # one character from the right one
            assert messages[-2] == {"role": "user", "content": REVISE_PROMPT}
    assert set(counts) == {0, 1, 2, 3, 4} and min(counts.values()) > 20  # 0 to 4 attempts, about evenly
    longest = next(r["messages"] for r in made.revisions if sum(m.get("train") is False for m in r["messages"]) == 4)
    tokens = tokenize(smol_tokenizer, longest)
    learned = smol_tokenizer.decode([i for i, part in zip(tokens.ids, tokens.parts) if part == CONTENT])
    assert learned == right  # the wrong attempts are context, never learned


def test_whole_templates_are_held_out_and_reports_split_seen_from_unseen() -> None:
    from ponder.eval.cli import _of_templates
    from ponder.eval.report import Run
    from ponder.tasks import load_tasks
    from ponder.tasks.program import with_format
    from ponder.tasks.templates import template_of, unseen

    tasks = load_tasks("gsm_symbolic", 100, 2024)
    templates = [template_of(t) for t in tasks]
    assert None not in templates and template_of(with_format(tasks[0], "program")) == templates[0]
    held = {k for k in templates if unseen(k, 0.25)}
    assert 0 < len(held) < len(set(templates)) / 2 and held == {k for k in templates if unseen(k, 0.25)}
    settings = {"tasks": "gsm_symbolic", "size": 100, "task_seed": 2024}
    run = Run("m", [{"question": t.id} for t in tasks], settings)
    unseen_rows, seen_rows = _of_templates(run, "unseen", 0.25), _of_templates(run, "seen", 0.25)
    assert len(unseen_rows) + len(seen_rows) == 100 and len(unseen_rows) == sum(k in held for k in templates)
    assert template_of(load_tasks("chain_sum", 1, 0)[0]) is None
