// lamina host backend: streaming elementwise kernels, reductions, channel bias, activations
// and dropout. Each is an xsimd loop over [lo, hi) run by parallel_range, so chunking (and thus
// every reduction's summation order) depends only on the size and the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../../core/activation.hpp"
#include "../../core/philox.hpp"
#include "simd.hpp"

namespace lamina::host_detail {

/// Loads the rem < W trailing elements into a zero-padded vector (so tails use the same
/// vector code, and give the same result, as the body).
template <class T>
inline vec<T> load_tail(const T* p, std::size_t rem) {
    alignas(64) T t[vec_size<T>] = {};
    for (std::size_t i = 0; i < rem; ++i) t[i] = p[i];
    return vec<T>::load_aligned(t);
}
template <class T>
inline void store_tail(T* p, const vec<T>& v, std::size_t rem) {
    alignas(64) T t[vec_size<T>];
    v.store_aligned(t);
    for (std::size_t i = 0; i < rem; ++i) p[i] = t[i];
}

/// y[i] = op(x[i]) over [lo, hi), vectorised, tail included.
template <class T, class Op>
inline void map1(const T* x, T* y, std::size_t lo, std::size_t hi, Op op) {
    constexpr std::size_t W = vec_size<T>;
    std::size_t i = lo;
    for (; i + W <= hi; i += W) store(y + i, op(load(x + i)));
    if (i < hi) store_tail(y + i, op(load_tail(x + i, hi - i)), hi - i);
}
/// z[i] = op(x[i], y[i])
template <class T, class Op>
inline void map2(const T* x, const T* y, T* z, std::size_t lo, std::size_t hi, Op op) {
    constexpr std::size_t W = vec_size<T>;
    std::size_t i = lo;
    for (; i + W <= hi; i += W) store(z + i, op(load(x + i), load(y + i)));
    if (i < hi) store_tail(z + i, op(load_tail(x + i, hi - i), load_tail(y + i, hi - i)), hi - i);
}
/// out[i] = op(x[i], y[i], z[i])
template <class T, class Op>
inline void map3(const T* x, const T* y, const T* z, T* out, std::size_t lo, std::size_t hi, Op op) {
    constexpr std::size_t W = vec_size<T>;
    std::size_t i = lo;
    for (; i + W <= hi; i += W) store(out + i, op(load(x + i), load(y + i), load(z + i)));
    if (i < hi)
        store_tail(out + i, op(load_tail(x + i, hi - i), load_tail(y + i, hi - i), load_tail(z + i, hi - i)), hi - i);
}

// ---- activations ----------------------------------------------------------------------------
inline constexpr double inv_sqrt2 = 0.70710678118654752440;
inline constexpr double inv_sqrt_2pi = 0.39894228040143267794;

template <class T>
inline void activation_forward_range(activation a, const T* x, T* y, std::size_t lo, std::size_t hi) {
    using V = vec<T>;
    const V zero(T(0)), one(T(1)), half(T(0.5)), alpha(static_cast<T>(a.alpha)), c(static_cast<T>(inv_sqrt2));
    switch (a.kind) {
        case activation_kind::identity:
            if (x != y) std::memmove(y + lo, x + lo, (hi - lo) * sizeof(T));
            break;
        case activation_kind::relu: map1(x, y, lo, hi, [&](V v) { return xsimd::select(v < zero, zero, v); }); break;
        case activation_kind::leaky_relu:
            map1(x, y, lo, hi, [&](V v) { return xsimd::select(v > zero, v, alpha * v); });
            break;
        case activation_kind::sigmoid: map1(x, y, lo, hi, [&](V v) { return one / (one + xsimd::exp(-v)); }); break;
        case activation_kind::tanh: map1(x, y, lo, hi, [&](V v) { return xsimd::tanh(v); }); break;
        case activation_kind::gelu:
            map1(x, y, lo, hi, [&](V v) { return half * v * (one + xsimd::erf(v * c)); });
            break;
    }
}

template <class T>
inline void activation_backward_range(activation a, const T* x, const T* y, const T* dy, T* dx, std::size_t lo,
                                      std::size_t hi) {
    using V = vec<T>;
    const V zero(T(0)), one(T(1)), half(T(0.5)), alpha(static_cast<T>(a.alpha)), c(static_cast<T>(inv_sqrt2)),
        pdf_scale(static_cast<T>(inv_sqrt_2pi));
    switch (a.kind) {
        case activation_kind::identity:
            if (dy != dx) std::memmove(dx + lo, dy + lo, (hi - lo) * sizeof(T));
            break;
        case activation_kind::relu:
            map2(x, dy, dx, lo, hi, [&](V xv, V d) { return xsimd::select(xv <= zero, zero, d); });
            break;
        case activation_kind::leaky_relu:
            map2(x, dy, dx, lo, hi, [&](V xv, V d) { return xsimd::select(xv > zero, d, alpha * d); });
            break;
        case activation_kind::sigmoid:
            map2(y, dy, dx, lo, hi, [&](V yv, V d) { return d * (yv * (one - yv)); });
            break;
        case activation_kind::tanh: map2(y, dy, dx, lo, hi, [&](V yv, V d) { return d * (one - yv * yv); }); break;
        case activation_kind::gelu:
            map2(x, dy, dx, lo, hi, [&](V xv, V d) {
                V cdf = half * (one + xsimd::erf(xv * c));
                V pdf = pdf_scale * xsimd::exp(-half * xv * xv);
                return d * (cdf + xv * pdf);
            });
            break;
    }
}

inline std::size_t activation_grain(activation_kind k) {
    switch (k) {
        case activation_kind::identity:
        case activation_kind::relu:
        case activation_kind::leaky_relu: return elementwise_grain;
        default: return transcendental_grain;
    }
}

// ---- reductions -------------------------------------------------------------------------------
/// Sum in double with four independent accumulators (the reference accumulates in double too).
template <class T>
inline double sum_range(const T* x, std::size_t lo, std::size_t hi) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    std::size_t i = lo;
    for (; i + 4 <= hi; i += 4) {
        s0 += static_cast<double>(x[i]);
        s1 += static_cast<double>(x[i + 1]);
        s2 += static_cast<double>(x[i + 2]);
        s3 += static_cast<double>(x[i + 3]);
    }
    // Tail as a bounded count: GCC 12 otherwise misjudges the trip count once the serial
    // path is inlined (a false -Waggressive-loop-optimizations).
    const std::size_t rem = hi - i;
    for (std::size_t k = 0; k < rem && k < 4; ++k) s0 += static_cast<double>(x[i + k]);
    return (s0 + s1) + (s2 + s3);
}

