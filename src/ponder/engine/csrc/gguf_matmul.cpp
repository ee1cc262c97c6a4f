// GGUF's quantized blocks multiplied as they are (see gguf_linear.py): y = x @ W^T with W the raw bytes of a
// Q8_0, Q4_0, Q4_1, Q5_0, Q4_K or Q6_K tensor, never dequantized to memory.
//
// As llama.cpp does it: the activations are rounded to int8 in blocks of 32 (of 256 against the K-quants,
// llama.cpp's Q8_K), with one fp32 scale a block and the sums the weights' offsets and minimums need; each
// weight block of 32 is unpacked into registers as 32 small integers and multiplied with the activations'
// int8 in 32-bit lanes, each lane summing four products. One source, two builds: with AVX-512 VNNI the
// lane sums are one `vpdpbusd`; on AVX2 they are `vpmaddubsw` + `vpmaddwd` (gguf_linear picks the build).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <cstring>
#include <type_traits>

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

// acc + lane_dots(u, s), in one instruction where there is one.
inline __m256i add_lane_dots(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, lane_dots(u, s));
#endif
}

inline float f16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// --- activations: int8 blocks of 32 (of 256 for the K-quants, as llama.cpp's Q8_K) --------------------------

struct Acts {
    const int8_t* q;    // [B, I]
    const float* d;     // [B, I/block]: a block's scale
    const float* xs;    // [B, I/32]: the block's scale times the sum of each 32 int8 values (for the minimums)
    const int16_t* s16; // [B, I/16]: the sum of each 16 int8 values (for Q6_K's offset)
    int64_t I;
};

void quantize_rows(const float* x, int64_t B, int64_t I, int64_t block, int8_t* q, float* d, float* xs,
                   int16_t* s16) {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
            for (int64_t k = 0; k < I / block; ++k) {
                const float* xb = x + b * I + k * block;
                float amax = 0;
                for (int j = 0; j < block; ++j) amax = std::max(amax, std::abs(xb[j]));
                const float scale = amax / 127, inv = amax > 0 ? 127 / amax : 0;
                d[b * (I / block) + k] = scale;
                for (int g = 0; g < block / 16; ++g) {
                    int sum = 0;
                    for (int j = 16 * g; j < 16 * g + 16; ++j) {
                        const int v = static_cast<int>(std::nearbyint(xb[j] * inv));
                        q[b * I + k * block + j] = static_cast<int8_t>(v);
                        sum += v;
                    }
                    s16[(b * I + k * block) / 16 + g] = static_cast<int16_t>(sum);
                }
                for (int h = 0; h < block / QK; ++h) {
                    const int64_t at = (b * I + k * block) / 16 + 2 * h;
                    xs[(b * I + k * block) / QK + h] = scale * static_cast<float>(s16[at] + s16[at + 1]);
                }
            }
    });
}

// --- weight blocks: unpacked into registers ----------------------------------------------------------------

// One block of 32 weights as the kernel uses it: w_j = d * u_j - c, with a minimum c (Q4_1), so that
//   sum_j w_j x_j = d * dx * sum over lanes of lane_dot(u, xq)  -  c * dx * sum_j xq_j.
// Types whose values are centred (q - 8, q - 16) give u signed instead, and no c.
struct Block {
    __m256i u;  // 32 bytes: unsigned where the type `has_min`, else signed
    float d, c;
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

// Each type also gives its stored values unsigned (`values`: w = d * (value - offset), plus Q4_1's minimum) for
// the grouped kernel below. Q8_0's values + 128 reach 255: only `vpdpbusd` takes them exactly (AVX2's int16
// pair sums would saturate), so on AVX2 Q8_0 gives its values signed (`signed_values`) and the grouped kernel
// multiplies |w| by x with w's sign, as the one-row kernel does.
struct Q8_0 {  // fp16 d, int8 q[32]: w = d * q
    static constexpr int bytes = 34;
    static constexpr bool has_min = false, grouped = true;
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    static constexpr int offset = 128;
    static constexpr bool signed_values = false;
    static __m256i values(const uint8_t* p) {
        return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2)), _mm256_set1_epi8(-128));
    }
