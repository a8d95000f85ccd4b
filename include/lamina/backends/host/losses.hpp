// lamina host backend: row-wise softmax and the losses. Rows are independent, so rows are
// split across threads and each row is a few vectorised passes over contiguous memory.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "elementwise.hpp"

namespace lamina::host_detail {

template <class T>
inline T row_max(const T* x, std::size_t n) {
    constexpr std::size_t W = vec_size<T>;
    T m = x[0];
    std::size_t i = 0;
    if (n >= W) {
        vec<T> vm = load(x);
        for (i = W; i + W <= n; i += W) vm = xsimd::max(vm, load(x + i));
        alignas(64) T t[W];
        vm.store_aligned(t);
        for (std::size_t j = 0; j < W; ++j) m = std::max(m, t[j]);
    }
    // The tail (< W elements) as a bounded count: GCC 12 otherwise misjudges the trip count
    // once a small constant n is inlined (a false -Waggressive-loop-optimizations).
    const std::size_t rem = n - i;
    for (std::size_t k = 0; k < rem && k < W; ++k) m = std::max(m, x[i + k]);
    return m;
}

/// y = exp(x - shift), returns the sum of y.
template <class T>
inline T exp_shifted(const T* x, T* y, std::size_t n, T shift) {
    constexpr std::size_t W = vec_size<T>;
    const vec<T> vs(shift);
    vec<T> acc(T(0));
    std::size_t i = 0;
    for (; i + W <= n; i += W) {
        vec<T> e = xsimd::exp(load(x + i) - vs);
        store(y + i, e);
        acc += e;
    }
    T s = hsum(acc);
    if (i < n) {
        vec<T> e = xsimd::exp(load_tail(x + i, n - i) - vs);
        alignas(64) T t[W];
        e.store_aligned(t);
        for (std::size_t j = 0; j < n - i; ++j) {
            y[i + j] = t[j];
            s += t[j];
        }
    }
    return s;
}

template <class T>
inline void softmax_rows(const T* x, T* y, std::size_t cols, std::size_t r_lo, std::size_t r_hi) {
    for (std::size_t r = r_lo; r < r_hi; ++r) {
        const T* xr = x + r * cols;
        T* yr = y + r * cols;
        const T s = exp_shifted(xr, yr, cols, row_max(xr, cols));
        const vec<T> vs(s);
        map1(yr, yr, 0, cols, [&](vec<T> v) { return v / vs; });
    }
}

template <class T>
inline void softmax_backward_rows(const T* y, const T* dy, T* dx, std::size_t cols, std::size_t r_lo,
                                  std::size_t r_hi) {
    constexpr std::size_t W = vec_size<T>;
    for (std::size_t r = r_lo; r < r_hi; ++r) {
        const T* yr = y + r * cols;
        const T* dyr = dy + r * cols;
        vec<T> acc(T(0));
        std::size_t c = 0;
        for (; c + W <= cols; c += W) acc = xsimd::fma(load(dyr + c), load(yr + c), acc);
        T dot = hsum(acc);
        const std::size_t rem = cols - c;  // < W; a bounded count (GCC 12's false -Waggressive-loop-optimizations)
        for (std::size_t k = 0; k < rem && k < W; ++k) dot += dyr[c + k] * yr[c + k];
        const vec<T> vdot(dot);
        map2(yr, dyr, dx + r * cols, 0, cols, [&](vec<T> yv, vec<T> d) { return yv * (d - vdot); });
    }
}

template <class T>
inline void softmax_cross_entropy_rows(const T* logits, const T* labels, T* grad, T* loss_rows, std::size_t cols,
                                       T smoothing, T grad_scale, std::size_t r_lo, std::size_t r_hi) {
    constexpr std::size_t W = vec_size<T>;
    const T off = smoothing / static_cast<T>(cols);  // every class's target share
    for (std::size_t r = r_lo; r < r_hi; ++r) {
        const T* x = logits + r * cols;
        T* g = grad + r * cols;
        const T m = row_max(x, cols);
        // exp(x - m) goes to g as scratch; its sum gives log-sum-exp.
        const T log_s = std::log(exp_shifted(x, g, cols, m)) + m;
        const vec<T> vls(log_s), voff(off), vscale(grad_scale);
        // loss = -sum_c target_c * (x_c - log_s) = -off * sum_c (x_c - log_s) - (1 - e) * (x_l - log_s)
        vec<T> acc(T(0));
        std::size_t c = 0;
        for (; c + W <= cols; c += W) {
            vec<T> logp = load(x + c) - vls;
            acc += logp;
            store(g + c, (xsimd::exp(logp) - voff) * vscale);
        }
        T sum_logp = hsum(acc);
        for (; c < cols; ++c) {
            T logp = x[c] - log_s;
            sum_logp += logp;
            g[c] = (std::exp(logp) - off) * grad_scale;
        }
        T loss = -off * sum_logp;
        const auto label = static_cast<std::size_t>(labels[r]);
        if (label < cols) {
            const T target = (T(1) - smoothing) + off;
            const T logp = x[label] - log_s;
            loss -= (T(1) - smoothing) * logp;
            g[label] = (std::exp(logp) - target) * grad_scale;
        }
        loss_rows[r] = loss;
    }
}

/// Mean squared (Abs = false) or absolute (Abs = true) error of each row, with gradient.
template <bool Abs, class T>
inline void regression_loss_rows(const T* pred, const T* target, T* grad, T* loss_rows, std::size_t cols,
                                 T grad_scale, std::size_t r_lo, std::size_t r_hi) {
    constexpr std::size_t W = vec_size<T>;
    using V = vec<T>;
    const T inv_cols = T(1) / static_cast<T>(cols);
    const V zero(T(0)), one(T(1)), gs(Abs ? grad_scale * inv_cols : T(2) * inv_cols * grad_scale);
    auto row_op = [&](V d, V& acc) {
        if constexpr (Abs) {
            acc += xsimd::abs(d);
            V sign = xsimd::select(d > zero, one, xsimd::select(d < zero, -one, d * zero));  // NaN stays NaN
            return sign * gs;
        } else {
            acc = xsimd::fma(d, d, acc);
            return d * gs;
        }
    };
    for (std::size_t r = r_lo; r < r_hi; ++r) {
        const T* p = pred + r * cols;
        const T* t = target + r * cols;
        T* g = grad + r * cols;
        V acc(T(0));
        std::size_t c = 0;
        for (; c + W <= cols; c += W) store(g + c, row_op(load(p + c) - load(t + c), acc));
        if (c < cols) {
            // Padding lanes are 0 - 0: they add nothing to the loss.
            store_tail(g + c, row_op(load_tail(p + c, cols - c) - load_tail(t + c, cols - c), acc), cols - c);
        }
        loss_rows[r] = hsum(acc) * inv_cols;
    }
}

}  // namespace lamina::host_detail
