// lamina host backend: GEMM, C = alpha * op(A) * op(B) + beta * C, row-major.
//
// GotoBLAS/BLIS structure: op(B) is packed KC x NC into NR-wide column panels, op(A) is packed
// MC x KC into MR-high row panels, and an MR x NR register-tiled micro-kernel (2*MR FMA
// accumulators) runs over each pair of panels. Packing makes the micro-kernel's loads
// contiguous and aligned whatever the transposes, and zero-pads edge panels so one kernel
// handles every size; only the final store knows about partial tiles.
//
// Threading splits C into row (or column) slices, one per thread, each computed by the serial
// algorithm with its own thread-local packing buffers (no shared packed panel, so no barrier).
// Slices are whole micro-tiles and never take the small path, so every C element is
// accumulated in the same order whatever the thread count: results are bit-identical across
// thread counts.
//
// GEMV: op(A) B^T with at most 4 rows of A (a dense layer's forward at batch 1..4) skips the
// packing, which would copy all of B on every call, and streams B's rows once in place
// (gemv_bt, below; also bit-identical across thread counts).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "../../core/activation.hpp"
#include "../../core/geometry.hpp"
#include "simd.hpp"

namespace lamina::host_detail {

template <class T>
struct gemm_blocking {
    static constexpr std::size_t W = vec_size<T>;
    static constexpr std::size_t NR = 2 * W;  // two vectors per accumulator row
    static constexpr std::size_t MR = 6;      // 12 accumulators: fits 16 registers (AVX2/SSE2)
    static constexpr std::size_t KC = 256;    // a KC x NR panel of B stays in L1
    static constexpr std::size_t MC = 120;    // an MC x KC block of A stays in L2
    static constexpr std::size_t NC = 2048 / NR * NR;  // KC x NC of B lives in L3
};

// Below this many multiply-adds, packing costs more than it saves.
inline constexpr std::size_t gemm_small_flops = 32768;
// Below this many multiply-adds, the thread handoff costs more than it saves.
inline constexpr std::size_t gemm_parallel_flops = 1u << 18;

template <class T>
inline void gemm_pack_a(transpose ta, const T* A, std::size_t lda, std::size_t i0, std::size_t p0, std::size_t mc,
                        std::size_t kc, T* dst) {
    constexpr std::size_t MR = gemm_blocking<T>::MR;
    for (std::size_t ir = 0; ir < mc; ir += MR) {
        const std::size_t mr = std::min(MR, mc - ir);
        T* d = dst + ir * kc;
        if (ta == transpose::no) {
            const T* a = A + (i0 + ir) * lda + p0;
            if (mr == MR) {
                for (std::size_t p = 0; p < kc; ++p)
                    for (std::size_t r = 0; r < MR; ++r) d[p * MR + r] = a[r * lda + p];
            } else {
                for (std::size_t p = 0; p < kc; ++p)
                    for (std::size_t r = 0; r < MR; ++r) d[p * MR + r] = r < mr ? a[r * lda + p] : T(0);
            }
        } else {
            const T* a = A + p0 * lda + i0 + ir;
            for (std::size_t p = 0; p < kc; ++p)
                for (std::size_t r = 0; r < MR; ++r) d[p * MR + r] = r < mr ? a[p * lda + r] : T(0);
        }
    }
}

/// Packs one transposed-B panel (rows j of B are columns of op(B)): d[p * NR + c] = b[c * ldb + p]
/// for c < nr (zero beyond), p < kc. Floats with AVX: 8 x 8 in-register transposes.
template <class T>
inline void gemm_pack_b_panel_t(const T* b, std::size_t ldb, std::size_t nr, std::size_t kc, T* d) {
    constexpr std::size_t NR = gemm_blocking<T>::NR;
    std::size_t p0 = 0;
#if defined(__AVX__)
    if constexpr (std::is_same<T, float>::value && NR % 8 == 0) {
        const __m256 zero = _mm256_setzero_ps();
        for (; p0 + 8 <= kc; p0 += 8) {
            for (std::size_t cg = 0; cg < NR; cg += 8) {
                __m256 r[8];
                for (std::size_t i = 0; i < 8; ++i)
                    r[i] = cg + i < nr ? _mm256_loadu_ps(b + (cg + i) * ldb + p0) : zero;
                const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
                const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
                const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
                const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
                const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
                const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
                const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
                const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
                T* o = d + p0 * NR + cg;
                _mm256_store_ps(o + 0 * NR, _mm256_permute2f128_ps(s0, s4, 0x20));
                _mm256_store_ps(o + 1 * NR, _mm256_permute2f128_ps(s1, s5, 0x20));
                _mm256_store_ps(o + 2 * NR, _mm256_permute2f128_ps(s2, s6, 0x20));
                _mm256_store_ps(o + 3 * NR, _mm256_permute2f128_ps(s3, s7, 0x20));
                _mm256_store_ps(o + 4 * NR, _mm256_permute2f128_ps(s0, s4, 0x31));
                _mm256_store_ps(o + 5 * NR, _mm256_permute2f128_ps(s1, s5, 0x31));
                _mm256_store_ps(o + 6 * NR, _mm256_permute2f128_ps(s2, s6, 0x31));
                _mm256_store_ps(o + 7 * NR, _mm256_permute2f128_ps(s3, s7, 0x31));
            }
        }
    }
#endif
    // kc <= KC always; the bound says so to GCC 12, which otherwise misjudges the trip count after
    // inlining (a false -Waggressive-loop-optimizations).
    for (std::size_t p = p0; p < kc && p < gemm_blocking<T>::KC; ++p)
        for (std::size_t c = 0; c < NR; ++c) d[p * NR + c] = c < nr ? b[c * ldb + p] : T(0);
}

template <class T>
inline void gemm_pack_b(transpose tb, const T* B, std::size_t ldb, std::size_t p0, std::size_t j0, std::size_t kc,
                        std::size_t nc, T* dst) {
    constexpr std::size_t NR = gemm_blocking<T>::NR, W = gemm_blocking<T>::W;
    for (std::size_t jr = 0; jr < nc; jr += NR) {
        const std::size_t nr = std::min(NR, nc - jr);
        T* d = dst + jr * kc;
        if (tb == transpose::no) {
            const T* b = B + p0 * ldb + j0 + jr;
            if (nr == NR) {
                for (std::size_t p = 0; p < kc; ++p) {
                    vec<T>::load_unaligned(b + p * ldb).store_aligned(d + p * NR);
                    vec<T>::load_unaligned(b + p * ldb + W).store_aligned(d + p * NR + W);
                }
            } else {
                for (std::size_t p = 0; p < kc; ++p)
                    for (std::size_t c = 0; c < NR; ++c) d[p * NR + c] = c < nr ? b[p * ldb + c] : T(0);
            }
        } else {
            gemm_pack_b_panel_t(B + (j0 + jr) * ldb + p0, ldb, nr, kc, d);
        }
    }
}

/// How the micro-kernel combines its tile with C: overwrite (first K block, beta == 0),
/// scale (first K block, beta != 0) or accumulate (later K blocks).
enum class gemm_store { overwrite, scale, accumulate };

/// Fused epilogue, applied to each MR x NR C tile right after its last K block is stored (the
/// tile is still in L1):
/// C[i][j] = act(C[i][j] + bias[j] + row_bias[i]). Either bias may be null; the default does
/// nothing. (row_bias: a convolution's per-filter bias when C is one image's K x P*Q output.)
template <class T>
struct gemm_epilogue {
    const T* bias = nullptr;  // N entries, indexed by column of C
    activation act{};
    const T* row_bias = nullptr;  // M entries, indexed by row of C
    bool active() const noexcept {
        return bias != nullptr || row_bias != nullptr || act.kind != activation_kind::identity;
    }
    /// The same epilogue for the column slice starting at j0.
    gemm_epilogue shifted(std::size_t j0) const noexcept { return {bias ? bias + j0 : nullptr, act, row_bias}; }
    /// The same epilogue for the row slice starting at i0.
    gemm_epilogue shifted_rows(std::size_t i0) const noexcept { return {bias, act, row_bias ? row_bias + i0 : nullptr}; }
};

/// The activation on one vector (the host's vectorised definitions, same as
/// activation_forward_range).
template <class T>
inline vec<T> apply_activation(activation a, vec<T> v) {
    using V = vec<T>;
    switch (a.kind) {
        case activation_kind::identity: return v;
        case activation_kind::relu: return xsimd::select(v < V(T(0)), V(T(0)), v);  // keeps NaN
        case activation_kind::leaky_relu: return xsimd::select(v > V(T(0)), v, V(static_cast<T>(a.alpha)) * v);
        case activation_kind::sigmoid: return V(T(1)) / (V(T(1)) + xsimd::exp(-v));
        case activation_kind::tanh: return xsimd::tanh(v);
        case activation_kind::gelu:
            return V(T(0.5)) * v * (V(T(1)) + xsimd::erf(v * V(static_cast<T>(0.70710678118654752440))));
    }
    return v;
}

/// The epilogue on the m x n block of row-major C at C (one micro-tile, or the whole of C on
/// the small path and for K == 0).
template <class T>
inline void gemm_apply_epilogue(const gemm_epilogue<T>& ep, T* C, std::size_t ldc, std::size_t m, std::size_t n) {
    if (!ep.active()) return;
    constexpr std::size_t W = vec_size<T>;
    for (std::size_t i = 0; i < m; ++i) {
        T* c = C + i * ldc;
        const T rb = ep.row_bias ? ep.row_bias[i] : T(0);
        const vec<T> vrb(rb);
        std::size_t j = 0;
        for (; j + W <= n; j += W) {
            vec<T> v = load(c + j);
            if (ep.bias) v += load(ep.bias + j);
            if (ep.row_bias) v += vrb;
            store(c + j, apply_activation(ep.act, v));
        }
        if (j < n) {
            alignas(64) T t[W] = {};
            const std::size_t rem = n - j;  // < W (bounded loops keep GCC 12's trip-count analysis quiet)
            for (std::size_t k = 0; k < rem && k < W; ++k) t[k] = c[j + k] + (ep.bias ? ep.bias[j + k] : T(0)) + rb;
            vec<T> v = apply_activation(ep.act, vec<T>::load_aligned(t));
            v.store_aligned(t);
            for (std::size_t k = 0; k < rem && k < W; ++k) c[j + k] = t[k];
        }
    }
}

template <class T>
inline vec<T> gemm_combine(const vec<T>& acc, const T* c, const vec<T>& valpha, const vec<T>& vbeta,
                           gemm_store mode) {
    switch (mode) {
        case gemm_store::overwrite: return valpha * acc;
        case gemm_store::scale: return xsimd::fma(valpha, acc, vbeta * load(c));
        case gemm_store::accumulate: return xsimd::fma(valpha, acc, load(c));
    }
    return acc;
}

template <class T>
inline void gemm_store_row(T* c, const vec<T>& acc, const vec<T>& valpha, const vec<T>& vbeta, gemm_store mode) {
    store(c, gemm_combine(acc, c, valpha, vbeta, mode));
}
/// The MR x NR micro-kernel (MR = 6, written out so the accumulators stay in registers).
template <class T>
inline void gemm_micro_kernel(std::size_t kc, const T* a, const T* b, T* c, std::size_t ldc, std::size_t mr,
                              std::size_t nr, T alpha, T beta, gemm_store mode) {
    using V = vec<T>;
    constexpr std::size_t MR = gemm_blocking<T>::MR, NR = gemm_blocking<T>::NR, W = gemm_blocking<T>::W;
    static_assert(MR == 6, "the micro-kernel is written for MR = 6");
    V c00(T(0)), c01(T(0)), c10(T(0)), c11(T(0)), c20(T(0)), c21(T(0)), c30(T(0)), c31(T(0)), c40(T(0)),
        c41(T(0)), c50(T(0)), c51(T(0));
    for (std::size_t p = 0; p < kc; ++p) {
        const V b0 = V::load_aligned(b), b1 = V::load_aligned(b + W);
        V av(a[0]);
        c00 = xsimd::fma(av, b0, c00);
        c01 = xsimd::fma(av, b1, c01);
        av = V(a[1]);
        c10 = xsimd::fma(av, b0, c10);
        c11 = xsimd::fma(av, b1, c11);
        av = V(a[2]);
        c20 = xsimd::fma(av, b0, c20);
        c21 = xsimd::fma(av, b1, c21);
        av = V(a[3]);
        c30 = xsimd::fma(av, b0, c30);
        c31 = xsimd::fma(av, b1, c31);
        av = V(a[4]);
        c40 = xsimd::fma(av, b0, c40);
        c41 = xsimd::fma(av, b1, c41);
        av = V(a[5]);
        c50 = xsimd::fma(av, b0, c50);
        c51 = xsimd::fma(av, b1, c51);
        a += MR;
        b += NR;
    }
    const V valpha(alpha), vbeta(beta);
    if (mr == MR && nr == NR) {
        gemm_store_row(c + 0 * ldc, c00, valpha, vbeta, mode);
        gemm_store_row(c + 0 * ldc + W, c01, valpha, vbeta, mode);
        gemm_store_row(c + 1 * ldc, c10, valpha, vbeta, mode);
        gemm_store_row(c + 1 * ldc + W, c11, valpha, vbeta, mode);
        gemm_store_row(c + 2 * ldc, c20, valpha, vbeta, mode);
        gemm_store_row(c + 2 * ldc + W, c21, valpha, vbeta, mode);
        gemm_store_row(c + 3 * ldc, c30, valpha, vbeta, mode);
        gemm_store_row(c + 3 * ldc + W, c31, valpha, vbeta, mode);
        gemm_store_row(c + 4 * ldc, c40, valpha, vbeta, mode);
        gemm_store_row(c + 4 * ldc + W, c41, valpha, vbeta, mode);
        gemm_store_row(c + 5 * ldc, c50, valpha, vbeta, mode);
        gemm_store_row(c + 5 * ldc + W, c51, valpha, vbeta, mode);
        return;
    }
    // Partial tile: spill the accumulators and store only the valid part.
    alignas(64) T t[MR * NR];
    c00.store_aligned(t + 0 * NR); c01.store_aligned(t + 0 * NR + W);
    c10.store_aligned(t + 1 * NR); c11.store_aligned(t + 1 * NR + W);
    c20.store_aligned(t + 2 * NR); c21.store_aligned(t + 2 * NR + W);
    c30.store_aligned(t + 3 * NR); c31.store_aligned(t + 3 * NR + W);
    c40.store_aligned(t + 4 * NR); c41.store_aligned(t + 4 * NR + W);
    c50.store_aligned(t + 5 * NR); c51.store_aligned(t + 5 * NR + W);
    for (std::size_t r = 0; r < mr; ++r)
        for (std::size_t j = 0; j < nr; ++j) {
            T& cc = c[r * ldc + j];
            const T v = t[r * NR + j];
            switch (mode) {
                case gemm_store::overwrite: cc = alpha * v; break;
                case gemm_store::scale: cc = alpha * v + beta * cc; break;
                case gemm_store::accumulate: cc = alpha * v + cc; break;
            }
        }
}

// ---- row dots: C = op(A) B^T for few rows of A (GEMV) and the small path ------------------------
//
// With B transposed (a dense layer's weights, [out][in]) every C element is the dot product of a
// row of A with a row of B, both contiguous: B's own layout is already the one a matrix-vector
// product streams, so nothing is packed (no copy of the weights, nothing to refresh after a
// training step). gemv_bt_block computes MB rows of A against R rows of B with MB * R vector
// accumulators, so each row of B is read once for all MB rows of A. Every C element is summed
// in one fixed order whatever the blocking, the thread split or the number of rows: vector
// partial sums over K in steps of W, reduced as hsum does (halving), then the K % W tail in
// order. So one sample's output does not depend on the batch it is computed in (up to 4 rows
// here and on the small path, which shares this code).

/// s = s + a * b, as one fused operation where the target has FMA (the same rounding in every
/// caller: a compiler contracts a plain `s += a * b` or not depending on the context).
template <class T>
inline T fma_scalar(T a, T b, T s) {
#if defined(__FMA__) || defined(__AVX512F__)
    return std::fma(a, b, s);
#else
    return s + a * b;
#endif
}

/// hsum of four vectors at once, each summed in hsum's (halving) order, into out[0..3]: the
/// 256/512-bit halves are folded onto 128 bits, then a 4x4 transpose adds the lanes.
template <class T>
inline void hsum4(const vec<T>& a, const vec<T>& b, const vec<T>& c, const vec<T>& d, T* out) {
#if defined(__SSE2__)
    if constexpr (std::is_same<T, float>::value) {
        // xsimd's float batch is the widest the target has: 16 lanes with AVX-512, 8 with AVX.
        auto fold = [](const vec<float>& v) -> __m128 {
#if defined(__AVX512F__)
            static_assert(vec_size<float> == 16, "hsum4: AVX-512 float batches have 16 lanes");
            const __m512 x = v;
            const __m256 lo = _mm512_castps512_ps256(x);
            const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1));
            const __m256 h = _mm256_add_ps(lo, hi);
            return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
#elif defined(__AVX__)
            static_assert(vec_size<float> == 8, "hsum4: AVX float batches have 8 lanes");
            const __m256 x = v;
            return _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
#else
            static_assert(vec_size<float> == 4, "hsum4: SSE float batches have 4 lanes");
            return v;
#endif
        };
        __m128 r0 = fold(a), r1 = fold(b), r2 = fold(c), r3 = fold(d);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // r_j = lane j of a, b, c, d
        _mm_storeu_ps(out, _mm_add_ps(_mm_add_ps(r0, r2), _mm_add_ps(r1, r3)));
        return;
    }