#else
    static constexpr int offset = 0;
    static constexpr bool signed_values = true;
    static __m256i values(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2)); }
#endif
    static Block block(const uint8_t* p) {
        return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2)), f16(p), 0};
    }
};

struct Q4_0 {  // fp16 d, 16 bytes of nibbles: w = d * (q - 8)
    static constexpr int bytes = 18, offset = 8;
    static constexpr bool has_min = false, grouped = true, signed_values = false;
    static Block block(const uint8_t* p) { return {_mm256_sub_epi8(values(p), _mm256_set1_epi8(8)), f16(p), 0}; }
    static __m256i values(const uint8_t* p) { return nibbles(p + 2); }
};

struct Q4_1 {  // fp16 d, fp16 m, nibbles: w = d * q + m
    static constexpr int bytes = 20, offset = 0;
    static constexpr bool has_min = true, grouped = true, signed_values = false;
    static Block block(const uint8_t* p) { return {values(p), f16(p), -f16(p + 2)}; }
    static __m256i values(const uint8_t* p) { return nibbles(p + 4); }
};

struct Q5_0 {  // fp16 d, 32 high bits, nibbles: w = d * (q - 16), q = nibble | high bit << 4
    static constexpr int bytes = 22, offset = 16;
    static constexpr bool has_min = false, grouped = true, signed_values = false;
    static Block block(const uint8_t* p) { return {_mm256_sub_epi8(values(p), _mm256_set1_epi8(16)), f16(p), 0}; }
    static __m256i values(const uint8_t* p) {
        return _mm256_or_si256(nibbles(p + 6), _mm256_and_si256(bits_to_bytes(p + 2), _mm256_set1_epi8(0x10)));
    }
};

inline int32_t hsum_epi32(__m256i v) {
    const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    const __m128i t = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    return _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32(t, 1)));
}

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
    __m256 even[RB], odd[RB];
    float corr[RB];
    for (int r = 0; r < RB; ++r) even[r] = odd[r] = _mm256_setzero_ps(), corr[r] = 0;
    const int64_t nb = x.I / QK;
    auto step = [&](int64_t k, __m256 (&acc)[RB]) __attribute__((always_inline)) {
        const Block blk = T::block(w + k * T::bytes);
        // Signed weights: |w| times x with w's sign is the same product, with the unsigned operand the
        // instruction needs (as llama.cpp does it)
        const __m256i u = T::has_min ? blk.u : _mm256_sign_epi8(blk.u, blk.u);
        for (int r = 0; r < RB; ++r) {
            const int64_t row = r0 + r;
            __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + row * x.I + k * QK));
            if (!T::has_min) xq = _mm256_sign_epi8(xq, blk.u);
            const __m256 lanes = _mm256_cvtepi32_ps(lane_dots(u, xq));
            acc[r] = _mm256_fmadd_ps(lanes, _mm256_set1_ps(blk.d * x.d[row * nb + k]), acc[r]);
            if constexpr (T::has_min) corr[r] += blk.c * x.xs[row * nb + k];
        }
    };
    int64_t k = 0;
    for (; k + 1 < nb; k += 2) step(k, even), step(k + 1, odd);
    if (k < nb) step(k, even);
    for (int r = 0; r < RB; ++r)
        y[(r0 + r) * O + o] = hsum(_mm256_add_ps(even[r], odd[r])) - corr[r];
}

// --- eight weight rows at a time (blocks of 32) -------------------------------------------------------------

