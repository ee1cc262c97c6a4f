"""Training the NVLM designs: the shared encoder and a design's two stages, resumable, into a vision model folder
that `ponder generate --image` answers with; shipped names and bad input on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli import error_line, ponder
from reference import ponder_model
from safetensors.torch import load_file
from tiny_gguf import random_model

from ponder.models.config import ModelConfig
from ponder.models.hf import write_folder
from ponder.models.loader import load
from ponder.tasks.images import questions
from ponder.train import encoder as encoder_module
from ponder.train.encoder import EncoderSettings, train_encoder
from ponder.train.vision import VisionSettings, train_vision
from ponder.vision.checkpoint import load_vision
from ponder.vision.encoder import EncoderConfig

SMALL_ENCODER = EncoderConfig(stem=(4, 4, 4, 4), dim=16, layers=1, heads=2)  # 448-pixel tiles, few channels


class Killed(Exception):
    pass


def crash_after(monkeypatch: pytest.MonkeyPatch, module: object, calls: int, draws: str = "questions") -> None:
    """The run dies (as if killed) when it asks for its images (`module.draws`) the (calls + 1)-th time."""
    real, seen = getattr(module, draws), []

    def drawing(*args: object) -> object:
        seen.append(1)
        if len(seen) > calls:
            raise Killed
        return real(*args)

    monkeypatch.setattr(module, draws, drawing)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random decoder with SmolLM2's tokenizer and chat template."""
    tokenizer = ponder_model("smollm2-135m-instruct").tokenizer
    cfg = ModelConfig(arch="llama", vocab_size=tokenizer.vocab_size, dim=64, n_layers=4, n_heads=4, n_kv_heads=2,
                      ffn_dim=128, rope_theta=1e5, tie_embeddings=True, max_seq_len=1024)
    torch.manual_seed(3)
    tensors = {k: v for k, v in random_model(cfg).state_dict().items() if k != "head.weight"}
    folder = tmp_path_factory.mktemp("base")
    write_folder(folder, cfg, tensors, tokenizer)
    return folder


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("encoder")
    train_encoder(out, EncoderSettings(steps=3, batch_size=2, save_every=1, encoder=SMALL_ENCODER), progress=False)
    return out


