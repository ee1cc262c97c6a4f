// Weight-only int8 linear layers for AVX2 + FMA (see int8_linear.py).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <immintrin.h>

// The weights are packed [O/16][I][16]: each block of 16 output rows column by column, so that a block
// is one sequential stream and a column's 16 weights widen to two fp32 vectors.
static inline void widen16(const int8_t* w, __m256& lo, __m256& hi) {
    lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w))));
    hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + 8))));
}

// RB rows of x against G consecutive blocks of 16 outputs: an RB x 16G tile, each column's weights
// widened once and used for all RB rows. Every output sums its I products in order, one FMA chain per 8
// outputs, whatever RB and G are, so a row's result does not depend on the batch it shares (batch
// invariance: a seeded sample gives the same tokens alone or beside others). The chains side by side
// (2 x RB x G, 8 at most) hide the FMA latency: one row runs against 4 blocks at once, two against 2.
// RB <= 4: with 5 or 6 rows (12 accumulators of AVX2's 16 registers) the tile ran at half speed, spilled.
template <int RB, int G>
static void block_rows(const float* x, const int8_t* wb, const float* scale, float* y, int64_t I, int64_t O,
                       int64_t o0) {
    __m256 acc[RB][G][2];
    for (int r = 0; r < RB; ++r)
        for (int g = 0; g < G; ++g) acc[r][g][0] = acc[r][g][1] = _mm256_setzero_ps();
    for (int64_t i = 0; i < I; ++i) {
        for (int g = 0; g < G; ++g) {
            __m256 lo, hi;
            widen16(wb + (g * I + i) * 16, lo, hi);
            for (int r = 0; r < RB; ++r) {
                __m256 xv = _mm256_broadcast_ss(x + r * I + i);
                acc[r][g][0] = _mm256_fmadd_ps(xv, lo, acc[r][g][0]);
                acc[r][g][1] = _mm256_fmadd_ps(xv, hi, acc[r][g][1]);
            }
        }
    }
    for (int g = 0; g < G; ++g) {
        const int64_t o = o0 + g * 16;
        const __m256 s0 = _mm256_loadu_ps(scale + o), s1 = _mm256_loadu_ps(scale + o + 8);
        for (int r = 0; r < RB; ++r) {
            _mm256_storeu_ps(y + r * O + o, _mm256_mul_ps(acc[r][g][0], s0));
            _mm256_storeu_ps(y + r * O + o + 8, _mm256_mul_ps(acc[r][g][1], s1));
        }
    }
}

// One tile of `rows` rows against blocks [g, g + n): one row 4 blocks at a time, two rows 2, then one by one.
static void tile(int64_t rows, const float* x, const int8_t* wd, const float* sd, float* y, int64_t I, int64_t O,
                 int64_t g, int64_t n) {
    for (const int64_t end = g + n; g < end;) {
        const int8_t* wb = wd + g * 16 * I;
        if (rows == 1 && g + 4 <= end) { block_rows<1, 4>(x, wb, sd, y, I, O, g * 16); g += 4; continue; }
        if (rows == 2 && g + 2 <= end) { block_rows<2, 2>(x, wb, sd, y, I, O, g * 16); g += 2; continue; }
        switch (rows) {
            case 1: block_rows<1, 1>(x, wb, sd, y, I, O, g * 16); break;
            case 2: block_rows<2, 1>(x, wb, sd, y, I, O, g * 16); break;
            case 3: block_rows<3, 1>(x, wb, sd, y, I, O, g * 16); break;
            default: block_rows<4, 1>(x, wb, sd, y, I, O, g * 16); break;
        }
        g += 1;
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
    const int64_t blocks = O / 16;
    at::parallel_for(0, (blocks + 3) / 4, 1, [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q) {  // four blocks (a single row's group) at a time, from cache for every tile
            const int64_t g = q * 4, n = std::min<int64_t>(4, blocks - g);
            for (int64_t t = 0, b = 0; t < tiles; ++t) {
                const int64_t rows = B / tiles + (t < B % tiles);
                tile(rows, xd + b * I, wd, sd, yd + b * O, I, O, g, n);
                b += rows;
            }
        }
    });
    return y;
}