// Lane j of the result = the sum of v[j]'s eight lanes: eight dot products summed across their lanes at once.
inline __m256i sum_lanes8(const __m256i (&v)[8]) {
    const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

// The 8 x 8 transpose of 4-byte groups: col[g] lane j = group g (bytes 4g..4g+3) of u[j].
inline void transpose8(const __m256i (&u)[8], __m256i (&col)[8]) {
    __m256i t[8], q[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(u[i], u[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(u[i], u[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        q[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        q[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        q[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        q[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int g = 0; g < 4; ++g) {
        col[g] = _mm256_permute2x128_si256(q[g], q[g + 4], 0x20);
        col[g + 4] = _mm256_permute2x128_si256(q[g], q[g + 4], 0x31);
    }
}

// RB rows of activations against eight weight rows. The one-row kernel above pays, for every block and every
// (activation row, weight row) pair, a sign fix, a conversion to float and a scaled add; here each block's
// eight dot products are summed across lanes into one vector (a lane per weight row), the weights' offset is
// taken off in integers (exact: value - offset is the stored weight), and one conversion and one scaled add
// serve all eight. With 4 or more activation rows the weight block is first transposed (lane j = weight row j,
// as llama.cpp's repacked layouts hold it, here done in registers) so that each row needs eight instructions
// and no sum across lanes. Both ways give the same integer sums, so a row's bits do not depend on RB; its
// blocks are added in order (batch invariance). Which kernel a weight row gets depends on O alone.
template <typename T, int RB>
void group_dot(const uint8_t* w, int64_t row_bytes, const Acts& x, int64_t r0, float* y, int64_t O, int64_t o0) {
    __m256 acc[RB];
    for (int r = 0; r < RB; ++r) acc[r] = _mm256_setzero_ps();
    const int64_t nb = x.I / QK;
    // The eight rows are one stretch of memory read eight places at a time, which the hardware prefetcher does
    // not follow (from DRAM, an output layer ran 3x slower than one row at a time): each block asks for its share
    // of the next group's stretch, in order.
    constexpr int lines = (8 * T::bytes + 63) / 64;
    const char* next = reinterpret_cast<const char*>(w + 16 * row_bytes);
    for (int64_t k = 0; k < nb; ++k) {
        for (int l = 0; l < lines; ++l) _mm_prefetch(next + (k * lines + l) * 64, _MM_HINT_T0);
        __m256i u[8];
        alignas(16) uint16_t d16[8], m16[8];  // fp16 scales (and minimums), converted eight at once
        for (int j = 0; j < 8; ++j) {
            const uint8_t* p = w + j * row_bytes + k * T::bytes;
            u[j] = T::values(p);
            std::memcpy(d16 + j, p, 2);
            if constexpr (T::has_min) std::memcpy(m16 + j, p + 2, 2);
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(d16)));
        __m256 mw = _mm256_setzero_ps();
        if constexpr (T::has_min) mw = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(m16)));
        constexpr bool transposed = RB >= 4;
        __m256i col[8];
        __m256i mag[8];  // signed values: |w| (unsigned as the instruction needs), the sign moved onto x
        if constexpr (transposed) {
            transpose8(u, col);
            if constexpr (T::signed_values)
                for (int g = 0; g < 8; ++g) mag[g] = _mm256_sign_epi8(col[g], col[g]);
        }
        for (int r = 0; r < RB; ++r) {
            const int64_t row = r0 + r;
            const int8_t* xb = x.q + row * x.I + k * QK;
            __m256i sums = _mm256_setzero_si256();
            if constexpr (transposed) {
                for (int g = 0; g < 8; ++g) {
                    int32_t group;
                    std::memcpy(&group, xb + 4 * g, 4);
                    const __m256i xg = _mm256_set1_epi32(group);
                    if constexpr (T::signed_values) sums = add_lane_dots(sums, mag[g], _mm256_sign_epi8(xg, col[g]));
                    else sums = add_lane_dots(sums, col[g], xg);
                }
            } else {
                const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb));
                __m256i dots[8];
                for (int j = 0; j < 8; ++j)
                    dots[j] = T::signed_values ? lane_dots(_mm256_sign_epi8(u[j], u[j]), _mm256_sign_epi8(xq, u[j]))
                                               : lane_dots(u[j], xq);
                sums = sum_lanes8(dots);
            }
            if constexpr (T::offset != 0) {
                const int16_t* s = x.s16 + (row * x.I + k * QK) / 16;
                sums = _mm256_sub_epi32(sums, _mm256_set1_epi32(T::offset * (s[0] + s[1])));
            }
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(dw, _mm256_set1_ps(x.d[row * nb + k])),
                                     acc[r]);
            if constexpr (T::has_min) acc[r] = _mm256_fmadd_ps(mw, _mm256_set1_ps(x.xs[row * nb + k]), acc[r]);
        }
    }
    for (int r = 0; r < RB; ++r) _mm256_storeu_ps(y + (r0 + r) * O + o0, acc[r]);
}

// --- K-quants: super-blocks of 256 against activations in blocks of 256 --------------------------------------

// As llama.cpp's Q4_K x Q8_K: each 32 (or 16) values' int16 pair products are multiplied by their integer
// sub-scale in the same instruction that sums them into int32 lanes (one `vpdpwssd` with AVX-512 VNNI, else
// `vpmaddwd` + add), and the super-block is converted to float once, not each block of 32.
inline __m256i add_scaled(__m256i acc, __m256i pairs, __m256i scales) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpwssd_epi32(acc, pairs, scales);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scales));
#endif
}

