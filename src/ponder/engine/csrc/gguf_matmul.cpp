// GGUF's quantized blocks multiplied as they are (see gguf_linear.py): y = x @ W^T with W the raw bytes of a
// Q8_0, Q4_0, Q4_1, Q5_0, Q4_K or Q6_K tensor, never dequantized to memory.
//
// As llama.cpp does it: the activations are rounded to int8 in blocks of 32 (one fp32 scale a block, and the
// block's sum for the weights' minimums); each weight block of 32 is unpacked into registers as 32 small
// integers and multiplied with the activations' int8 in 32-bit lanes, each lane summing four products. One source, two builds: with AVX-512 VNNI the
// lane sums are one `vpdpbusd`; on AVX2 they are `vpmaddubsw` + `vpmaddwd` (gguf_linear picks the build).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <cstring>

namespace {

constexpr int QK = 32;  // values in a block (a K-quant super-block is 8 of them)

// --- the one instruction that differs between the builds --------------------------------------------------

// Eight int32 lanes, lane i = sum of u[4i..4i+3] * s[4i..4i+3] (u unsigned, s signed bytes).
inline __m256i lane_dots(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    // u <= 63, or |w| <= 128 with |x| <= 127: the int16 pair sums cannot saturate.
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

inline float f16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// --- activations: int8 blocks of 32 ------------------------------------------------------------------------

struct Acts {
    const int8_t* q;    // [B, I]
    const float* d;     // [B, I/32]: a block's scale
    const float* xs;    // [B, I/32]: a block's scale times the sum of its int8 values (for the minimums)
    int64_t I;
};

void quantize_rows(const float* x, int64_t B, int64_t I, int8_t* q, float* d, float* xs) {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
            for (int64_t k = 0; k < I / QK; ++k) {
                const float* xb = x + b * I + k * QK;
                float amax = 0;
                for (int j = 0; j < QK; ++j) amax = std::max(amax, std::abs(xb[j]));
                const float scale = amax / 127, inv = amax > 0 ? 127 / amax : 0;
                d[b * (I / QK) + k] = scale;
                int sum = 0;
                for (int j = 0; j < QK; ++j) {
                    const int v = static_cast<int>(std::nearbyint(xb[j] * inv));
                    q[b * I + k * QK + j] = static_cast<int8_t>(v);
                    sum += v;
                }
                xs[b * (I / QK) + k] = scale * static_cast<float>(sum);
            }
    });
}

// --- weight blocks: unpacked into registers ----------------------------------------------------------------

// One block of 32 weights as the kernel uses it: w_j = lane_scale * u_j - c, with a minimum c (Q4_1, Q4_K), so that
//   sum_j w_j x_j = dx * sum over lanes of lane_scale * lane_dot(u, xq)  -  c * dx * sum_j xq_j.
// Types whose values are centred (q - 8, q - 16, q - 32) give u signed instead, and no c.
struct Block {
    __m256i u;        // 32 bytes: unsigned where the type `has_min`, else signed
    __m256 scale;     // per int32 lane (lanes 0-3 cover values 0..15, lanes 4-7 values 16..31)
    float c;
};

inline __m256i nibbles(const uint8_t* p) {  // 16 bytes -> low nibbles as values 0..15, high as 16..31
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

inline __m256i bits_to_bytes(const uint8_t* p) {  // 32 bits -> byte j is 0xFF where bit j is set
    uint32_t bits;
    std::memcpy(&bits, p, 4);
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    return _mm256_cmpeq_epi8(_mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)), _mm256_set1_epi64x(-1));
}

struct Q8_0 {  // fp16 d, int8 q[32]: w = d * q
    static constexpr int bytes = 34, per = 1;
    static constexpr bool has_min = false;
    static int prepare(const uint8_t*) { return 0; }
    static Block block(int, const uint8_t* p, int) {
        return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2)), _mm256_set1_ps(f16(p)), 0};
    }
};

struct Q4_0 {  // fp16 d, 16 bytes of nibbles: w = d * (q - 8)
    static constexpr int bytes = 18, per = 1;
    static constexpr bool has_min = false;
    static int prepare(const uint8_t*) { return 0; }
    static Block block(int, const uint8_t* p, int) {
        return {_mm256_sub_epi8(nibbles(p + 2), _mm256_set1_epi8(8)), _mm256_set1_ps(f16(p)), 0};
    }
};

struct Q4_1 {  // fp16 d, fp16 m, nibbles: w = d * q + m
    static constexpr int bytes = 20, per = 1;
    static constexpr bool has_min = true;
    static int prepare(const uint8_t*) { return 0; }
    static Block block(int, const uint8_t* p, int) {
        return {nibbles(p + 4), _mm256_set1_ps(f16(p)), -f16(p + 2)};
    }
};