#endif
    out[0] = hsum(a);
    out[1] = hsum(b);
    out[2] = hsum(c);
    out[3] = hsum(d);
}

/// s[m * R + r] = sum over p < K of A[m * lda + p] * B[r * ldb + p], for m < MB, r < R.
template <class T, std::size_t MB, std::size_t R>
inline void gemv_bt_block(std::size_t K, const T* A, std::size_t lda, const T* B, std::size_t ldb, T* s) {
    using V = vec<T>;
    constexpr std::size_t W = vec_size<T>, NA = MB * R, NG = (NA + 3) / 4 * 4;
    V acc[NG];
    for (std::size_t i = 0; i < NG; ++i) acc[i] = V(T(0));
    std::size_t p = 0;
    for (; p + W <= K; p += W) {
        V a[MB];
        for (std::size_t m = 0; m < MB; ++m) a[m] = load(A + m * lda + p);
        for (std::size_t r = 0; r < R; ++r) {
            const V b = load(B + r * ldb + p);
            for (std::size_t m = 0; m < MB; ++m) acc[m * R + r] = xsimd::fma(a[m], b, acc[m * R + r]);
        }
    }
    alignas(16) T sums[NG];
    for (std::size_t g = 0; g < NG; g += 4) hsum4(acc[g], acc[g + 1], acc[g + 2], acc[g + 3], sums + g);
    const std::size_t rem = K - p;  // < W
    for (std::size_t m = 0; m < MB; ++m)
        for (std::size_t r = 0; r < R; ++r) {
            T v = sums[m * R + r];
            const T* a = A + m * lda + p;
            const T* b = B + r * ldb + p;
            for (std::size_t t = 0; t < rem && t < W; ++t) v = fma_scalar(a[t], b[t], v);
            s[m * R + r] = v;
        }
}