// Independent int32 chains per row, so that a row is not held up by each addition's latency: 4 for one or two
// rows, 2 where more rows fill the registers. Integer sums are exact in any order: the count changes no bit.
template <int RB>
constexpr int chains() { return RB <= 2 ? 4 : 2; }

template <int RB>
inline __m256i sum_chains(const __m256i (&c)[chains<RB>()]) {
    __m256i t = c[0];
    for (int i = 1; i < chains<RB>(); ++i) t = _mm256_add_epi32(t, c[i]);
    return t;
}

struct Q4_K {  // fp16 d, fp16 dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles: w = d*sc*q - dmin*m
    static constexpr int bytes = 144;
    // Not grouped: measured against `group_dot_k`, this one-row kernel is as fast at 16 rows and 1.2-1.5x
    // faster at 1 to 4 (its minimums are one vector a super-block; Q6_K's offsets and 16 scales are not).
    static constexpr bool grouped = false;
    // The 12 bytes of 6-bit scales and mins to 8 scale bytes then 8 min bytes, with llama.cpp's masks
    // (a loop over the 16 values, byte by byte, cost more than all the multiplications of a row).
    static void scales_and_mins(const uint8_t* p, uint8_t (&sc)[16]) {
        uint32_t u[4];
        std::memcpy(u, p + 4, 12);
        u[3] = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
        const uint32_t mins_low = u[1] & 0x3f3f3f3f;
        u[1] = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
        u[2] = mins_low;
        u[0] &= 0x3f3f3f3f;
        std::memcpy(sc, u, 16);
    }
    template <int RB>
    static void super_block(const uint8_t* p, const Acts& x, int64_t r0, int64_t s, __m256 (&acc)[RB]) {
        uint8_t sc[16];  // sc[0..7] the scales, sc[8..15] the mins
        scales_and_mins(p, sc);
        const float d = f16(p);
        const __m256 mins = _mm256_mul_ps(_mm256_set1_ps(f16(p + 2)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc + 8)))));
        __m256i isum[RB][chains<RB>()];
        for (int r = 0; r < RB; ++r)
            for (int c = 0; c < chains<RB>(); ++c) isum[r][c] = _mm256_setzero_si256();
        for (int i = 0; i < 4; ++i) {  // 32 bytes: sub-block 2i in the low nibbles, 2i + 1 in the high
            const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 + 32 * i));
            const __m256i lo = _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), _mm256_set1_epi8(0x0F));
            const __m256i s_lo = _mm256_set1_epi16(static_cast<int16_t>(sc[2 * i]));
            const __m256i s_hi = _mm256_set1_epi16(static_cast<int16_t>(sc[2 * i + 1]));
            for (int r = 0; r < RB; ++r) {
                const int8_t* xq = x.q + (r0 + r) * x.I + 256 * s + 64 * i;
                const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
                const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32));
                __m256i& a = isum[r][(2 * i) % chains<RB>()];
                __m256i& b = isum[r][(2 * i + 1) % chains<RB>()];
                a = add_scaled(a, _mm256_maddubs_epi16(lo, x0), s_lo);
                b = add_scaled(b, _mm256_maddubs_epi16(hi, x1), s_hi);
            }
        }
        for (int r = 0; r < RB; ++r) {
            const int64_t row = r0 + r;
            const __m256 dots = _mm256_cvtepi32_ps(sum_chains<RB>(isum[r]));
            acc[r] = _mm256_fmadd_ps(dots, _mm256_set1_ps(d * x.d[row * (x.I / 256) + s]), acc[r]);
            acc[r] = _mm256_fnmadd_ps(_mm256_loadu_ps(x.xs + row * (x.I / QK) + 8 * s), mins, acc[r]);
        }
    }
};

