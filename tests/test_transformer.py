"""The decoder against Hugging Face transformers, on tiny random-weight models of each family."""

from __future__ import annotations

import pytest
import torch
import transformers

from ponder.models.config import PRESETS, ModelConfig, preset
from ponder.models.hf import HF_NAMES
from ponder.models.kv_cache import DenseKVCache
from ponder.models.transformer import Transformer
from ponder.models.weights import build_model, rename


def reference_and_ours(cfg: ModelConfig):
    hf_model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**cfg.to_hf()))
    with torch.no_grad():  # biases start at zero in transformers: randomise them so they are tested
        for name, p in hf_model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    state = hf_model.state_dict()
    if cfg.tie_embeddings:
        state.pop("lm_head.weight")
    names = rename(state, HF_NAMES, "reference")
    return hf_model.eval(), build_model(cfg, {names[k]: v for k, v in state.items()}, "reference")


@torch.no_grad()
def test_logits_equal_transformers(tiny_config: ModelConfig) -> None:
    reference, ours = reference_and_ours(tiny_config)
    tokens = torch.randint(0, tiny_config.vocab_size, (3, 70))  # past the 32 original positions
    expected = reference(tokens).logits
    torch.testing.assert_close(ours(tokens), expected, atol=1e-4, rtol=0)


@torch.no_grad()
def test_kv_cache_across_calls_equals_one_pass(tiny_config: ModelConfig) -> None:
    reference, ours = reference_and_ours(tiny_config)
    tokens = torch.randint(0, tiny_config.vocab_size, (2, 50))
    expected = reference(tokens).logits
    cache = DenseKVCache(tiny_config, batch=2, max_len=64)
    chunks, start = [], 0
    for size in (13, 1, 1, 20, 15):  # a prefill, single-token decode steps, then chunks
        positions = torch.arange(start, start + size).expand(2, size)
        chunks.append(ours(tokens[:, start:start + size], positions, cache))
        start += size
    torch.testing.assert_close(torch.cat(chunks, dim=1), expected, atol=1e-4, rtol=0)


def test_tied_head_shares_the_embedding() -> None:
    cfg = ModelConfig(arch="llama", vocab_size=64, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32,
                      tie_embeddings=True)
    _, ours = reference_and_ours(cfg)
    assert ours.head.weight is ours.embed.weight


# Published parameter counts of each base model (from their model cards / safetensors metadata).
PUBLISHED = {"llama-3.1-8b": 8.03e9, "llama-3.2-1b": 1.24e9, "llama-3.2-3b": 3.21e9, "smollm2-135m": 134.5e6,
             "smollm2-360m": 361.8e6, "smollm2-1.7b": 1.71e9, "qwen2.5-0.5b": 494e6, "qwen2.5-1.5b": 1.54e9,
             "qwen2.5-7b": 7.62e9}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_with_its_published_size(name: str) -> None:
    cfg = preset(name)
    with torch.device("meta"):
        model = Transformer(cfg)
    counted = sum(p.numel() for p in model.parameters())  # a tied weight is counted once
    assert counted == cfg.n_params
    base = next(b for b in PUBLISHED if name.replace("-coder", "").startswith(b))
    assert abs(cfg.n_params - PUBLISHED[base]) / PUBLISHED[base] < 0.01
    assert cfg.to_hf()["model_type"] == cfg.arch and ModelConfig.from_hf(cfg.to_hf()) == cfg


def test_rope_scaling_factor_comes_from_the_config() -> None:
    from ponder.models.transformer import rope_inv_freq

    llama31, llama32 = preset("llama-3.1-8b"), preset("llama-3.2-1b")
    assert llama31.rope_scaling["factor"] == 8.0 and llama32.rope_scaling["factor"] == 32.0
    ratio31 = rope_inv_freq(llama31.replace(rope_scaling=None)) / rope_inv_freq(llama31)
    ratio32 = rope_inv_freq(llama32.replace(rope_scaling=None)) / rope_inv_freq(llama32)
    assert ratio31.max() == pytest.approx(8.0) and ratio32.max() == pytest.approx(32.0)
    assert ratio31.min() == pytest.approx(1.0)  # the highest frequencies are left alone