/// C[m][j] = alpha * s + beta * C[m][j] (C not read when beta == 0).
template <class T>
inline void gemv_store(T* c, T s, T alpha, T beta) {
    *c = beta == T(0) ? alpha * s : fma_scalar(alpha, s, beta * *c);
}

/// Rows of B handled together for MB rows of A: MB * R accumulators plus MB + 1 loaded vectors
/// fit 16 vector registers (AVX2, SSE2).
template <std::size_t MB>
inline constexpr std::size_t gemv_rows_of_b = MB == 1 ? 8 : MB <= 3 ? 4 : 2;

/// C[m][j] for m < MB and j in [n0, n1): blocks of R rows of B, then smaller blocks for the rest.
template <class T, std::size_t MB>
inline void gemv_bt_range(std::size_t n0, std::size_t n1, std::size_t K, T alpha, const T* A, std::size_t lda,
                          const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    constexpr std::size_t R = gemv_rows_of_b<MB>;
    T s[MB * R];
    std::size_t j = n0;
    auto put = [&](std::size_t j0, std::size_t r_count) {
        for (std::size_t m = 0; m < MB; ++m)
            for (std::size_t r = 0; r < r_count; ++r) gemv_store(C + m * ldc + j0 + r, s[m * r_count + r], alpha, beta);
    };
    for (; j + R <= n1; j += R) {
        gemv_bt_block<T, MB, R>(K, A, lda, B + j * ldb, ldb, s);
        put(j, R);
    }
    if constexpr (R > 4) {
        for (; j + 4 <= n1; j += 4) {
            gemv_bt_block<T, MB, 4>(K, A, lda, B + j * ldb, ldb, s);
            put(j, 4);
        }
    }
    for (; j < n1; ++j) {
        gemv_bt_block<T, MB, 1>(K, A, lda, B + j * ldb, ldb, s);
        put(j, 1);
    }
}

