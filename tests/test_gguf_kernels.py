"""GGUF's quantized blocks multiplied as they are (csrc/gguf_matmul.cpp), both builds, against numpy.

The reference dequantizes with gguf-py (an independent implementation of the formats) and rounds the
activations to int8 in blocks of 32 (256 for the K-quants) exactly as the kernel does, so the kernel must agree to float rounding;
against unrounded activations it agrees to the int8 rounding (about half a percent).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from ponder.engine import cpu_kernels
from ponder.engine.gguf_linear import KERNEL_TYPES, GGUFLinear, load_quantized, raw_rows
from ponder.models.gguf import open_gguf
from ponder.models.loader import load
from ponder.models.registry import model_dir, resolve

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason="no AVX2/FMA/F16C or no compiler")

Q = gguf.GGMLQuantizationType
# Where each block keeps its fp16 scales (random bytes there could be inf or NaN).
FP16_FIELDS = {Q.Q8_0: [0], Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q4_K: [0, 2], Q.Q6_K: [208]}
ISAS = ["avx2", "avx512-vnni"] if cpu_kernels.best_gguf_isa() == "avx512-vnni" else ["avx2"]


def random_blocks(qtype: Q, rows: int, width: int, rng: np.random.Generator) -> torch.Tensor:
    block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, width // block, block_bytes), dtype=np.uint8)
    for at in FP16_FIELDS[qtype]:
        raw[:, :, at: at + 2] = rng.uniform(-0.05, 0.05, size=(rows, width // block)).astype(np.float16)[..., None].view(np.uint8)
    return torch.from_numpy(raw.reshape(rows, -1))


def rounded_reference(x: torch.Tensor, layer: GGUFLinear) -> np.ndarray:
    """x @ W^T with x rounded to int8 as the kernel rounds it (in blocks of 32; of 256 against K-quants, as
    llama.cpp's Q8_K), in float64."""
    xb = x.numpy().reshape(x.shape[0], -1, 256 if layer.qtype in (Q.Q4_K, Q.Q6_K) else 32)
    amax = np.abs(xb).max(-1, keepdims=True)
    inv = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    q = np.rint(xb * inv)
    rounded = (q * (amax / np.float32(127))).reshape(x.shape).astype(np.float64)
    return rounded @ layer.dequantized().double().numpy().T


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("qtype", sorted(KERNEL_TYPES), ids=lambda q: q.name)
@pytest.mark.parametrize("n", [1, 3, 17])
def test_kernel_matches_dequantized_reference(qtype: Q, n: int, isa: str) -> None:
    rng = np.random.default_rng(int(qtype) * 100 + n)
    width = 512 if qtype in (Q.Q4_K, Q.Q6_K) else 96  # K-quants come in super-blocks of 256
    layer = GGUFLinear(random_blocks(qtype, 37, width, rng), qtype, width, isa=isa)  # 37 rows: no tile is whole
    x = torch.from_numpy(rng.standard_normal((n, width)).astype(np.float32))
    got = layer(x).double().numpy()
    want = rounded_reference(x, layer)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    exact = x.double().numpy() @ layer.dequantized().double().numpy().T  # unrounded activations
    assert np.linalg.norm(got - exact) <= 0.02 * np.linalg.norm(exact)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("qtype", sorted(KERNEL_TYPES), ids=lambda q: q.name)
def test_a_row_does_not_depend_on_its_batch(qtype: Q, isa: str) -> None:
    rng = np.random.default_rng(0)  # 40 weight rows: five groups of eight (lanes summed under 4 rows, else transposed)
    layer = GGUFLinear(random_blocks(qtype, 40, 256, rng), qtype, 256, isa=isa)
    x = torch.from_numpy(rng.standard_normal((19, 256)).astype(np.float32))  # 16 + 3: every tile height
    together = layer(x)
    for i in range(19):  # alone, and as a row of every tile shape
        assert torch.equal(layer(x[i: i + 1])[0], together[i])


def test_dispatch_picks_what_the_cpu_has() -> None:
    flags = Path("/proc/cpuinfo").read_text().split()
    has_vnni = "avx512_vnni" in flags and "avx512vl" in flags and "avx512bw" in flags
    assert cpu_kernels.best_gguf_isa() == ("avx512-vnni" if has_vnni else "avx2")
    assert cpu_kernels.load_gguf().gguf_isa() == cpu_kernels.best_gguf_isa()
    assert cpu_kernels.load_gguf("avx2").gguf_isa() == "avx2"  # every x86-64 machine here can run this one


def test_a_real_file_used_as_it_is() -> None:
    """SmolLM2's Q4_1 and Q8_0 straight from its file: the same next tokens as the dequantized model."""
    if not model_dir("smollm2-135m-instruct").exists():
        pytest.skip("smollm2-135m-instruct is not pulled")
    path = resolve("smollm2-135m-instruct")
    quantized, exact = load_quantized(path), load(path)
    layer = quantized.model.layers[0].mlp.down
    assert isinstance(layer, GGUFLinear) and layer.qtype == Q.Q4_1
    mapped = raw_rows(next(t for t in open_gguf(path).tensors if t.name == "blk.0.ffn_down.weight"))
    assert torch.equal(mapped, layer.raw) and not layer.raw.numpy().flags.owndata  # the file's bytes, mapped
    tokens = torch.tensor([quantized.tokenizer.encode("The capital of France is Paris. The capital of Italy is")])
    with torch.inference_mode():
        got, want = quantized.model(tokens)[0], exact.model(tokens)[0]
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.9
    assert torch.nn.functional.cosine_similarity(got, want, dim=-1).min() > 0.99


@torch.inference_mode()
def test_a_seeded_sample_on_the_file_is_the_same_alone_and_beside_others() -> None:
    """The engine on SmolLM2's blocks: tokens and log-probabilities to the last bit, whatever batch a
    sequence shares (a row's activations are rounded and summed on their own)."""
    from ponder.engine.native import NativeEngine
    from ponder.engine.sampling import SamplingParams

    if not model_dir("smollm2-135m-instruct").exists():
        pytest.skip("smollm2-135m-instruct is not pulled")
    loaded = load_quantized(resolve("smollm2-135m-instruct"))
    params = SamplingParams(temperature=1.0, max_tokens=12, seed=5)
    prompt, other = list(range(200, 225)), list(range(600, 611))

    def run(prompts: list[list[int]], n: int) -> list[tuple]:
        engine = NativeEngine(loaded, cache_bytes=32 << 20, int8=True)
        return [(s.tokens, s.logprobs) for s in engine.sample(prompts, n, params)[-1]]

    alone = run([prompt], 4)
    assert run([other, prompt], 1) == alone[:1]
    assert len({tokens for tokens, _ in alone}) > 1  # four different samples: the seeds really differ


def test_the_build_can_be_chosen_and_a_wrong_choice_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    from ponder.errors import BadParameter

    monkeypatch.setenv("PONDER_GGUF_ISA", "avx2")
    assert cpu_kernels.best_gguf_isa() == "avx2"
    monkeypatch.setenv("PONDER_GGUF_ISA", "neon")
    with pytest.raises(BadParameter, match="avx2"):
        cpu_kernels.best_gguf_isa()


def test_a_model_whose_fp32_copy_would_not_fit_runs_on_its_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--backend native` on a GGUF file too big to dequantize in this memory takes the file's blocks instead."""
    from ponder.engine import backends

    if not model_dir("smollm2-135m-instruct").exists():
        pytest.skip("smollm2-135m-instruct is not pulled")
    assert not backends.too_big_to_copy(resolve("smollm2-135m-instruct"))  # 0.5 GB as fp32: copied, as before
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 100_000}  # a machine of 400 MB
    monkeypatch.setattr(backends.os, "sysconf", lambda name: pages[name])
    engine = backends.open_generator("smollm2-135m-instruct", "native")
    assert isinstance(engine.model.layers[0].mlp.up, GGUFLinear)
