"""GGUF round trip: a tiny model written as llama.cpp would write it loads back to the same logits."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest
import torch

from ponder.models.config import ModelConfig
from ponder.models.gguf import load_gguf
from ponder.models.loader import load
from ponder.models.weights import build_model
from tiny_gguf import random_model, write_tiny_gguf

Q = gguf.GGMLQuantizationType


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_HOME", str(tmp_path / "home"))


@torch.no_grad()
def test_round_trip_gives_the_same_logits(tiny_config: ModelConfig, tmp_path: Path) -> None:
    with_rope_freqs = tiny_config.rope_scaling is not None  # how llama.cpp stores Llama 3.x scaling
    original = random_model(tiny_config)
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, original, with_rope_freqs=with_rope_freqs)
    loaded = load(path)
    if with_rope_freqs:
        assert loaded.config.rope_freq_factors and max(loaded.config.rope_freq_factors) == pytest.approx(8.0)
    tokens = torch.randint(0, tiny_config.vocab_size, (2, 60))
    torch.testing.assert_close(loaded.model(tokens), original(tokens), atol=1e-5, rtol=0)
    # The second load reads the dequantized cache, not the GGUF file.
    assert load(path).config == loaded.config


def test_without_rope_freqs_a_scaled_model_differs(tmp_path: Path) -> None:
    """The scaling must come from the file: dropping rope_freqs changes the logits."""
    from conftest import TINY

    original = random_model(TINY["llama3-scaled"])
    write_tiny_gguf(tmp_path / "tiny.gguf", original, with_rope_freqs=False)
    tokens = torch.randint(0, 320, (1, 60))
    with torch.no_grad():
        assert not torch.allclose(load(tmp_path / "tiny.gguf").model(tokens), original(tokens), atol=1e-3)


@pytest.mark.parametrize("qtype", [Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0])
def test_quantized_tensors_dequantize_to_what_gguf_py_gives(qtype: Q, tmp_path: Path) -> None:
    from conftest import TINY

    cfg = TINY["smollm2-tied"].replace(dim=64, ffn_dim=128, n_heads=4, n_kv_heads=2)  # rows divisible by 32
    original = random_model(cfg)
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, original, qtype=qtype)
    cfg2, tensors, _ = load_gguf(path)
    reference = original.state_dict()
    for name, w in tensors.items():
        expected = reference[name].numpy()
        if w.ndim == 2:
            expected = gguf.quants.dequantize(gguf.quants.quantize(expected, qtype), qtype)
        torch.testing.assert_close(w, torch.from_numpy(expected).float(), atol=1e-6, rtol=0, msg=name)
    build_model(cfg2, tensors, str(path))  # every key and shape fits