struct Q6_K {  // 128 bytes of low nibbles, 64 of 2 high bits, int8 scales[16] (one per 16), fp16 d: w = d*sc*(q - 32)
    static constexpr int bytes = 210;
    static constexpr bool grouped = true;  // group_dot_k
    // Values 32j .. 32j + 31 (0..63): 4 from each half's 64 + 32 bytes.
    static __m256i chunk(const uint8_t* p, int j) {
        const int half = j / 4, part = j % 4;
        const __m256i low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * half + 32 * (part % 2)));
        const __m256i lo = _mm256_and_si256(part < 2 ? low : _mm256_srli_epi16(low, 4), _mm256_set1_epi8(0x0F));
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 128 + 32 * half));
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(h, 2 * part), _mm256_set1_epi8(3));
        return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
    }
    // For chunk j's int16 pair sums: lanes 0-7 hold values 0..15 (scale 2j), lanes 8-15 values 16..31 (2j + 1).
    static __m256i pair_scales(const int8_t* sc, int j) {
        return _mm256_set_m128i(_mm_set1_epi16(sc[2 * j + 1]), _mm_set1_epi16(sc[2 * j]));
    }
    // Each row's integer dot product with the super-block (scales and offset in), as `group_dot_k` has it.
    template <int RB>
    static void super_block_totals(const uint8_t* p, const Acts& x, int64_t r0, int64_t s, int32_t (&total)[RB]) {
        const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192);
        const __m256i all_scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
        __m256i isum[RB][chains<RB>()];
        for (int r = 0; r < RB; ++r) {  // the offset: 32 * sum over each 16 of scale * their activations' sum
            const __m256i sums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.s16 + ((r0 + r) * x.I + 256 * s) / 16));
            isum[r][0] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sums, all_scales), 5));
            for (int c = 1; c < chains<RB>(); ++c) isum[r][c] = _mm256_setzero_si256();
        }
        for (int j = 0; j < 8; ++j) {  // 32 values at a time
            const __m256i u = chunk(p, j);
            const __m256i scales = pair_scales(sc, j);
            for (int r = 0; r < RB; ++r) {
                const __m256i xq = _mm256_loadu_si256(
                    reinterpret_cast<const __m256i*>(x.q + (r0 + r) * x.I + 256 * s + 32 * j));
                isum[r][j % chains<RB>()] = add_scaled(isum[r][j % chains<RB>()], _mm256_maddubs_epi16(u, xq), scales);
            }
        }
        for (int r = 0; r < RB; ++r) total[r] = hsum_epi32(sum_chains<RB>(isum[r]));
    }
};

