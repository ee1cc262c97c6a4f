"""The fast CPU path: weight-only int8 linear layers with a small AVX2 kernel of ponder's own.

Decoding is bound by reading weights: fp32 Qwen2.5-0.5B reads 2 GB per step. Stored as int8 with one
fp32 scale per output row, it reads a quarter of that; the kernel widens each group of 8 weights to
fp32 once and uses them for every row of the batch, so one sequence runs at memory speed and a batch
of 16 reuses each load 16 times. Activations stay fp32 (unlike llama.cpp, which rounds them to 8
bits too). `quantize_model` swaps the layers in place, as gpt-fast does; the fp32 model remains the
exact reference. The kernel compiles on first use (torch.utils.cpp_extension, about a minute) and is
cached by torch; on a CPU without AVX2 or without a compiler, `available()` says so and the caller
keeps fp32.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(_mm_hadd_ps(s, s));
}

// One tile: RB rows of x against RO rows of w, RB * RO accumulators in registers. Each 8 weights are
// widened to fp32 once and used for RB rows; each 8 activations are loaded once for RO outputs.
template <int RB, int RO>
static void tile(const float* x, const int8_t* w, const float* scale, float* y, int64_t I, int64_t O,
                 int64_t b0, int64_t o0) {
    __m256 acc[RB][RO];
    for (int r = 0; r < RB; ++r)
        for (int c = 0; c < RO; ++c) acc[r][c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < I; i += 8) {
        __m256 wf[RO];
        for (int c = 0; c < RO; ++c)
            wf[c] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + (o0 + c) * I + i))));
        for (int r = 0; r < RB; ++r) {
            __m256 xv = _mm256_loadu_ps(x + (b0 + r) * I + i);
            for (int c = 0; c < RO; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wf[c], acc[r][c]);
        }
    }
    for (int r = 0; r < RB; ++r)
        for (int c = 0; c < RO; ++c) y[(b0 + r) * O + o0 + c] = hsum(acc[r][c]) * scale[o0 + c];
}

// y[b, o] = scale[o] * sum_i x[b, i] * w[o, i]: w int8 [O, I], x fp32 [B, I]; I and O multiples of 8.
torch::Tensor int8_linear(torch::Tensor x, torch::Tensor w, torch::Tensor scale) {
    const int64_t B = x.size(0), I = x.size(1), O = w.size(0);
    const int64_t Bp = B == 1 ? 1 : (B + 3) / 4 * 4;  // batches run in tiles of 4 rows: pad with zeros
    torch::Tensor xp = Bp == B ? x : torch::cat({x, torch::zeros({Bp - B, I}, x.options())});
    auto y = torch::empty({Bp, O}, x.options());
    const float* xd = xp.data_ptr<float>();
    const int8_t* wd = w.data_ptr<int8_t>();
    const float* sd = scale.data_ptr<float>();
    float* yd = y.data_ptr<float>();
    at::parallel_for(0, O / 8, 1, [&](int64_t g0, int64_t g1) {
        for (int64_t g = g0; g < g1; ++g) {
            if (Bp == 1) {
                for (int64_t c = 0; c < 8; c += 4) tile<1, 4>(xd, wd, sd, yd, I, O, 0, g * 8 + c);  // one sequence
            } else {
                for (int64_t b0 = 0; b0 < Bp; b0 += 4)
                    for (int64_t c = 0; c < 8; c += 2) tile<4, 2>(xd, wd, sd, yd, I, O, b0, g * 8 + c);
            }
        }
    });
    return Bp == B ? y : y.narrow(0, 0, B).contiguous();
}
"""


@functools.cache
def _kernel():  # noqa: ANN202
    from torch.utils.cpp_extension import load_inline

    return load_inline("ponder_int8_linear", cpp_sources=_SOURCE, functions=["int8_linear"],
                       extra_cflags=["-O3", "-mavx2", "-mfma", "-funroll-loops", "-fopenmp"],
                       extra_ldflags=["-fopenmp"], verbose=False)


@functools.cache
def available() -> bool:
    """AVX2 and FMA on this CPU, and the kernel compiles."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2" not in flags or " fma" not in flags:
        return False
    try:
        _kernel()
    except Exception as e:  # no compiler, no ninja: the fp32 path still works
        log.warning("the int8 kernel did not build (%s): staying with fp32", e)
        return False
    return True


class Int8Linear(nn.Module):
    """nn.Linear with int8 weights, one fp32 scale per output row (symmetric), fp32 activations."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127
        self.register_buffer("weight", torch.round(w / scale[:, None]).to(torch.int8).contiguous())
        self.register_buffer("scale", scale.contiguous())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        y = _kernel().int8_linear(x.reshape(-1, shape[-1]).float().contiguous(), self.weight, self.scale)
        y = y.reshape(*shape[:-1], -1)
        return y if self.bias is None else y + self.bias


def quantize_model(model: nn.Module) -> nn.Module:
    """Swap every nn.Linear whose sizes are multiples of 8 (all of the family's) for an Int8Linear, in place."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear) and child.in_features % 8 == 0 and child.out_features % 8 == 0:
            setattr(model, name, Int8Linear(child))
        else:
            quantize_model(child)
    return model
