// lamina host backend: 2-D convolution lowered to GEMM.
//
// Per image, with col = im2col(x) of shape [C*R*S][P*Q]:
//   forward          y_n  = W[K][CRS] * col                      (+ bias)
//   backward data    col  = W^T * dy_n, then dx_n = col2im(col)
//   backward weights dW  += dy_n[K][PQ] * col^T
// A 1x1, stride-1, unpadded convolution is already a GEMM on x (col == x): no im2col.
//
// Threading: with at least as many images as threads, images are split across threads, each
// running the serial GEMM with its own im2col scratch (thread 0 uses the layer's workspace,
// the others thread-local scratch); weight gradients are accumulated per thread and summed in
// thread order (deterministic for a given thread count). With fewer images, images run in
// turn and each GEMM is threaded.
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "../../core/geometry.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"

namespace lamina::host_detail {

inline bool conv_is_pointwise(const conv_geometry& g) {
    return g.r == 1 && g.s == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0;
}
inline std::size_t conv_col_size(const conv_geometry& g) {
    return conv_is_pointwise(g) ? 0 : g.c * g.r * g.s * g.p * g.q;
}

/// Output positions q in [lo, hi) whose input column q*stride + s - pad lies in [0, extent).
inline void conv_valid_range(std::size_t s, std::size_t stride, std::size_t pad, std::size_t extent, std::size_t outs,
                             std::size_t& lo, std::size_t& hi) {
    lo = s >= pad ? 0 : (pad - s + stride - 1) / stride;
    hi = extent + pad > s ? std::min(outs, (extent + pad - s + stride - 1) / stride) : 0;
    if (hi < lo) hi = lo;
}

/// col[(c*R + r)*S + s][p*Q + q] = x[c][p*sh + r - ph][q*sw + s - pw], 0 outside the image.
template <class T>
inline void im2col(const conv_geometry& g, const T* x, T* col) {
    const std::size_t pq = g.p * g.q;
    for (std::size_t c = 0; c < g.c; ++c)
        for (std::size_t r = 0; r < g.r; ++r)
            for (std::size_t s = 0; s < g.s; ++s) {
                T* row = col + ((c * g.r + r) * g.s + s) * pq;
                std::size_t q0, q1;
                conv_valid_range(s, g.stride_w, g.pad_w, g.w, g.q, q0, q1);
                for (std::size_t p = 0; p < g.p; ++p) {
                    T* out = row + p * g.q;
                    const std::size_t hh = p * g.stride_h + r;
                    if (hh < g.pad_h || hh - g.pad_h >= g.h) {
                        std::fill(out, out + g.q, T(0));
                        continue;
                    }
                    const T* in = x + (c * g.h + hh - g.pad_h) * g.w;
                    std::fill(out, out + q0, T(0));
                    if (g.stride_w == 1) {
                        if (q1 > q0) std::memcpy(out + q0, in + (q0 + s - g.pad_w), (q1 - q0) * sizeof(T));
                    } else {
                        for (std::size_t q = q0; q < q1; ++q) out[q] = in[q * g.stride_w + s - g.pad_w];
                    }
                    std::fill(out + q1, out + g.q, T(0));
                }
            }
}

/// dx (one image, zeroed here) = sum of col's entries at the input cells they were read from.
template <class T>
inline void col2im(const conv_geometry& g, const T* col, T* dx) {
    const std::size_t pq = g.p * g.q;
    std::memset(static_cast<void*>(dx), 0, g.c * g.h * g.w * sizeof(T));
    for (std::size_t c = 0; c < g.c; ++c)
        for (std::size_t r = 0; r < g.r; ++r)
            for (std::size_t s = 0; s < g.s; ++s) {
                const T* row = col + ((c * g.r + r) * g.s + s) * pq;
                std::size_t q0, q1;
                conv_valid_range(s, g.stride_w, g.pad_w, g.w, g.q, q0, q1);
                for (std::size_t p = 0; p < g.p; ++p) {
                    const std::size_t hh = p * g.stride_h + r;
                    if (hh < g.pad_h || hh - g.pad_h >= g.h) continue;
                    T* out = dx + (c * g.h + hh - g.pad_h) * g.w;
                    const T* in = row + p * g.q;
                    if (g.stride_w == 1) {
                        T* o = out + (q0 + s - g.pad_w);
                        for (std::size_t q = 0; q < q1 - q0; ++q) o[q] += in[q0 + q];
                    } else {
                        for (std::size_t q = q0; q < q1; ++q) out[q * g.stride_w + s - g.pad_w] += in[q];
                    }
                }
            }
}

/// Image split: true when every thread gets an image and the split is not badly unbalanced.
inline bool conv_split_images(const conv_geometry& g, unsigned nt) {
    return nt > 1 && g.n >= nt && (g.n % nt == 0 || g.n >= 4 * static_cast<std::size_t>(nt));
}

template <class T>
inline void conv_forward_image(thread_pool* pool, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                               T* col) {
    const std::size_t crs = g.c * g.r * g.s, pq = g.p * g.q;
    const T* b = x;
    if (!conv_is_pointwise(g)) {
        im2col(g, x, col);
        b = col;
    }
    gemm_parallel(pool, transpose::no, transpose::no, g.k, pq, crs, T(1), w, crs, b, pq, T(0), y, pq);
    if (bias)
        for (std::size_t k = 0; k < g.k; ++k) {
            const vec<T> vb(bias[k]);
            map1(y + k * pq, y + k * pq, 0, pq, [&](vec<T> v) { return v + vb; });
        }
}

template <class T>
inline void conv_backward_data_image(thread_pool* pool, const conv_geometry& g, const T* dy, const T* w, T* dx,
                                     T* col) {
    const std::size_t crs = g.c * g.r * g.s, pq = g.p * g.q;
    if (conv_is_pointwise(g)) {
        gemm_parallel(pool, transpose::yes, transpose::no, g.c, pq, g.k, T(1), w, crs, dy, pq, T(0), dx, pq);
        return;
    }
    gemm_parallel(pool, transpose::yes, transpose::no, crs, pq, g.k, T(1), w, crs, dy, pq, T(0), col, pq);
    col2im(g, col, dx);
}

/// dw (+)= dy_n * col^T; accumulate == false overwrites dw.
template <class T>
inline void conv_backward_weights_image(thread_pool* pool, const conv_geometry& g, const T* x, const T* dy, T* dw,
                                        T* col, bool accumulate) {
    const std::size_t crs = g.c * g.r * g.s, pq = g.p * g.q;
    const T* b = x;
    if (!conv_is_pointwise(g)) {
        im2col(g, x, col);
        b = col;
    }
    gemm_parallel(pool, transpose::no, transpose::yes, g.k, crs, pq, T(1), dy, pq, b, pq, accumulate ? T(1) : T(0), dw,
                  crs);
}

/// Runs per-image work: images split across threads, or in turn with threaded GEMMs.
/// f(pool_or_null, image, col_scratch, thread_index).
template <class T, class F>
inline void conv_for_images(thread_pool& pool, const conv_geometry& g, T* ws, F&& f) {
    const std::size_t col_n = conv_col_size(g);
    if (conv_split_images(g, pool.size())) {
        pool.run([&](unsigned t, unsigned nt) {
            const std::size_t lo = g.n * t / nt, hi = g.n * (t + 1) / nt;
            T* col = (t == 0 && ws) || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
            for (std::size_t n = lo; n < hi; ++n) f(static_cast<thread_pool*>(nullptr), n, col, t, nt);
        });
    } else {
        T* col = ws || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
        for (std::size_t n = 0; n < g.n; ++n) f(&pool, n, col, 0u, 1u);
    }
}

}  // namespace lamina::host_detail