// Q6_K eight weight rows at a time, as `group_dot` for blocks of 32, for 4 or more activation rows: per 32
// values the eight rows' dot products as one vector (the blocks transposed in registers) times each row's
// integer scale per 16, summed in integers over the super-block, the offset of 32 taken off through the
// activations' sums per 16; one conversion and one scaled add a super-block for the eight rows. Under 4 rows
// the one-row kernel (`rows_dot_k`) serves each weight row: reading eight rows at once outran the prefetchers
// there (an 8B-shaped output layer, 431 MB, at one row: 28 ms this way, 11 ms one row at a time). Both give a
// row the same integer a super-block and add them in the same order: a row's bits do not depend on its batch.
template <int RB>
void group_dot_k(const uint8_t* w, int64_t row_bytes, const Acts& x, int64_t r0, float* y, int64_t O, int64_t o0) {
    static_assert(RB >= 4, "under 4 rows: rows_dot_k");
    __m256 acc[RB];
    for (int r = 0; r < RB; ++r) acc[r] = _mm256_setzero_ps();
    const int64_t ns = x.I / 256;
    constexpr int lines = (8 * Q6_K::bytes + 63) / 64;  // the next stretch but one, a super-block's share at a time
    const char* next = reinterpret_cast<const char*>(w + 16 * row_bytes);
    for (int64_t s = 0; s < ns; ++s) {
        for (int l = 0; l < lines; ++l) _mm_prefetch(next + (s * lines + l) * 64, _MM_HINT_T0);
        alignas(16) uint16_t d16[8];
        __m128i sc[8];  // each row's 16 int8 scales
        for (int j = 0; j < 8; ++j) {
            const uint8_t* p = w + j * row_bytes + s * Q6_K::bytes;
            sc[j] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 192));
            std::memcpy(d16 + j, p + 208, 2);
        }
        // Transposed scales: lane j = row j's scale of unit u, A units 0-7, Bv 8-15.
        __m256i A[8], Bv[8];
        {
            __m256i lo[8], hi[8];
            for (int j = 0; j < 8; ++j) {
                lo[j] = _mm256_cvtepi8_epi32(sc[j]);
                hi[j] = _mm256_cvtepi8_epi32(_mm_srli_si128(sc[j], 8));
            }
            transpose8(lo, A);
            transpose8(hi, Bv);
        }
        // The offset of 32: 32 * sum over units of scale * the activations' sum there, taken off the integers.
        __m256i tsum[RB];
        for (int r = 0; r < RB; ++r) {
            const int16_t* s16 = x.s16 + ((r0 + r) * x.I + 256 * s) / 16;
            __m256i m = _mm256_setzero_si256();
            for (int u = 0; u < 8; ++u) {
                m = _mm256_add_epi32(m, _mm256_mullo_epi32(A[u], _mm256_set1_epi32(s16[u])));
                m = _mm256_add_epi32(m, _mm256_mullo_epi32(Bv[u], _mm256_set1_epi32(s16[8 + u])));
            }
            tsum[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(m, 5));
        }
        auto unit = [&](int u) { return u < 8 ? A[u] : Bv[u - 8]; };
        for (int c = 0; c < 8; ++c) {
            __m256i u[8], col[8];
            for (int j = 0; j < 8; ++j) u[j] = Q6_K::chunk(w + j * row_bytes + s * Q6_K::bytes, c);
            transpose8(u, col);
            for (int r = 0; r < RB; ++r) {
                const int8_t* xb = x.q + (r0 + r) * x.I + 256 * s + 32 * c;
                __m256i first = _mm256_setzero_si256(), second = _mm256_setzero_si256();
                for (int g = 0; g < 8; ++g) {
                    int32_t group;
                    std::memcpy(&group, xb + 4 * g, 4);
                    __m256i& into = g < 4 ? first : second;  // values 0-15: unit 2c, 16-31: unit 2c + 1
                    into = add_lane_dots(into, col[g], _mm256_set1_epi32(group));
                }
                tsum[r] = _mm256_add_epi32(tsum[r], _mm256_add_epi32(_mm256_mullo_epi32(first, unit(2 * c)),
                                                                      _mm256_mullo_epi32(second, unit(2 * c + 1))));
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(d16)));
        for (int r = 0; r < RB; ++r) {
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(tsum[r]),
                                     _mm256_mul_ps(dw, _mm256_set1_ps(x.d[(r0 + r) * ns + s])), acc[r]);
        }
    }
    for (int r = 0; r < RB; ++r) _mm256_storeu_ps(y + (r0 + r) * O + o0, acc[r]);
}

// The one-row kernels read a row's super-blocks in a stream, and ask for the bytes 2 KB ahead of it: left to the
// hardware prefetcher, a core of the Xeon (AMX kind) streamed Q4_K from memory at 4.7 GB/s, a third of what it
// multiplies from cache; with this, an 8B model's every matrix once at one row went 465 -> 218 ms (2 threads;
// 512 bytes ahead 255, 1 KB 227, 4 KB 214). Past a row's end it is the next row's start, which comes next.
constexpr int64_t kPrefetchAhead = 2048;

