"""Hugging Face checkpoint folders: ponder writes what transformers loads, and reads sharded folders."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

from conftest import TINY
from ponder.models.config import ModelConfig
from ponder.models.loader import dequantized, load
from tiny_gguf import random_model, write_tiny_gguf


@torch.no_grad()
def test_the_dequantized_cache_is_a_folder_transformers_loads(tiny_config: ModelConfig, tmp_path: Path,
                                                              monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("PONDER_HOME", str(tmp_path / "home"))
    original = random_model(tiny_config)
    write_tiny_gguf(tmp_path / "tiny.gguf", original, with_rope_freqs=tiny_config.rope_scaling is not None)
    folder = dequantized(tmp_path / "tiny.gguf")
    tokens = torch.randint(0, tiny_config.vocab_size, (2, 40))
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    if tiny_config.rope_scaling is None:  # transformers does not read GGUF-style rope_freqs factors
        torch.testing.assert_close(reference(tokens).logits, original(tokens), atol=1e-4, rtol=0)
    torch.testing.assert_close(load(folder).model(tokens), original(tokens), atol=1e-5, rtol=0)


@torch.no_grad()
def test_sharded_folder_loads(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("PONDER_HOME", str(tmp_path / "home"))
    original = random_model(TINY["qwen2-bias"])
    write_tiny_gguf(tmp_path / "tiny.gguf", original)
    folder = dequantized(tmp_path / "tiny.gguf")
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, folder / file)
    index = {"weight_map": {k: file for file, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    tokens = torch.randint(0, 320, (1, 30))
    torch.testing.assert_close(load(folder).model(tokens), original(tokens), atol=1e-5, rtol=0)