struct Q5_0 {  // fp16 d, 32 high bits, nibbles: w = d * (q - 16), q = nibble | high bit << 4
    static constexpr int bytes = 22, per = 1;
    static constexpr bool has_min = false;
    static int prepare(const uint8_t*) { return 0; }
    static Block block(int, const uint8_t* p, int) {
        const __m256i high = _mm256_and_si256(bits_to_bytes(p + 2), _mm256_set1_epi8(0x10));
        const __m256i q = _mm256_or_si256(nibbles(p + 6), high);
        return {_mm256_sub_epi8(q, _mm256_set1_epi8(16)), _mm256_set1_ps(f16(p)), 0};
    }
};

struct Q4_K {  // a super-block of 256: fp16 d, fp16 dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
    static constexpr int bytes = 144, per = 8;
    static constexpr bool has_min = true;
    struct Scales { float scale[8], min[8]; };
    static Scales prepare(const uint8_t* p) {  // once a super-block: w = d * sc_j * q - dmin * m_j in sub-block j
        const float d = f16(p), dmin = f16(p + 2);
        const uint8_t* s = p + 4;
        Scales out;
        for (int j = 0; j < 8; ++j) {
            const int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
            const int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
            out.scale[j] = d * sc, out.min[j] = dmin * m;
        }
        return out;
    }
    static Block block(const Scales& sm, const uint8_t* p, int j) {
        // values of sub-blocks 2i and 2i + 1 are the low and high nibbles of the same 32 bytes
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 + 32 * (j / 2)));
        const __m256i u = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(b, 4) : b, _mm256_set1_epi8(0x0F));
        return {u, _mm256_set1_ps(sm.scale[j]), 0};  // the minimums are taken a super-block at a time
    }
};

struct Q6_K {  // 256: 128 bytes low nibbles, 64 bytes of 2 high bits, int8 scales[16] (one per 16), fp16 d
    static constexpr int bytes = 210, per = 8;
    static constexpr bool has_min = false;
    static float prepare(const uint8_t* p) { return f16(p + 208); }
    static Block block(float d, const uint8_t* p, int j) {  // w = d * sc * (q - 32), q 6 bits
        const int half = j / 4, part = j % 4;  // each half of 128 values: 4 blocks from 64 + 32 bytes
        const uint8_t* ql = p + 64 * half + 32 * (part % 2);
        const uint8_t* qh = p + 128 + 32 * half;
        const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192) + 2 * j;
        const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
        const __m256i low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
        const __m256i lo = _mm256_and_si256(part < 2 ? low : _mm256_srli_epi16(low, 4), m4);
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(h, 2 * part), m2);
        const float a = d * sc[0], b = d * sc[1];
        const __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
        return {_mm256_sub_epi8(q, _mm256_set1_epi8(32)), _mm256_setr_ps(a, a, a, a, b, b, b, b), 0};
    }
};

inline float hsum(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// RB rows of activations against one weight row: each weight block unpacked once for all RB rows. Every
// row's sum runs over the blocks in order with its own accumulators, whatever RB is: a row's result does not
// depend on the rows beside it (batch invariance: a seeded sample is the same alone or in a batch). Even and
// odd blocks go to two accumulators, so that one row alone is not held up by the latency of each addition.
// (The minimums' scalar sum keeps one: a second, with 8 rows, spilled registers and lost more than it won.)
template <typename T, int RB>
void rows_dot(const uint8_t* w, const Acts& x, int64_t r0, float* y, int64_t O, int64_t o) {
    __m256 even[RB], odd[RB], mins[RB];
    float corr[RB];
    for (int r = 0; r < RB; ++r) even[r] = odd[r] = mins[r] = _mm256_setzero_ps(), corr[r] = 0;
    const int64_t nb = x.I / QK;
    decltype(T::prepare(w)) prepared{};  // what a K-quant's super-block of 8 blocks shares, decoded once
    auto step = [&](int64_t k, __m256 (&acc)[RB]) __attribute__((always_inline)) {
        const uint8_t* unit = w + (k / T::per) * T::bytes;
        if (k % T::per == 0) {
            prepared = T::prepare(unit);
            if constexpr (T::has_min && T::per == 8) {  // Q4_K: the 8 blocks' minimums against their sums at once
                const __m256 m = _mm256_loadu_ps(prepared.min);
                for (int r = 0; r < RB; ++r)
                    mins[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x.xs + (r0 + r) * nb + k), m, mins[r]);
            }
        }
        const Block blk = T::block(prepared, unit, static_cast<int>(k % T::per));
        // Signed weights: |w| times x with w's sign is the same product, with the unsigned operand the
        // instruction needs (as llama.cpp does it)
        const __m256i u = T::has_min ? blk.u : _mm256_sign_epi8(blk.u, blk.u);
        for (int r = 0; r < RB; ++r) {
            const int64_t row = r0 + r;
            __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + row * x.I + k * QK));
            if (!T::has_min) xq = _mm256_sign_epi8(xq, blk.u);
            const __m256 lanes = _mm256_cvtepi32_ps(lane_dots(u, xq));
            acc[r] = _mm256_fmadd_ps(lanes, _mm256_mul_ps(blk.scale, _mm256_set1_ps(x.d[row * nb + k])), acc[r]);
            if constexpr (T::has_min && T::per == 1) corr[r] += blk.c * x.xs[row * nb + k];
        }
    };
    int64_t k = 0;
    for (; k + 1 < nb; k += 2) step(k, even), step(k + 1, odd);
    if (k < nb) step(k, even);
    for (int r = 0; r < RB; ++r)
        y[(r0 + r) * O + o] = hsum(_mm256_sub_ps(_mm256_add_ps(even[r], odd[r]), mins[r])) - corr[r];
}