inline void prefetch_super_block(const uint8_t* p, int bytes) {
    for (int l = 0; l < bytes; l += 64) _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchAhead + l), _MM_HINT_T0);
}

template <typename T, int RB>
void rows_dot_k(const uint8_t* w, const Acts& x, int64_t r0, float* y, int64_t O, int64_t o) {
    const int64_t ns = x.I / 256;
    if constexpr (std::is_same_v<T, Q6_K>) {
        // As `group_dot_k` sums a weight row: an integer a super-block, one fma each, in order; the same bits,
        // so that either kernel may serve a row
        float acc[RB] = {};
        for (int64_t s = 0; s < ns; ++s) {
            prefetch_super_block(w + s * T::bytes, T::bytes);
            int32_t total[RB];
            T::template super_block_totals<RB>(w + s * T::bytes, x, r0, s, total);
            const float d = f16(w + s * T::bytes + 208);
            for (int r = 0; r < RB; ++r) acc[r] = std::fma(static_cast<float>(total[r]), d * x.d[(r0 + r) * ns + s], acc[r]);
        }
        for (int r = 0; r < RB; ++r) y[(r0 + r) * O + o] = acc[r];
    } else {
        __m256 acc[RB];  // a row's super-blocks in order, whatever RB is (batch invariance, as above)
        for (int r = 0; r < RB; ++r) acc[r] = _mm256_setzero_ps();
        for (int64_t s = 0; s < ns; ++s) {
            prefetch_super_block(w + s * T::bytes, T::bytes);
            T::template super_block<RB>(w + s * T::bytes, x, r0, s, acc);
        }
        for (int r = 0; r < RB; ++r) y[(r0 + r) * O + o] = hsum(acc[r]);
    }
}

// Rows of x against every weight row, the weight rows split over the threads: 8 rows of x at a time (4 on
// AVX2, which has half the registers), then the rest. The grouped kernels take 16 rows at a time first: their
// unpacking and transposing of a weight block, not the multiplications, was what bounded them, and 16 rows
// share it (at 16 rows the 0.5B model's matmuls took 12-25% less time with AVX-512 than 8 rows at a time, and
// 20-40% less with AVX2 than 4, even though 16 accumulators there do not all fit in the 16 registers). The
// one-row kernels keep 8: their per-row int32 chains would not fit. Weight rows go eight at a time where the type allows
// (`group_dot`), the last O % 8 one at a time. `K`: the K-quants' kernel.
template <typename T, bool K>
void matmul(const Acts& x, int64_t B, const uint8_t* w, int64_t O, float* y) {
    const int64_t row_bytes = x.I / (K ? 256 : QK) * T::bytes;
    constexpr bool grouped = T::grouped;
    const int64_t groups = grouped ? O / 8 : 0, singles = O - 8 * groups;
    auto over_rows = [&](auto kernel, auto wide) {  // kernel(rows, r): RB = rows of x from row r
        int64_t r = 0;
        if constexpr (decltype(wide)::value)
            for (; r + 16 <= B; r += 16) kernel(std::integral_constant<int, 16>{}, r);
#if defined(__AVX512VL__)
        for (; r + 8 <= B; r += 8) kernel(std::integral_constant<int, 8>{}, r);
#endif
        for (; r + 4 <= B; r += 4) kernel(std::integral_constant<int, 4>{}, r);
        switch (B - r) {
            case 3: kernel(std::integral_constant<int, 3>{}, r); break;
            case 2: kernel(std::integral_constant<int, 2>{}, r); break;
            case 1: kernel(std::integral_constant<int, 1>{}, r); break;
            default: break;
        }
    };
    at::parallel_for(0, groups + singles, grouped ? 2 : 16, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            if (i < groups) {
                if constexpr (grouped) {
                    const uint8_t* wr = w + 8 * i * row_bytes;
                    over_rows([&](auto rows, int64_t r) {
                        constexpr int RB = decltype(rows)::value;
                        if constexpr (K && RB < 4) {  // Q6_K under 4 rows: one weight row at a time (see above)
                            for (int j = 0; j < 8; ++j) rows_dot_k<T, RB>(wr + j * row_bytes, x, r, y, O, 8 * i + j);
                        } else if constexpr (K) {
                            group_dot_k<RB>(wr, row_bytes, x, r, y, O, 8 * i);
                        } else {
                            group_dot<T, RB>(wr, row_bytes, x, r, y, O, 8 * i);
                        }
                    }, std::true_type{});
                }
                continue;
            }
            const int64_t o = 8 * groups + (i - groups);
            const uint8_t* wr = w + o * row_bytes;
            over_rows([&](auto rows, int64_t r) {
                constexpr int RB = decltype(rows)::value;
                if constexpr (K) rows_dot_k<T, RB>(wr, x, r, y, O, o);
                else rows_dot<T, RB>(wr, x, r, y, O, o);
            }, std::false_type{});
        }
    });
}

}  // namespace

