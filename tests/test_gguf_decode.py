"""The whole-layer decode step (csrc/gguf_decode.cpp) against the same model run one module at a time, on real
GGUF files: SmolLM2 (Q4_1 and Q8_0, no biases) and Qwen2.5-Coder-0.5B (q, k, v biases, K-quants)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.functional import cosine_similarity

from ponder.engine import cpu_kernels, gguf_decode
from ponder.engine.gguf_linear import load_quantized
from ponder.engine.paged_cache import KVPool, PagedKVCache
from ponder.models.registry import model_dir, resolve

pytestmark = pytest.mark.skipif(not cpu_kernels.gguf_available(), reason="no AVX2/FMA/F16C or no compiler")

BLOCK = 16
CONTEXTS = [5, 17, 30]  # one row within a block, one just past one, one near the end of two


def pulled(name: str):
    if not model_dir(name).exists():
        pytest.skip(f"{name} is not pulled")
    return load_quantized(resolve(name))


def prefilled(model, pool: KVPool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's context through the modules into its own blocks (row b from block 4b); the next step's
    write slots [B], read slots [B, S] and lengths [B]."""
    gen = torch.Generator().manual_seed(0)
    for b, n in enumerate(CONTEXTS):
        slots = torch.arange(n)[None] + 4 * BLOCK * b
        tokens = torch.randint(100, 5000, (1, n), generator=gen)
        model.hidden_states(tokens, torch.arange(n)[None], PagedKVCache(pool, slots, slots, torch.tensor([n]), True))
    width = max(CONTEXTS) + 1
    reads = torch.stack([torch.arange(width) + 4 * BLOCK * b for b in range(len(CONTEXTS))])
    writes = torch.tensor([4 * BLOCK * b + n for b, n in enumerate(CONTEXTS)])
    return writes, reads, torch.tensor(CONTEXTS) + 1


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
@torch.inference_mode()
def test_a_fused_step_computes_what_the_modules_compute(name: str) -> None:
    model = pulled(name).model
    layers = gguf_decode.fused_layers(model)
    assert layers is not None  # every linear layer of these files has a kernel
    pool = KVPool(model.cfg, 4 * BLOCK, BLOCK, torch.float16)
    writes, reads, lengths = prefilled(model, pool)
    tokens, positions = torch.tensor([11, 500, 2024]), lengths - 1
    by_modules, fused = copy.deepcopy(pool), copy.deepcopy(pool)
    want = model.hidden_states(tokens[:, None], positions[:, None],
                               PagedKVCache(by_modules, writes[:, None], reads, lengths, True))[:, 0]
    got = gguf_decode.decode_hidden(model, layers, tokens, positions, fused, writes, reads, lengths)
    # The same weights and kernels; only the rounding of norms to int8 activations may differ by a step.
    assert cosine_similarity(got, want, dim=-1).min() > 0.999
    assert torch.equal(model.head(got).argmax(-1), model.head(want).argmax(-1))
    written = [writes + layer * pool.k.shape[1] for layer in range(model.cfg.n_layers)]
    for a, b in ((fused.k, by_modules.k), (fused.v, by_modules.v)):
        new_a, new_b = a.flatten(0, 1)[torch.cat(written)].float(), b.flatten(0, 1)[torch.cat(written)].float()
        assert cosine_similarity(new_a.flatten(1), new_b.flatten(1), dim=-1).min() > 0.999
        assert torch.equal(a.flatten(0, 1)[reads[0, :1]], b.flatten(0, 1)[reads[0, :1]])  # the rest untouched


@torch.inference_mode()
def test_a_row_of_a_fused_step_does_not_depend_on_its_batch() -> None:
    model = pulled("smollm2-135m-instruct").model
    layers = gguf_decode.fused_layers(model)
    pool = KVPool(model.cfg, 4 * BLOCK, BLOCK, torch.float16)
    writes, reads, lengths = prefilled(model, pool)
    tokens = torch.tensor([11, 500, 2024])
    batch = gguf_decode.decode_hidden(model, layers, tokens, lengths - 1, copy.deepcopy(pool), writes, reads, lengths)
    alone = gguf_decode.decode_hidden(model, layers, tokens[1:2], lengths[1:2] - 1, copy.deepcopy(pool),
                                      writes[1:2], reads[1:2, : lengths[1]], lengths[1:2])
    assert torch.equal(alone[0], batch[1])


def test_the_engine_takes_the_fused_step_only_where_every_layer_has_a_kernel() -> None:
    from ponder.engine.native import NativeEngine

    loaded = pulled("smollm2-135m-instruct")
    assert NativeEngine(loaded, cache_bytes=8 << 20, int8=True).fused is not None
    mixed = copy.copy(loaded.model)
    mixed.layers = copy.deepcopy(loaded.model.layers)
    mixed.layers[3].mlp.up = torch.nn.Linear(mixed.cfg.dim, mixed.cfg.ffn_dim, bias=False)  # as an fp16 tensor loads
    assert gguf_decode.fused_layers(mixed) is None
    assert NativeEngine(loaded, cache_bytes=8 << 20, int8=False).fused is None  # the exact path stays exact
