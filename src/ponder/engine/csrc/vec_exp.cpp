// exp of eight floats at once, for the units that need it (cpu_kernels.py puts this file first in each): the
// sampler's pass over the vocabulary, the SwiGLU and the attention's softmax of the decode step. Scalar std::exp
// took ~0.4 ms a layer on a 16-row step's SwiGLU alone (10 ms of a ~90 ms step).
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

constexpr float LOWEST = -87.3f;  // exp below this is under float's smallest normal: taken as exactly 0
constexpr float HIGHEST = 88.0f;  // exp above this is near float's largest: taken as exp(88), never inf

// exp of eight floats: 2^k * exp(r), k = round(x / ln 2), |r| <= ln 2 / 2, exp(r) by its Taylor polynomial to
// r^6 (relative error under 2e-7). Inputs at or below LOWEST (a masked logit's -inf among them) give 0.
inline __m256 exp8(__m256 x) {
    const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(LOWEST), _CMP_GT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(LOWEST)), _mm256_set1_ps(HIGHEST));
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693145752f), x);  // ln 2 in two parts, for an exact r
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.42860677e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    for (float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    const __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(scale)), keep);
}

inline float exp1(float x) { return x > LOWEST ? std::exp(std::min(x, HIGHEST)) : 0.0f; }

// out[i] = exp(x[i]) for n floats, eight at a time (in place where out == x).
inline void exp_n(const float* x, float* out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, exp8(_mm256_loadu_ps(x + i)));
    for (; i < n; ++i) out[i] = exp1(x[i]);
}

}  // namespace
