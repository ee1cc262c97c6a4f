// A token from each row of logits, drawn as sampling.py's `sample` draws it (temperature, then the inverse CDF at
// one uniform number a row; greedy at temperature 0), and each row's log-sum-exp at temperature 1, so that a
// token's log-probability is its logit minus it. PyTorch takes seven passes over the 152k-entry vocabulary for
// this (divide, softmax's three, cumsum, log_softmax's two), about 0.3 ms a row here: 5 ms of a 16-row decode step
// and 40 of a 64-row one. Here: one pass for the maximum, one of exp into a buffer (two where the temperature
// is not 1), and a scan of per-8 sums. No library does this on CPU (llama.cpp's sampler is its own too).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <cmath>
#include <vector>

namespace {

inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(_mm_hadd_ps(s, s));
}

// Sum of exp((x_i - top) * inv) over the row; with `out`, each term is kept there and each 8 terms' sum in
// `sums` (the tail's as one more), so that the draw scans an eighth of the row.
double exp_sum(const float* x, int64_t V, float top, float inv, float* out, float* sums) {
    const __m256 t = _mm256_set1_ps(top), s = _mm256_set1_ps(inv);
    double total = 0;
    int64_t i = 0;
    for (; i + 8 <= V; i += 8) {
        const __m256 e = exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), t), s));
        const float sum = hsum8(e);
        if (out) {
            _mm256_storeu_ps(out + i, e);
            sums[i / 8] = sum;
        }
        total += sum;
    }
    if (i < V) {
        float sum = 0;
        for (int64_t j = i; j < V; ++j) {
            const float e = exp1((x[j] - top) * inv);
            if (out) out[j] = e;
            sum += e;
        }
        if (out) sums[i / 8] = sum;
        total += sum;
    }
    return total;
}

// The row's first maximum (as argmax takes it): the maximum eight lanes at a time, then where it first is.
int64_t first_max(const float* x, int64_t V) {
    float top = x[0];
    int64_t i = 0;
    if (V >= 8) {
        __m256 m = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= V; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        top = _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps(h, h, 1)));
    }
    for (; i < V; ++i) top = std::max(top, x[i]);
    for (int64_t j = 0; j < V; ++j)
        if (x[j] == top) return j;
    return 0;  // NaNs only
}

}  // namespace

// logits [B, V] fp32; u [B], one uniform number in [0, 1) a row (unused when greedy). Returns the tokens [B] and
// the log-sum-exps [B] at temperature 1.
std::vector<torch::Tensor> sample_rows(torch::Tensor logits, double temperature, torch::Tensor u) {
    TORCH_CHECK(logits.dim() == 2 && logits.scalar_type() == torch::kFloat && logits.is_contiguous(),
                "logits: contiguous fp32 [B, V]");
    TORCH_CHECK(u.scalar_type() == torch::kFloat && u.is_contiguous() && u.numel() == logits.size(0), "u: fp32 [B]");
    const int64_t B = logits.size(0), V = logits.size(1);
    auto tokens = torch::empty({B}, logits.options().dtype(torch::kLong));
    auto lse = torch::empty({B}, logits.options());
    const float* ld = logits.data_ptr<float>();
    const float* ud = u.data_ptr<float>();
    int64_t* td = tokens.data_ptr<int64_t>();
    float* sd = lse.data_ptr<float>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        std::vector<float> p(temperature > 0 ? V : 0), sums(temperature > 0 ? (V + 7) / 8 : 0);
        for (int64_t b = b0; b < b1; ++b) {
            const float* x = ld + b * V;
            const int64_t best = first_max(x, V);
            const float top = x[best];
            if (temperature <= 0) {
                td[b] = best;
                sd[b] = top + static_cast<float>(std::log(exp_sum(x, V, top, 1.0f, nullptr, nullptr)));
                continue;
            }
            const float inv = static_cast<float>(1.0 / temperature);
            const double total = exp_sum(x, V, top, inv, p.data(), sums.data());
            sd[b] = top + static_cast<float>(std::log(inv == 1.0f ? total : exp_sum(x, V, top, 1.0f, nullptr, nullptr)));
            // The first token whose cumulative probability passes u * total (searchsorted(right=True) on the CDF):
            // whole eights first, then within the eight.
            const double threshold = ud[b] * total;
            double running = 0;
            int64_t chosen = best;  // (rounding left the draw past the end: the most likely token)
            for (int64_t k = 0; k < static_cast<int64_t>(sums.size()); ++k) {
                if (running + sums[k] <= threshold) {
                    running += sums[k];
                    continue;
                }
                for (int64_t i = 8 * k; i < std::min(V, 8 * k + 8); ++i) {
                    if (p[i] > 0) chosen = i;  // the eight's sum passed: one of its tokens it is, never a masked one
                    if ((running += p[i]) > threshold) break;
                }
                break;
            }
            td[b] = chosen;
        }
    });
    return {tokens, lse};
}