// The GGML type numbers of gguf's GGMLQuantizationType.
enum : int64_t { GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q8_0 = 8, GGML_Q4_K = 12, GGML_Q6_K = 14 };

// y [B, O] = x @ W^T for activations already rounded (`acts`), W the raw GGUF bytes [O, row bytes] of type `qtype`.
void matmul_of_type(int64_t qtype, const Acts& acts, int64_t B, const uint8_t* w, int64_t O, float* y) {
    switch (qtype) {
        case GGML_Q8_0: matmul<Q8_0, false>(acts, B, w, O, y); break;
        case GGML_Q4_0: matmul<Q4_0, false>(acts, B, w, O, y); break;
        case GGML_Q4_1: matmul<Q4_1, false>(acts, B, w, O, y); break;
        case GGML_Q5_0: matmul<Q5_0, false>(acts, B, w, O, y); break;
        case GGML_Q4_K: matmul<Q4_K, true>(acts, B, w, O, y); break;
        case GGML_Q6_K: matmul<Q6_K, true>(acts, B, w, O, y); break;
        default: TORCH_CHECK(false, "GGML type ", qtype, " has no kernel here");
    }
}

// y [B, O] = x [B, I] @ W^T, W the raw GGUF bytes [O, row bytes] of type `qtype`.
torch::Tensor gguf_matmul(torch::Tensor x, torch::Tensor w, int64_t qtype) {
    TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat && x.is_contiguous(), "x: contiguous fp32 [B, I]");
    TORCH_CHECK(w.dim() == 2 && w.scalar_type() == torch::kUInt8 && w.is_contiguous(), "w: contiguous uint8 [O, bytes]");
    const int64_t B = x.size(0), I = x.size(1), O = w.size(0);
    TORCH_CHECK(I % QK == 0, "the input width must be a multiple of 32");
    const bool k_quant = qtype == GGML_Q4_K || qtype == GGML_Q6_K;
    TORCH_CHECK(!k_quant || I % 256 == 0, "K-quants need a width that is a multiple of 256");
    const int64_t block = k_quant ? 256 : QK;
    auto q = torch::empty({B, I}, x.options().dtype(torch::kInt8));
    auto d = torch::empty({B, I / block}, x.options());
    auto xs = torch::empty({B, I / QK}, x.options());
    auto s16 = torch::empty({B, I / 16}, x.options().dtype(torch::kInt16));
    quantize_rows(x.data_ptr<float>(), B, I, block, q.data_ptr<int8_t>(), d.data_ptr<float>(), xs.data_ptr<float>(),
                  s16.data_ptr<int16_t>());
    const Acts acts{q.data_ptr<int8_t>(), d.data_ptr<float>(), xs.data_ptr<float>(), s16.data_ptr<int16_t>(), I};
    auto y = torch::empty({B, O}, x.options());
    matmul_of_type(qtype, acts, B, w.data_ptr<uint8_t>(), O, y.data_ptr<float>());
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
