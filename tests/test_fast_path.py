"""The fast CPU path (int8 weights, ponder's AVX2 kernel) against the fp32 reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference import REAL_MODELS, ponder_model

from ponder.engine import cpu_kernels, int8_linear
from ponder.engine.native import NativeEngine
from ponder.engine.sampling import SamplingParams

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason="no AVX2/FMA or no compiler for ponder's kernels")


@pytest.mark.parametrize("batch", [1, 2, 3, 8, 17])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("outputs", [48, 40])  # 40: not a whole number of the kernel's blocks of 16
def test_int8_linear_is_close_to_fp32(batch: int, bias: bool, outputs: int) -> None:
    linear = torch.nn.Linear(96, outputs, bias=bias)
    x = torch.randn(batch, 5, 96)
    expected = linear(x)
    # The kernel must equal its own definition: int8 weights times per-row scales, in fp32.
    fast = int8_linear.Int8Linear(linear)
    expected_exactly = torch.nn.functional.linear(x, fast.dequantized(), linear.bias)
    torch.testing.assert_close(fast(x), expected_exactly, atol=1e-5, rtol=1e-5)
    assert (fast(x) - expected).abs().max() < 0.02 * expected.abs().max()


@pytest.mark.parametrize("shape", [(96, 48), (64, 40), (96, 160)])  # 1, 2.5 and 10 blocks of 16 outputs
def test_int8_linear_gives_each_row_the_same_bits_in_any_batch(shape: tuple[int, int]) -> None:
    # Batch invariance: tiles of 1 to 4 rows, and 1, 2 or 4 blocks at a time, all sum in one order.
    fast = int8_linear.Int8Linear(torch.nn.Linear(*shape))
    x = torch.randn(11, shape[0])
    whole = fast(x)
    for n in range(1, 11):
        assert torch.equal(fast(x[:n]), whole[:n]), f"the first rows differ in a batch of {n}"
        assert torch.equal(fast(x[n:]), whole[n:]), f"the last rows differ in a batch of {11 - n}"


@torch.inference_mode()
def test_a_seeded_sample_is_the_same_alone_from_the_cache_and_beside_others(tiny) -> None:
    # Tokens and their log-probabilities to the last bit: the batch a sequence shares changes nothing.
    params = SamplingParams(temperature=1.0, max_tokens=12, seed=5)
    prompt, other = list(range(20, 45)), list(range(60, 71))

    def run(engine: NativeEngine, prompts: list[list[int]], n: int) -> list[tuple]:
        return [(s.tokens, s.logprobs) for s in engine.sample(prompts, n, params)[-1]]

    engine = NativeEngine(tiny, cache_bytes=8 << 20, int8=True)
    alone = run(engine, [prompt], 4)
    assert run(NativeEngine(tiny, cache_bytes=8 << 20, int8=True), [other, prompt], 1) == alone[:1]  # 2 rows, not 4
    # From the cache, the prompt's last partial block is computed in another shape (its attention in
    # particular): the first log-probability may move in its last bits, the tokens may not.
    assert [tokens for tokens, _ in run(engine, [prompt], 4)] == [tokens for tokens, _ in alone]


@pytest.mark.parametrize("name", REAL_MODELS)
@torch.inference_mode()
def test_greedy_tokens_agree_with_the_reference(name: str) -> None:
    loaded = ponder_model(name)
    reference = NativeEngine(loaded, cache_bytes=256 << 20)
    fast = NativeEngine(loaded, cache_bytes=256 << 20, int8=True)
    questions = ["What is 17 + 25?", "Write a Python function that reverses a string.", "Name three colours.",
                 "Explain why the sky is blue in one sentence.", "A train goes 60 km/h for 2 hours. How far?"]
    agree = total = 0
    prompts = [loaded.tokenizer.encode_chat([{"role": "user", "content": q}]) for q in questions]
    greedy = reference.sample(prompts, 1, SamplingParams(max_tokens=32))  # one batch: the reference is slow
    for prompt, [seq] in zip(prompts, greedy):
        # Teacher-forced on the reference's greedy tokens: does the fast path pick the same token at each step?
        tokens = torch.tensor([list(seq.all_tokens)])
        picks = fast.model(tokens)[0, len(prompt) - 1: -1].argmax(-1)
        agree += int((picks == torch.tensor(seq.tokens)).sum())
        total += len(seq.tokens)
    print(f"{name}: int8 fast path agrees on {agree} of {total} greedy tokens")
    assert agree / total >= 0.95


@pytest.mark.parametrize("pool_dtype", [torch.float32, torch.float16])  # fp16: native-gguf's pool, as llama.cpp's
@pytest.mark.parametrize("lengths", [[1], [5, 17, 33], [40, 40]])
def test_decode_attention_kernel_equals_sdpa_over_gathered_blocks(lengths: list[int], pool_dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    heads, kv_heads, dim, slots = 14, 2, 64, 256
    pool_k = torch.randn(slots, kv_heads, dim).to(pool_dtype)
    pool_v = torch.randn(slots, kv_heads, dim).to(pool_dtype)
    width = max(lengths)
    # Each row's positions live in scattered slots, as blocks do; padding points at slot 0.
    read = torch.stack([torch.cat([torch.randperm(slots)[:n], torch.zeros(width - n, dtype=torch.long)])
                        for n in lengths])
    q = torch.randn(len(lengths), heads, dim)
    got = cpu_kernels.load().decode_attention(q, pool_k, pool_v, read, torch.tensor(lengths), dim ** -0.5)
    visible = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    expected = torch.nn.functional.scaled_dot_product_attention(
        q[:, :, None], pool_k[read].transpose(1, 2).float(), pool_v[read].transpose(1, 2).float(),
        attn_mask=visible[:, None, None, :], enable_gqa=True)[:, :, 0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("age_s", "removed"), [(3600, True), (5, False)])
def test_a_stale_build_lock_is_removed_and_a_fresh_one_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            age_s: int, removed: bool) -> None:
    import os
    import time

    import torch.utils.cpp_extension as cpp

    lock = tmp_path / "lock"
    lock.write_text("")
    os.utime(lock, (time.time() - age_s, time.time() - age_s))
    monkeypatch.setattr(cpp, "_get_build_directory", lambda name, verbose: str(tmp_path))
    monkeypatch.setattr(cpp, "load_inline", lambda *args, **kwargs: "built")
    cpu_kernels.load.cache_clear()
    try:
        assert cpu_kernels.load() == "built"
    finally:
        cpu_kernels.load.cache_clear()
    assert lock.exists() != removed
