// Attention for decode steps, read in place from the paged KV pool (see paged_cache.py). Compiled after
// vec_exp.cpp, in the same unit.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <cmath>
#include <vector>

// Eight keys' or values' entries as fp32, from an fp32 pool or an fp16 one (as llama.cpp keeps its cache).
static inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
static inline __m256 load8(const at::Half* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

template <typename T>
static inline float dot(const float* a, const T* b, int64_t n) {  // n a multiple of 8
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8(b + i), acc);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(_mm_hadd_ps(s, s));
}

// One new token per row: q [B, H, D] (fp32); the layer's pool k, v [slots, Hkv, D] (fp32 or fp16); slots
// [B, S], the pool slot of each of the row's positions; lengths [B], how many of them the row has. Returns
// [B, H, D]. Each (row, kv head) is one task: its keys and values are read once for all the query heads that
// share them (grouped-query attention), straight from their blocks, with no gathered copy.
template <typename T>
static torch::Tensor attend(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor slots,
                            torch::Tensor lengths, double scale) {
    const int64_t B = q.size(0), H = q.size(1), D = q.size(2), Hkv = k.size(1), S = slots.size(1);
    const int64_t group = H / Hkv;
    auto out = torch::zeros_like(q);
    const float* qd = q.data_ptr<float>();
    const T *kd = k.data_ptr<T>(), *vd = v.data_ptr<T>();
    const int64_t *sd = slots.data_ptr<int64_t>(), *ld = lengths.data_ptr<int64_t>();
    float* od = out.data_ptr<float>();
    at::parallel_for(0, B * Hkv, 1, [&](int64_t t0, int64_t t1) {
        std::vector<float> p(group * S);
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t b = t / Hkv, kvh = t % Hkv, n = ld[b];
            const float* qb = qd + (b * H + kvh * group) * D;
            for (int64_t s = 0; s < n; ++s) {
                const T* key = kd + (sd[b * S + s] * Hkv + kvh) * D;
                for (int64_t g = 0; g < group; ++g) p[g * S + s] = dot(qb + g * D, key, D) * scale;
            }
            for (int64_t g = 0; g < group; ++g) {  // softmax, then the weighted sum of values
                float* pg = p.data() + g * S;
                float top = -INFINITY, total = 0;
                for (int64_t s = 0; s < n; ++s) top = std::max(top, pg[s]);
                for (int64_t s = 0; s < n; ++s) pg[s] -= top;
                exp_n(pg, pg, n);  // vec_exp.cpp
                for (int64_t s = 0; s < n; ++s) total += pg[s];
                float* o = od + (b * H + kvh * group + g) * D;
                for (int64_t s = 0; s < n; ++s) {
                    const T* value = vd + (sd[b * S + s] * Hkv + kvh) * D;
                    const __m256 w = _mm256_set1_ps(pg[s] / total);
                    for (int64_t d = 0; d < D; d += 8)
                        _mm256_storeu_ps(o + d, _mm256_fmadd_ps(w, load8(value + d), _mm256_loadu_ps(o + d)));
                }
            }
        }
    });
    return out;
}

torch::Tensor decode_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor slots,
                               torch::Tensor lengths, double scale) {
    TORCH_CHECK(q.size(2) % 8 == 0 && k.scalar_type() == v.scalar_type(), "head_dim a multiple of 8, one pool dtype");
    if (k.scalar_type() == torch::kHalf) return attend<at::Half>(q, k, v, slots, lengths, scale);
    TORCH_CHECK(k.scalar_type() == torch::kFloat, "the KV pool is fp32 or fp16");
    return attend<float>(q, k, v, slots, lengths, scale);
}