/// C[0..M)[n0..n1) = alpha * A B^T + beta * C for any M, four rows of A at a time.
template <class T>
inline void gemv_bt_rows(std::size_t M, std::size_t n0, std::size_t n1, std::size_t K, T alpha, const T* A,
                         std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    std::size_t m = 0;
    for (; m + 4 <= M; m += 4) gemv_bt_range<T, 4>(n0, n1, K, alpha, A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc);
    switch (M - m) {
        case 3: gemv_bt_range<T, 3>(n0, n1, K, alpha, A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc); break;
        case 2: gemv_bt_range<T, 2>(n0, n1, K, alpha, A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc); break;
        case 1: gemv_bt_range<T, 1>(n0, n1, K, alpha, A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc); break;
        default: break;
    }
}

/// Direct path for tiny problems (small dense layers, small convolutions).
template <class T>
inline void gemm_small(transpose ta, transpose tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A,
                       std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    constexpr std::size_t W = vec_size<T>;
    if (ta == transpose::no && tb == transpose::yes) {  // row dots, in the GEMV's order
        gemv_bt_rows(M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    for (std::size_t i = 0; i < M; ++i) {
        T* c = C + i * ldc;
        if (tb == transpose::no) {
            // C row = beta * C row + sum_p (alpha * a(i,p)) * B row p: vectorised over j.
            if (beta == T(0))
                std::fill(c, c + N, T(0));
            else if (beta != T(1))
                for (std::size_t j = 0; j < N; ++j) c[j] *= beta;
            for (std::size_t p = 0; p < K; ++p) {
                const T av = alpha * (ta == transpose::no ? A[i * lda + p] : A[p * lda + i]);
                const T* b = B + p * ldb;
                const vec<T> va(av);
                std::size_t j = 0;
                for (; j + W <= N; j += W) store(c + j, xsimd::fma(va, load(b + j), load(c + j)));
                // Tails as bounded counts: GCC 12 otherwise misjudges the trip count after
                // inlining (a false -Waggressive-loop-optimizations).
                for (std::size_t t = 0, rem = N - j; t < rem && t < W; ++t) c[j + t] += av * b[j + t];
            }
        } else {  // both transposed
            for (std::size_t j = 0; j < N; ++j) {
                const T* b = B + j * ldb;
                T s = 0;
                for (std::size_t p = 0; p < K; ++p) s += A[p * lda + i] * b[p];
                c[j] = alpha * s + (beta == T(0) ? T(0) : beta * c[j]);
            }
        }
    }
}

/// At most this many rows of op(A) take the GEMV path (gemv_bt) instead of the packed GEMM:
/// each group of 4 rows streams B once, where packing would copy all of B on every call.
inline constexpr std::size_t gemv_max_rows = 4;
// Below this many multiply-adds a GEMV stays on the calling thread (it streams B at memory
// speed: 64K multiply-adds are 256 KiB of float weights, a few microseconds).
inline constexpr std::size_t gemv_parallel_macs = 1u << 16;

/// C = act(alpha * A B^T + beta * C + bias) for few rows of A (a dense layer's forward at batch
/// 1..4): the rows of B (outputs) are split across the pool's threads in blocks of 8, each
/// thread streaming its own rows of B once. Bitwise the same at every thread count.
template <class T>
inline void gemv_bt(thread_pool* pool, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A,
                    std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc,
                    const gemm_epilogue<T>& ep) {
    constexpr std::size_t block = 8;
    auto slice = [&](std::size_t n0, std::size_t n1) {
        gemv_bt_rows(M, n0, n1, K, alpha, A, lda, B, ldb, beta, C, ldc);
        gemm_apply_epilogue(ep.shifted(n0), C + n0, ldc, M, n1 - n0);  // the slice, still in L1
    };
    const std::size_t units = (N + block - 1) / block;
    if (!pool || pool->size() == 1 || units < 2 || M * N * K < gemv_parallel_macs) {
        slice(0, N);
        return;
    }
    pool->parallel_for(units, [&](std::size_t lo, std::size_t hi) { slice(lo * block, std::min(N, hi * block)); });
}

template <class T>
inline void gemm_serial(transpose ta, transpose tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A,
                        std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc,
                        bool allow_small = true, const gemm_epilogue<T>& epilogue = {}) {
    using blk = gemm_blocking<T>;
    if (M == 0 || N == 0) return;
    if (K == 0) {
        for (std::size_t i = 0; i < M; ++i)
            for (std::size_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
        gemm_apply_epilogue(epilogue, C, ldc, M, N);
        return;
    }
    if (allow_small && M * N * K < gemm_small_flops) {
        gemm_small(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        gemm_apply_epilogue(epilogue, C, ldc, M, N);
        return;
    }
    const bool fused = epilogue.active();
    T* pa = thread_scratch<T, slot_pack_a>(blk::MC * blk::KC);
    T* pb = thread_scratch<T, slot_pack_b>(blk::KC * blk::NC);
    for (std::size_t jc = 0; jc < N; jc += blk::NC) {
        const std::size_t nc = std::min(blk::NC, N - jc);
        for (std::size_t pc = 0; pc < K; pc += blk::KC) {
            const std::size_t kc = std::min(blk::KC, K - pc);
            const gemm_store mode =
                pc > 0 ? gemm_store::accumulate : (beta == T(0) ? gemm_store::overwrite : gemm_store::scale);
            const bool last = fused && pc + kc == K;
            gemm_pack_b(tb, B, ldb, pc, jc, kc, nc, pb);
            for (std::size_t ic = 0; ic < M; ic += blk::MC) {
                const std::size_t mc = std::min(blk::MC, M - ic);
                gemm_pack_a(ta, A, lda, ic, pc, mc, kc, pa);
                for (std::size_t jr = 0; jr < nc; jr += blk::NR) {
                    const gemm_epilogue<T> ep = last ? epilogue.shifted(jc + jr) : gemm_epilogue<T>{};
                    const std::size_t nr = std::min(blk::NR, nc - jr);
                    for (std::size_t ir = 0; ir < mc; ir += blk::MR) {
                        T* c = C + (ic + ir) * ldc + jc + jr;
                        const std::size_t mr = std::min(blk::MR, mc - ir);
                        gemm_micro_kernel(kc, pa + ir * kc, pb + jr * kc, c, ldc, mr, nr, alpha, beta, mode);
                        // Fused epilogue on the tile just stored, still in L1 (doing it inside the
                        // micro-kernel costs the k-loop registers).
                        if (last) gemm_apply_epilogue(ep.shifted_rows(ic + ir), c, ldc, mr, nr);
                    }
                }
            }
        }
    }
}

/// Threaded GEMM: C is cut into one row slice (or column slice, when N is the longer side)
/// per thread, in whole micro-tiles. pool == nullptr runs serially (nested use).
template <class T>
inline void gemm_parallel(thread_pool* pool, transpose ta, transpose tb, std::size_t M, std::size_t N, std::size_t K,
                          T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C,
                          std::size_t ldc, const gemm_epilogue<T>& ep = {}) {
    using blk = gemm_blocking<T>;
    if (ta == transpose::no && tb == transpose::yes && M <= gemv_max_rows && M > 0 && N > 0 && K > 0) {
        gemv_bt(pool, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
        return;
    }
    if (!pool || pool->size() == 1 || M * N * K < gemm_parallel_flops) {
        gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, true, ep);
        return;
    }
    const std::size_t units_m = (M + blk::MR - 1) / blk::MR, units_n = (N + blk::NR - 1) / blk::NR;
    const bool split_rows = M >= N ? units_m >= 2 : units_n < 2;
    if (split_rows) {
        pool->parallel_for(units_m, [&](std::size_t lo, std::size_t hi) {
            const std::size_t i0 = lo * blk::MR, i1 = std::min(M, hi * blk::MR);
            const T* a = ta == transpose::no ? A + i0 * lda : A + i0;
            gemm_serial(ta, tb, i1 - i0, N, K, alpha, a, lda, B, ldb, beta, C + i0 * ldc, ldc, false,
                        ep.shifted_rows(i0));
        });
    } else {
        pool->parallel_for(units_n, [&](std::size_t lo, std::size_t hi) {
            const std::size_t j0 = lo * blk::NR, j1 = std::min(N, hi * blk::NR);
            const T* b = tb == transpose::no ? B + j0 : B + j0 * ldb;
            gemm_serial(ta, tb, M, j1 - j0, K, alpha, A, lda, b, ldb, beta, C + j0, ldc, false, ep.shifted(j0));  // rows whole
        });
    }
}

}  // namespace lamina::host_detail