def test_the_encoder_killed_mid_run_resumes_to_the_same_weights(tmp_path: Path, encoder_folder: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    settings = EncoderSettings(steps=3, batch_size=2, save_every=1, encoder=SMALL_ENCODER)
    with monkeypatch.context() as m:
        crash_after(m, encoder_module, 2, "batch")  # dies in step 3
        with pytest.raises(Killed):
            train_encoder(tmp_path, settings, progress=False)
    assert (tmp_path / "checkpoint.pt").is_file() and not (tmp_path / "encoder.safetensors").exists()
    said: list[str] = []
    train_encoder(tmp_path, settings, say=said.append, progress=False)
    assert said == [f"resuming from step 2 ({tmp_path / 'checkpoint.pt'})"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    resumed, straight = load_file(tmp_path / "encoder.safetensors"), load_file(encoder_folder / "encoder.safetensors")
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in resumed)  # running statistics included
    assert json.loads((tmp_path / "train.json").read_text())["done"]


@pytest.mark.parametrize("design", ["d", "x", "h"])
def test_a_design_trains_both_stages_resumes_across_them_and_is_a_vision_model(
        design: str, tiny_base: Path, encoder_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ponder.train import vision as vision_module

    settings = VisionSettings(design=design, base=str(tiny_base), encoder=str(encoder_folder), stage1_steps=2,
                              stage2_steps=2, batch_size=2, micro_batch=1, lora_rank=2, save_every=1, bf16=False)
    straight = train_vision(tmp_path / "straight", settings, say=lambda _: None, progress=False)
    resumed = straight
    if design == "h":  # the design with both ways in: killed in stage 2, it resumes to the same weights
        with monkeypatch.context() as m:
            crash_after(m, vision_module, 6)  # dies in step 4, after the stage boundary's checkpoint
            with pytest.raises(Killed):
                train_vision(tmp_path / "resumed", settings, say=lambda _: None, progress=False)
        resumed = train_vision(tmp_path / "resumed", settings, say=lambda _: None, progress=False)
    metrics = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["stage"]) for r in metrics] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    a, b = load_file(straight / "vision.safetensors"), load_file(resumed / "vision.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.endswith(".lora_A") for k in a) and (design == "d") == (not any(k.startswith("xattn.") for k in a))
    model = load_vision(resumed)
    base = load(tiny_base).model
    assert not torch.equal(model.decoder.layers[0].attn.q.weight, base.layers[0].attn.q.weight)  # LoRA merged
    q = questions("reading", 1, 0)[0]
    answer = model.generate(q.image, q.question, max_tokens=3)
    assert answer.new_tokens <= 3 and answer.image_tokens == (0 if design == "x" else model.tokens_per_tile * (
        5 if design == "d" else 1))


def test_the_command_line_answers_about_an_image_and_refuses_bad_input(
        tiny_base: Path, encoder_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "nvlm-x"
    result = ponder("train", "vision", "--out", out, "--encoder", encoder_folder, "--design", "x", "--base", tiny_base,
                    "--stage1-steps", "1", "--stage2-steps", "1", "--batch-size", "2", "--no-bf16")
    assert result.returncode == 0, result.stderr
    image = tmp_path / "q.png"
    questions("counting", 1, 0)[0].image.save(image)
    result = ponder("generate", out, "--image", image, "How many?", "--max-tokens", "2")
    assert result.returncode == 0 and "0 image tokens of" in result.stderr
    (tmp_path / "bad.png").write_text("not an image")
    for args, says in (
        (["generate", out, "--image", tmp_path / "bad.png", "hi"], "is not a readable image"),
        (["generate", tiny_base, "--image", image, "hi"], "is a text-only model"),
        (["generate", "nvlm-h-smollm2", "--image", image, "hi"], "is not trained in this copy of ponder"),
        (["train", "vision", "--out", tmp_path / "h", "--encoder", encoder_folder, "--design", "h",
          "--no-thumbnail"], "without it, it is X"),
        (["train", "vision", "--out", tmp_path / "v", "--encoder", tmp_path, "--design", "q"], "unknown design"),
        (["train", "vision", "--out", tmp_path / "w", "--encoder", tmp_path], "holds no trained encoder"),
    ):
        result = ponder(*args)
        assert result.returncode != 0 and says in error_line(result), (args, result.stderr)


def test_the_vision_server_answers_openai_image_parts_and_refuses_bad_images(
        tiny_base: Path, encoder_folder: Path) -> None:
    import base64
    import io

    import openai
    from fastapi.testclient import TestClient
    from servers import serving

    from ponder.serve.vision_app import create_vision_app
    from ponder.vision.model import VisionConfig, VisionLanguageModel

    loaded = load(tiny_base)
    model = VisionLanguageModel(loaded.model, loaded.tokenizer, VisionConfig(design="d", encoder=SMALL_ENCODER)).eval()
    png = io.BytesIO()
    questions("reading", 1, 0)[0].image.save(png, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()

    def ask(image_url: str) -> list[dict]:
        return [{"role": "user", "content": [{"type": "text", "text": "What number is written in the image?"},
                                             {"type": "image_url", "image_url": {"url": image_url}}]}]

    app = create_vision_app(model, "nvlm-d-test")
    with serving(app) as server:
        client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="nvlm-d-test", messages=ask(url), max_tokens=3)
        assert reply.usage.completion_tokens <= 3
        assert reply.usage.prompt_tokens_details.image_tokens == 5 * model.tokens_per_tile
        expected = model.generate(questions("reading", 1, 0)[0].image, "What number is written in the image?", 3)
        assert reply.choices[0].message.content == expected.text
        streamed = client.chat.completions.create(model="nvlm-d-test", messages=ask(url), max_tokens=3, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed) == expected.text
    http = TestClient(app)
    for image_url, says in (("https://example.com/a.png", "send the image inline as a data URL"),
                            ("data:image/png;base64,!!!", "not valid base64"),
                            ("data:image/png;base64," + base64.b64encode(b"hello").decode(), "not a readable image")):
        got = http.post("/v1/chat/completions", json={"model": "m", "messages": ask(image_url)})
        assert got.status_code == 400 and says in got.json()["error"]["message"], got.json()
    two = ask(url)
    two[0]["content"].append({"type": "image_url", "image_url": {"url": url}})
    assert "one image a request" in http.post("/v1/chat/completions", json={"model": "m", "messages": two}).text
