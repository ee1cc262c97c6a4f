// Weight-only int8 linear layers for AVX2 + FMA (see int8_linear.py).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

// The weights are packed [O/16][I][16]: each block of 16 output rows column by column, so that a block
// is one sequential stream and a column's 16 weights widen to two fp32 vectors.
static inline void widen16(const int8_t* w, __m256& lo, __m256& hi) {
    lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w))));
    hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + 8))));
}

// RB rows of x against one block of 16 outputs, an RB x 16 outer-product tile: each column's weights
// are widened once and used for all RB rows; 2 x RB accumulators stay in registers. RB <= 4: with 5 or
// 6 rows (12 accumulators of AVX2's 16 registers) the tile ran at half speed here, spilled. With one or
// two rows, U columns in flight keep the FMA chains from waiting on each other.
template <int RB, int U = (RB == 1 ? 4 : RB == 2 ? 2 : 1)>
static void block_rows(const float* x, const int8_t* wb, const float* scale, float* y, int64_t I, int64_t O,
                       int64_t o0) {
    __m256 acc[RB][U][2];
    for (int r = 0; r < RB; ++r)
        for (int u = 0; u < U; ++u) acc[r][u][0] = acc[r][u][1] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + U <= I; i += U) {
        for (int u = 0; u < U; ++u) {
            __m256 lo, hi;
            widen16(wb + (i + u) * 16, lo, hi);
            for (int r = 0; r < RB; ++r) {
                __m256 xv = _mm256_broadcast_ss(x + r * I + i + u);
                acc[r][u][0] = _mm256_fmadd_ps(xv, lo, acc[r][u][0]);
                acc[r][u][1] = _mm256_fmadd_ps(xv, hi, acc[r][u][1]);
            }
        }
    }
    for (; i < I; ++i) {  // the I % U columns left
        __m256 lo, hi;
        widen16(wb + i * 16, lo, hi);
        for (int r = 0; r < RB; ++r) {
            __m256 xv = _mm256_broadcast_ss(x + r * I + i);
            acc[r][0][0] = _mm256_fmadd_ps(xv, lo, acc[r][0][0]);
            acc[r][0][1] = _mm256_fmadd_ps(xv, hi, acc[r][0][1]);
        }
    }
    const __m256 s0 = _mm256_loadu_ps(scale + o0), s1 = _mm256_loadu_ps(scale + o0 + 8);
    for (int r = 0; r < RB; ++r) {
        for (int u = 1; u < U; ++u) {
            acc[r][0][0] = _mm256_add_ps(acc[r][0][0], acc[r][u][0]);
            acc[r][0][1] = _mm256_add_ps(acc[r][0][1], acc[r][u][1]);
        }
        _mm256_storeu_ps(y + r * O + o0, _mm256_mul_ps(acc[r][0][0], s0));
        _mm256_storeu_ps(y + r * O + o0 + 8, _mm256_mul_ps(acc[r][0][1], s1));
    }
}

// y[b, o] = scale[o] * sum_i x[b, i] * w[o, i]: w int8 packed [O/16, I, 16], x fp32 [B, I].
torch::Tensor int8_linear(torch::Tensor x, torch::Tensor w, torch::Tensor scale) {
    const int64_t B = x.size(0), I = x.size(1), O = w.size(0) * 16;
    auto y = torch::empty({B, O}, x.options());
    const float* xd = x.data_ptr<float>();
    const int8_t* wd = w.data_ptr<int8_t>();
    const float* sd = scale.data_ptr<float>();
    float* yd = y.data_ptr<float>();
    const int64_t tiles = (B + 3) / 4;  // the rows split evenly over the fewest tiles of at most 4
    at::parallel_for(0, O / 16, 1, [&](int64_t g0, int64_t g1) {
        for (int64_t g = g0; g < g1; ++g) {
            const int8_t* wb = wd + g * 16 * I;
            for (int64_t t = 0, b = 0; t < tiles; ++t) {
                const int64_t rows = B / tiles + (t < B % tiles);
                const float* xb = xd + b * I;
                float* yb = yd + b * O;
                switch (rows) {
                    case 1: block_rows<1>(xb, wb, sd, yb, I, O, g * 16); break;
                    case 2: block_rows<2>(xb, wb, sd, yb, I, O, g * 16); break;
                    case 3: block_rows<3>(xb, wb, sd, yb, I, O, g * 16); break;
                    default: block_rows<4>(xb, wb, sd, yb, I, O, g * 16); break;
                }
                b += rows;
            }
        }
    });
    return y;
}
