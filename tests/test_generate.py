"""Sampling and generation: seeds, top-k/top-p, streaming text, and the CLI's generate and chat."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cli import ponder
from conftest import TINY
from ponder.engine.sampling import SamplingParams, sample
from ponder.engine.stream import generate_tokens
from ponder.models.loader import load
from tiny_gguf import random_model, write_tiny_gguf


def test_greedy_picks_the_argmax() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9]])
    assert sample(logits, SamplingParams()).tolist() == [1, 0]


def test_top_k_and_top_p_never_pick_outside_the_allowed_set() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    top_k = {int(sample(logits, SamplingParams(temperature=1.0, top_k=2), generator)) for _ in range(300)}
    top_p = {int(sample(logits, SamplingParams(temperature=1.0, top_p=0.7), generator)) for _ in range(300)}
    anything = {int(sample(logits, SamplingParams(temperature=1.0), generator)) for _ in range(300)}
    assert top_k == {0, 1} and top_p == {0, 1} and anything == {0, 1, 2, 3}


def test_temperature_sampling_follows_the_distribution() -> None:
    probs = torch.tensor([0.6, 0.3, 0.1])
    generator = torch.Generator().manual_seed(1)
    draws = sample(torch.log(probs).expand(20000, 3), SamplingParams(temperature=1.0), generator)
    torch.testing.assert_close(torch.bincount(draws, minlength=3) / 20000, probs, atol=0.015, rtol=0)


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PONDER_HOME", str(tmp_path / "home"))
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, random_model(TINY["smollm2-tied"]))
    return path


def test_same_seed_same_tokens(tiny: Path) -> None:
    model = load(tiny).model
    params = SamplingParams(temperature=1.0, max_tokens=24, seed=7)
    first = list(generate_tokens(model, [3, 4, 5], params))
    assert first == list(generate_tokens(model, [3, 4, 5], params))
    assert first != list(generate_tokens(model, [3, 4, 5], SamplingParams(temperature=1.0, max_tokens=24, seed=8)))


def test_generation_stops_at_a_stop_id(tiny: Path) -> None:
    model = load(tiny).model
    free = list(generate_tokens(model, [3, 4, 5], SamplingParams(max_tokens=16)))
    stopped = list(generate_tokens(model, [3, 4, 5], SamplingParams(max_tokens=16), frozenset({free[5]})))
    assert stopped == free[: free.index(free[5])]


def test_streamed_text_equals_decoded_text(tiny: Path) -> None:
    tokenizer = load(tiny).tokenizer
    ids = tokenizer.encode("naïve café 日本語 🙂 test")
    assert "".join(tokenizer.stream(iter(ids))) == tokenizer.decode(ids)


def test_cli_generate_is_seeded_and_streams(tiny: Path) -> None:
    args = ("generate", str(tiny), "hello there", "--temperature", "1", "--seed", "3", "--max-tokens", "12")
    first, second = ponder(*args), ponder(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout.strip()


def test_cli_chat_keeps_the_conversation(tiny: Path) -> None:
    from subprocess import run

    from cli import PONDER

    done = run([str(PONDER), "chat", str(tiny), "--max-tokens", "5", "--seed", "1"], input="hi\nand again\n",
               capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ponder> ") == 2


def test_real_model_answers_through_the_cli() -> None:
    from reference import ponder_model

    ponder_model("smollm2-135m-instruct")  # skips when not pulled
    done = ponder("generate", "smollm2-135m-instruct", "What is 17 + 25?", "--max-tokens", "16")
    assert done.returncode == 0, done.stderr
    assert "17 + 25" in done.stdout  # the model's own greedy answer begins by restating the sum


def test_cli_models_lists_the_registry(tmp_path: Path) -> None:
    done = ponder("models", home=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"):
        assert name in done.stdout
