// A whole decoder layer for one decode step (one new token per row), in one call (see gguf_decode.py).
//
// Compiled after vec_exp.cpp, gguf_matmul.cpp and decode_attention.cpp, in the same unit: it calls their `exp8`,
// `matmul`, `quantize_rows` and `attend`. The layer is the one of models/transformer.py (RMSNorm, q/k/v with their
// biases, rotary embeddings in the Hugging Face layout, grouped-query attention over the paged pool, o, SwiGLU),
// with no Python between its ~25 steps: at one row a step's matmuls take ~20 ms and, called one module at a time,
// PyTorch's dispatch around them took ~10 ms more.
#include <memory>

namespace {

// Activations rounded to int8 for one kind of weight block (32 values, or 256 for the K-quants).
struct QuantizedActs {
    std::vector<int8_t> q;
    std::vector<float> d, xs;
    std::vector<int16_t> s16;
    Acts acts{};

    QuantizedActs(const float* x, int64_t B, int64_t I, int64_t block)
        : q(B * I), d(B * I / block), xs(B * I / QK), s16(B * I / 16) {
        quantize_rows(x, B, I, block, q.data(), d.data(), xs.data(), s16.data());
        acts = Acts{q.data(), d.data(), xs.data(), s16.data(), I};
    }
};

bool is_k_quant(int64_t qtype) { return qtype == GGML_Q4_K || qtype == GGML_Q6_K; }

// y [B, O] = x @ W^T for a GGUF weight `w` [O, row bytes] of type `qtype`, the activations quantized once per
// block size and shared by the weights that read the same input (q, k, v; gate, up).
struct Input {
    const float* x;
    int64_t B, I;
    std::unique_ptr<QuantizedActs> by32, by256;

    const Acts& acts(int64_t qtype) {
        auto& slot = is_k_quant(qtype) ? by256 : by32;
        if (!slot) slot = std::make_unique<QuantizedActs>(x, B, I, is_k_quant(qtype) ? 256 : QK);
        return slot->acts;
    }
};

void linear(Input& in, const torch::Tensor& w, int64_t qtype, float* y) {
    matmul_of_type(qtype, in.acts(qtype), in.B, w.data_ptr<uint8_t>(), w.size(0), y);
}

// out = weight * x / sqrt(mean(x^2) + eps), row by row.
void rms_norm(const float* x, const float* weight, int64_t B, int64_t n, double eps, float* out) {
    for (int64_t b = 0; b < B; ++b) {
        const float* xb = x + b * n;
        double squares = 0;
        for (int64_t i = 0; i < n; ++i) squares += static_cast<double>(xb[i]) * xb[i];
        const float inv = static_cast<float>(1.0 / std::sqrt(squares / n + eps));
        for (int64_t i = 0; i < n; ++i) out[b * n + i] = weight[i] * (xb[i] * inv);
    }
}

// Rotate pairs (i, i + D/2) of each head by the row's angles: cos, sin [B, D/2].
void rotate_heads(float* x, int64_t B, int64_t heads, int64_t D, const float* cos, const float* sin) {
    const int64_t half = D / 2;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < heads; ++h) {
            float* v = x + (b * heads + h) * D;
            for (int64_t i = 0; i < half; ++i) {
                const float c = cos[b * half + i], s = sin[b * half + i], a = v[i], z = v[i + half];
                v[i] = a * c - z * s;
                v[i + half] = z * c + a * s;
            }
        }
}

void add_bias(float* y, const torch::Tensor& bias, int64_t B) {
    if (!bias.defined() || bias.numel() == 0) return;
    const float* bd = bias.data_ptr<float>();
    const int64_t O = bias.numel();
    for (int64_t b = 0; b < B; ++b)
        for (int64_t o = 0; o < O; ++o) y[b * O + o] += bd[o];
}

// g = silu(g) * u = g / (1 + exp(-g)) * u, eight at a time and over the threads.
void silu_times(float* g, const float* u, int64_t n) {
    at::parallel_for(0, n, 4096, [&](int64_t i0, int64_t i1) {
        int64_t i = i0;
        for (; i + 8 <= i1; i += 8) {
            const __m256 x = _mm256_loadu_ps(g + i);
            const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
            _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1), e)),
                                                  _mm256_loadu_ps(u + i)));
        }
        for (; i < i1; ++i) g[i] = g[i] / (1.0f + exp1(-g[i])) * u[i];
    });
}

template <typename T>
void store_rows(torch::Tensor pool, const int64_t* slots, const float* rows, int64_t B) {
    const int64_t width = pool.size(1) * pool.size(2);
    T* pd = pool.data_ptr<T>();
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < width; ++i) pd[slots[b] * width + i] = static_cast<T>(rows[b * width + i]);
}

}  // namespace