/// Deterministic parallel reduction: per-thread partials over fixed chunks, combined in order.
template <class T>
inline double sum_parallel(thread_pool& pool, const T* x, std::size_t n) {
    if (pool.size() == 1 || n < 2 * elementwise_grain) return sum_range(x, 0, n);
    // Grow-only, no allocation after the first call; bound to a local reference because inside
    // the pool lambda the name would denote each worker's own thread_local.
    thread_local std::vector<double> part_storage;
    std::vector<double>& part = part_storage;
    part.assign(std::max<std::size_t>(part.size(), pool.size()), 0.0);
    pool.run([&](unsigned t, unsigned nt) {
        std::size_t lo = n * t / nt, hi = n * (t + 1) / nt;
        part[t] = sum_range(x, lo, hi);
    });
    double s = 0;
    for (double p : part) s += p;
    return s;
}

/// db[c] += column sums of a rows x channels block (vectorised across channels; each db[c]
/// is summed over rows in order, as in the reference).
template <class T>
inline void column_sums(const T* dy, T* db, std::size_t rows, std::size_t channels, std::size_t c_lo,
                        std::size_t c_hi) {
    constexpr std::size_t W = vec_size<T>;
    std::size_t c = c_lo;
    for (; c + W <= c_hi; c += W) {
        vec<T> acc(T(0));
        for (std::size_t o = 0; o < rows; ++o) acc += load(dy + o * channels + c);
        store(db + c, acc);
    }
    // Scalar tail, written as a count so GCC 12 does not misjudge the trip count after
    // inlining (a false -Waggressive-loop-optimizations).
    const std::size_t tail = c_hi > c ? c_hi - c : 0;
    for (std::size_t k = 0; k < tail && k < W; ++k) {
        T s = 0;
        for (std::size_t o = 0; o < rows; ++o) s += dy[o * channels + c + k];
        db[c + k] = s;
    }
}

template <class T>
inline T contiguous_sum(const T* x, std::size_t n) {
    constexpr std::size_t W = vec_size<T>;
    vec<T> a0(T(0)), a1(T(0));
    std::size_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        a0 += load(x + i);
        a1 += load(x + i + W);
    }
    for (; i + W <= n; i += W) a0 += load(x + i);
    T s = hsum(a0 + a1);
    const std::size_t rem = n - i;  // < W; a bounded count (GCC 12's false -Waggressive-loop-optimizations)
    for (std::size_t k = 0; k < rem && k < W; ++k) s += x[i + k];
    return s;
}

}  // namespace lamina::host_detail