template <typename T>
void matmul(const Acts& x, int64_t B, const uint8_t* w, int64_t O, float* y) {
    const int64_t row_bytes = x.I / (QK * T::per) * T::bytes;
    at::parallel_for(0, O, 16, [&](int64_t o0, int64_t o1) {
        for (int64_t o = o0; o < o1; ++o) {
            const uint8_t* wr = w + o * row_bytes;
            int64_t r = 0;
#if defined(__AVX512VL__)  // 32 vector registers: 8 rows' accumulators beside the unpacked block
            for (; r + 8 <= B; r += 8) rows_dot<T, 8>(wr, x, r, y, O, o);
#endif
            for (; r + 4 <= B; r += 4) rows_dot<T, 4>(wr, x, r, y, O, o);
            switch (B - r) {
                case 3: rows_dot<T, 3>(wr, x, r, y, O, o); break;
                case 2: rows_dot<T, 2>(wr, x, r, y, O, o); break;
                case 1: rows_dot<T, 1>(wr, x, r, y, O, o); break;
                default: break;
            }
        }
    });
}

}  // namespace

// The GGML type numbers of gguf's GGMLQuantizationType.
enum : int64_t { GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q8_0 = 8, GGML_Q4_K = 12, GGML_Q6_K = 14 };

// y [B, O] = x [B, I] @ W^T, W the raw GGUF bytes [O, row bytes] of type `qtype`.
torch::Tensor gguf_matmul(torch::Tensor x, torch::Tensor w, int64_t qtype) {
    TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat && x.is_contiguous(), "x: contiguous fp32 [B, I]");
    TORCH_CHECK(w.dim() == 2 && w.scalar_type() == torch::kUInt8 && w.is_contiguous(), "w: contiguous uint8 [O, bytes]");
    const int64_t B = x.size(0), I = x.size(1), O = w.size(0);
    TORCH_CHECK(I % QK == 0, "the input width must be a multiple of 32");
    auto q = torch::empty({B, I}, x.options().dtype(torch::kInt8));
    auto d = torch::empty({B, I / QK}, x.options());
    auto xs = torch::empty({B, I / QK}, x.options());
    quantize_rows(x.data_ptr<float>(), B, I, q.data_ptr<int8_t>(), d.data_ptr<float>(), xs.data_ptr<float>());
    const Acts acts{q.data_ptr<int8_t>(), d.data_ptr<float>(), xs.data_ptr<float>(), I};
    auto y = torch::empty({B, O}, x.options());
    const uint8_t* wd = w.data_ptr<uint8_t>();
    float* yd = y.data_ptr<float>();
    switch (qtype) {
        case GGML_Q8_0: matmul<Q8_0>(acts, B, wd, O, yd); break;
        case GGML_Q4_0: matmul<Q4_0>(acts, B, wd, O, yd); break;
        case GGML_Q4_1: matmul<Q4_1>(acts, B, wd, O, yd); break;
        case GGML_Q5_0: matmul<Q5_0>(acts, B, wd, O, yd); break;
        case GGML_Q4_K: TORCH_CHECK(I % 256 == 0, "K-quants need a width that is a multiple of 256");
                        matmul<Q4_K>(acts, B, wd, O, yd); break;
        case GGML_Q6_K: TORCH_CHECK(I % 256 == 0, "K-quants need a width that is a multiple of 256");
                        matmul<Q6_K>(acts, B, wd, O, yd); break;
        default: TORCH_CHECK(false, "GGML type ", qtype, " has no kernel here");
    }
    return y;
}

// The instruction set this build uses, so a test can tell the two builds apart.
std::string gguf_isa() {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return "avx512-vnni";
#else
    return "avx2";
#endif
}