// One decode step through one layer, in place on x [B, dim]. weights: the raw GGUF bytes of q, k, v, o, gate,
// up, down; qtypes: their GGML types; norms: the attention's and the MLP's RMSNorm weights; biases: q, k, v's
// (empty tensors where the model has none); cos, sin [B, D/2]: each row's rotary angles; pool_k, pool_v: this
// layer's pool [slots, Hkv, D]; write_slots [B]: where each row's new key and value go; read_slots [B, S] and
// lengths [B]: each row's positions (as decode_attention takes them).
torch::Tensor gguf_decode_layer(torch::Tensor x, std::vector<torch::Tensor> weights, std::vector<int64_t> qtypes,
                                std::vector<torch::Tensor> norms, std::vector<torch::Tensor> biases,
                                torch::Tensor cos, torch::Tensor sin, torch::Tensor pool_k, torch::Tensor pool_v,
                                torch::Tensor write_slots, torch::Tensor read_slots, torch::Tensor lengths,
                                double eps) {
    TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat && x.is_contiguous(), "x: contiguous fp32 [B, dim]");
    TORCH_CHECK(weights.size() == 7 && qtypes.size() == 7 && norms.size() == 2 && biases.size() == 3,
                "weights and qtypes: q, k, v, o, gate, up, down; norms: 2; biases: 3");
    TORCH_CHECK(pool_k.is_contiguous() && pool_v.is_contiguous() && pool_k.scalar_type() == pool_v.scalar_type(),
                "the layer's pool: contiguous k and v of one dtype");
    TORCH_CHECK(write_slots.is_contiguous() && read_slots.is_contiguous() && lengths.is_contiguous() &&
                cos.is_contiguous() && sin.is_contiguous(), "slots, lengths and angles: contiguous");
    const int64_t B = x.size(0), dim = x.size(1), Hkv = pool_k.size(1), D = pool_k.size(2);
    const int64_t H = weights[0].size(0) / D, ffn = weights[4].size(0);
    auto f32 = x.options();
    float* xd = x.data_ptr<float>();

    // Attention: x += o(attend(rope(q), rope(k), v)) over norm(x).
    auto h = torch::empty({B, dim}, f32);
    rms_norm(xd, norms[0].data_ptr<float>(), B, dim, eps, h.data_ptr<float>());
    auto q = torch::empty({B, H, D}, f32), k = torch::empty({B, Hkv, D}, f32), v = torch::empty({B, Hkv, D}, f32);
    {
        Input in{h.data_ptr<float>(), B, dim};
        float* outs[3] = {q.data_ptr<float>(), k.data_ptr<float>(), v.data_ptr<float>()};
        for (int i = 0; i < 3; ++i) {
            linear(in, weights[i], qtypes[i], outs[i]);
            add_bias(outs[i], biases[i], B);
        }
    }
    rotate_heads(q.data_ptr<float>(), B, H, D, cos.data_ptr<float>(), sin.data_ptr<float>());
    rotate_heads(k.data_ptr<float>(), B, Hkv, D, cos.data_ptr<float>(), sin.data_ptr<float>());
    const int64_t* slots = write_slots.data_ptr<int64_t>();
    if (pool_k.scalar_type() == torch::kHalf) {
        store_rows<at::Half>(pool_k, slots, k.data_ptr<float>(), B);
        store_rows<at::Half>(pool_v, slots, v.data_ptr<float>(), B);
    } else {
        store_rows<float>(pool_k, slots, k.data_ptr<float>(), B);
        store_rows<float>(pool_v, slots, v.data_ptr<float>(), B);
    }
    auto y = decode_attention(q, pool_k, pool_v, read_slots, lengths, 1.0 / std::sqrt(static_cast<double>(D)));
    auto o = torch::empty({B, dim}, f32);
    {
        Input in{y.data_ptr<float>(), B, H * D};
        linear(in, weights[3], qtypes[3], o.data_ptr<float>());
    }
    const float* od = o.data_ptr<float>();
    for (int64_t i = 0; i < B * dim; ++i) xd[i] += od[i];

    // MLP: x += down(silu(gate(norm(x))) * up(norm(x))).
    rms_norm(xd, norms[1].data_ptr<float>(), B, dim, eps, h.data_ptr<float>());
    auto gate = torch::empty({B, ffn}, f32), up = torch::empty({B, ffn}, f32);
    {
        Input in{h.data_ptr<float>(), B, dim};
        linear(in, weights[4], qtypes[4], gate.data_ptr<float>());
        linear(in, weights[5], qtypes[5], up.data_ptr<float>());
    }
    float *gd = gate.data_ptr<float>(), *ud = up.data_ptr<float>();
    silu_times(gd, ud, B * ffn);
    {
        Input in{gd, B, ffn};
        linear(in, weights[6], qtypes[6], o.data_ptr<float>());
    }
    for (int64_t i = 0; i < B * dim; ++i) xd[i] += od[i];
    return x;
}
