// lamina host backend: 2-D convolution (NCHW activations, KCRS weights).
//
// Forward, chosen per shape (at compile time when the conv2d layer passes its conv_shape tag):
//   - few filters (K <= 32), stride 1: direct kernel on a zero-padded copy of each image
//     (conv_direct.hpp; ResNet-20, LeNet);
//   - otherwise an implicit GEMM over the whole batch, Y[K][N*P*Q] = W * col, whose B-packing
//     gathers col panels straight from the input (conv_igemm.hpp: no im2col buffer, batch
//     folded into the columns for 7x7/14x14 maps);
//   - a 1x1 stride-1 unpadded convolution on a large map (P*Q >= 2048): per-image GEMM on x.
// Backward data: with stride 1 and few input channels (2 <= C <= 32), the direct forward kernel
// on dy with the weights transposed and rotated (conv_direct.hpp); otherwise implicit GEMM col = W^T * dY per column block, scattered (col2im) into dx
// by threads owning disjoint channel ranges (conv_igemm.hpp); per-image GEMM + col2im when
// there are fewer channels than threads; per-image dx_n = W^T * dy_n for 1x1 (no col2im).
// Backward weights: per image, with col = im2col(x) of shape [C*R*S][P*Q] (x itself for 1x1),
//   dW += dy_n[K][PQ] * col^T.
//
// Grouped or dilated convolutions (conv_geometry::plain() false) take their own paths and leave
// the ones above untouched: depthwise (one channel per group) by direct plane kernels
// (conv_depthwise.hpp); any other group count by the per-image route above run per (image,
// group), with an im2col that spaces the taps by the dilation.
//
// Per-image threading: with at least as many images as threads, images are split across
// threads, each running the serial GEMM with its own im2col scratch (thread 0 uses the layer's
// workspace, the others thread-local scratch); weight gradients are accumulated per thread and
// summed in thread order (deterministic for a given thread count). With fewer images, images
// run in turn and each GEMM is threaded. The forward paths are bit-identical across thread
// counts.
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "../../core/geometry.hpp"
#include "conv_depthwise.hpp"
#include "conv_direct.hpp"
#include "conv_igemm.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"
#include "pooling.hpp"

namespace lamina::host_detail {

inline bool conv_is_pointwise(const conv_geometry& g) {
    return g.r == 1 && g.s == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0;
}
inline std::size_t conv_col_size(const conv_geometry& g) {
    return conv_is_pointwise(g) ? 0 : g.c * g.r * g.s * g.p * g.q;
}

/// col[(c*R + r)*S + s][p*Q + q] = x[c][p*sh + r*dh - ph][q*sw + s*dw - pw], 0 outside the
/// image (one group of one image: g.c channels, g.groups ignored).
template <class T>
inline void im2col(const conv_geometry& g, const T* x, T* col) {
    const std::size_t pq = g.p * g.q;
    for (std::size_t c = 0; c < g.c; ++c)
        for (std::size_t r = 0; r < g.r; ++r)
            for (std::size_t s = 0; s < g.s; ++s) {
                T* row = col + ((c * g.r + r) * g.s + s) * pq;
                const std::size_t rd = r * g.dilation_h, sd = s * g.dilation_w;
                std::size_t q0, q1;
                conv_valid_range(sd, g.stride_w, g.pad_w, g.w, g.q, q0, q1);
                for (std::size_t p = 0; p < g.p; ++p) {
                    T* out = row + p * g.q;
                    const std::size_t hh = p * g.stride_h + rd;
                    if (hh < g.pad_h || hh - g.pad_h >= g.h) {
                        std::fill(out, out + g.q, T(0));
                        continue;
                    }
                    const T* in = x + (c * g.h + hh - g.pad_h) * g.w;
                    std::fill(out, out + q0, T(0));
                    if (g.stride_w == 1) {
                        if (q1 > q0) std::memcpy(out + q0, in + (q0 + sd - g.pad_w), (q1 - q0) * sizeof(T));
                    } else {
                        for (std::size_t q = q0; q < q1; ++q) out[q] = in[q * g.stride_w + sd - g.pad_w];
                    }
                    std::fill(out + q1, out + g.q, T(0));
                }
            }
}

/// dx (one group of one image, zeroed here) = sum of col's entries at the input cells they
/// were read from.
template <class T>
inline void col2im(const conv_geometry& g, const T* col, T* dx) {
    const std::size_t pq = g.p * g.q;
    std::memset(static_cast<void*>(dx), 0, g.c * g.h * g.w * sizeof(T));
    for (std::size_t c = 0; c < g.c; ++c)
        for (std::size_t r = 0; r < g.r; ++r)
            for (std::size_t s = 0; s < g.s; ++s) {
                const T* row = col + ((c * g.r + r) * g.s + s) * pq;
                const std::size_t rd = r * g.dilation_h, sd = s * g.dilation_w;
                std::size_t q0, q1;
                conv_valid_range(sd, g.stride_w, g.pad_w, g.w, g.q, q0, q1);
                for (std::size_t p = 0; p < g.p; ++p) {
                    const std::size_t hh = p * g.stride_h + rd;
                    if (hh < g.pad_h || hh - g.pad_h >= g.h) continue;
                    T* out = dx + (c * g.h + hh - g.pad_h) * g.w;
                    const T* in = row + p * g.q;
                    if (g.stride_w == 1) {
                        T* o = out + (q0 + sd - g.pad_w);
                        for (std::size_t q = 0; q < q1 - q0; ++q) o[q] += in[q0 + q];
                    } else {
                        for (std::size_t q = q0; q < q1; ++q) out[q * g.stride_w + sd - g.pad_w] += in[q];
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
    // The per-filter bias is a row bias of this K x P*Q GEMM: added in the epilogue, tile by tile.
    gemm_parallel(pool, transpose::no, transpose::no, g.k, pq, crs, T(1), w, crs, b, pq, T(0), y, pq,
                  gemm_epilogue<T>{nullptr, activation{}, bias});
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

// ---- grouped and dilated convolutions -------------------------------------------------------

/// One group of one image of g: g.c / groups channels to g.k / groups filters, groups = 1,
/// same kernel, stride, padding and dilation. Its input, output and weights are contiguous
/// slices of g's: group gi of image n starts at unit u = n * groups + gi.
inline conv_geometry conv_group_geometry(const conv_geometry& g) {
    conv_geometry t = g;
    t.n = 1;
    t.c = g.group_channels();
    t.k = g.group_filters();
    t.groups = 1;
    return t;
}

/// Runs f(pool_or_null, unit, col_scratch) for units [0, units): split across threads (serial
/// GEMMs, each thread its own scratch) when every thread gets some and the split is balanced,
/// else in turn with threaded GEMMs (conv_for_images' rule, for (image, group) units).
template <class T, class F>
inline void conv_for_units(thread_pool& pool, std::size_t units, std::size_t col_n, T* ws, F&& f) {
    const std::size_t nt = pool.size();
    if (nt > 1 && units >= nt && (units % nt == 0 || units >= 4 * nt)) {
        pool.run([&](unsigned t, unsigned parts) {
            const std::size_t lo = units * t / parts, hi = units * (t + 1) / parts;
            T* col = (t == 0 && ws) || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
            for (std::size_t u = lo; u < hi; ++u) f(static_cast<thread_pool*>(nullptr), u, col);
        });
    } else {
        T* col = ws || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
        for (std::size_t u = 0; u < units; ++u) f(&pool, u, col);
    }
}

/// Forward of a grouped or dilated convolution: per (image, group), im2col + GEMM.
template <class T>
inline void conv_forward_grouped(thread_pool& pool, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                                 T* ws) {
    const conv_geometry t = conv_group_geometry(g);
    const std::size_t G = g.groups, xs = t.c * t.h * t.w, ys = t.k * t.p * t.q, wn = t.weight_size();
    conv_for_units(pool, g.n * G, conv_col_size(t), ws, [&](thread_pool* p, std::size_t u, T* col) {
        const std::size_t gi = u % G;
        conv_forward_image(p, t, x + u * xs, w + gi * wn, bias ? bias + gi * t.k : bias, y + u * ys, col);
    });
}

/// dx (overwritten) of a grouped or dilated convolution: per (image, group), GEMM + col2im.
template <class T>
inline void conv_backward_data_grouped(thread_pool& pool, const conv_geometry& g, const T* dy, const T* w, T* dx,
                                       T* ws) {
    const conv_geometry t = conv_group_geometry(g);
    const std::size_t G = g.groups, xs = t.c * t.h * t.w, ys = t.k * t.p * t.q, wn = t.weight_size();
    conv_for_units(pool, g.n * G, conv_col_size(t), ws, [&](thread_pool* p, std::size_t u, T* col) {
        conv_backward_data_image(p, t, dy + u * ys, w + (u % G) * wn, dx + u * xs, col);
    });
}

/// dw (overwritten) of a grouped or dilated convolution: each group's slice of dw sums its
/// images' dy_n * col^T. Threads own whole groups when there are enough; else they split the
/// images into private partials added in thread order (as the plain path does); else the
/// GEMMs are threaded.
template <class T>
inline void conv_backward_weights_grouped(thread_pool& pool, const conv_geometry& g, const T* x, const T* dy, T* dw,
                                          T* ws) {
    const conv_geometry t = conv_group_geometry(g);
    const std::size_t G = g.groups, xs = t.c * t.h * t.w, ys = t.k * t.p * t.q, wn = t.weight_size();
    const std::size_t all = g.weight_size(), col_n = conv_col_size(t);
    if (g.n == 0 || g.p * g.q == 0) {
        std::fill(dw, dw + all, T(0));
        return;
    }
    auto image_group = [&](thread_pool* p, std::size_t n, std::size_t gi, T* acc, T* col, bool accumulate) {
        conv_backward_weights_image(p, t, x + (n * G + gi) * xs, dy + (n * G + gi) * ys, acc + gi * wn, col, accumulate);
    };
    const std::size_t nt = pool.size();
    if (nt > 1 && G >= nt) {
        pool.run([&](unsigned th, unsigned parts) {
            T* col = (th == 0 && ws) || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
            for (std::size_t gi = G * th / parts; gi < G * (th + 1) / parts; ++gi)
                for (std::size_t n = 0; n < g.n; ++n) image_group(nullptr, n, gi, dw, col, n > 0);
        });
        return;
    }
    if (!conv_split_images(g, pool.size())) {
        T* col = ws || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
        for (std::size_t n = 0; n < g.n; ++n)
            for (std::size_t gi = 0; gi < G; ++gi) image_group(&pool, n, gi, dw, col, n > 0);
        return;
    }
    // (Bound to a local reference: inside the pool lambda the name would denote each worker's
    // own thread_local.)
    thread_local std::vector<T*> partial_storage;
    std::vector<T*>& partial = partial_storage;
    partial.assign(std::max<std::size_t>(partial.size(), pool.size()), nullptr);
    unsigned used = 1;
    pool.run([&](unsigned th, unsigned parts) {
        if (th == 0) used = parts;
        const std::size_t lo = g.n * th / parts, hi = g.n * (th + 1) / parts;
        T* acc = th == 0 ? dw : thread_scratch<T, slot_partial>(all);
        partial[th] = acc;
        T* col = (th == 0 && ws) || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
        if (lo == hi) std::fill(acc, acc + all, T(0));
        for (std::size_t n = lo; n < hi; ++n)
            for (std::size_t gi = 0; gi < G; ++gi) image_group(nullptr, n, gi, acc, col, n > lo);
    });
    for (unsigned th = 1; th < used; ++th) {
        const T* src = partial[th];
        parallel_range(pool, all, elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            map2(src, dw, dw, lo, hi, [](vec<T> a, vec<T> b) { return a + b; });
        });
    }
}

// ---- the backend's conv kernels (host::conv2d_* forward here) ---------------------------------

/// Forward path choice. Few filters (K <= 32) at stride 1: the direct kernel
/// (conv_direct.hpp). Otherwise the implicit GEMM (whole batch, no im2col buffer) everywhere except a
/// 1x1 stride-1 unpadded convolution on a large map: there each image already is a GEMM
/// operand (no im2col), and P*Q is long enough to feed the per-image GEMMs directly.
constexpr bool conv_use_igemm(bool pointwise, std::size_t pq) { return !(pointwise && pq >= 2048); }
inline bool conv_use_igemm(const conv_geometry& g) { return conv_use_igemm(conv_is_pointwise(g), g.p * g.q); }

/// Scratch (in T elements) the caller passes to the conv kernels: one image's im2col matrix
/// (C*R*S x P*Q), or 0 for a 1x1 stride-1 unpadded convolution. Other threads use their own
/// thread-local scratch; a null workspace is also accepted.
inline std::size_t conv2d_workspace_size(const conv_geometry& g) {
    if (g.plain()) return conv_col_size(g);
    return conv_is_depthwise(g) ? 0 : conv_col_size(conv_group_geometry(g));  // one group's im2col
}

/// Forward of a grouped or dilated convolution (g.plain() false).
template <class T>
inline void conv2d_forward_general(thread_pool& pool, const conv_geometry& g, const T* x, const T* w, const T* bias,
                                   T* y, T* ws) {
    if (conv_is_depthwise(g))
        conv_forward_depthwise(pool, g, x, w, bias, y);
    else
        conv_forward_grouped(pool, g, x, w, bias, y, ws);
}

/// Forward by per-image im2col (skipped for 1x1) + GEMM.
template <class T>
inline void conv2d_forward_per_image(thread_pool& pool, const conv_geometry& g, const T* x, const T* w, const T* bias,
                                     T* y, T* ws) {
    const std::size_t in = g.c * g.h * g.w, out = g.k * g.p * g.q;
    conv_for_images(pool, g, ws, [&](thread_pool* p, std::size_t n, T* col, unsigned, unsigned) {
        conv_forward_image(p, g, x + n * in, w, bias, y + n * out, col);
    });
}

template <class T>
inline void conv2d_forward(thread_pool& pool, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                           T* ws) {
    if (!g.plain()) {
        conv2d_forward_general(pool, g, x, w, bias, y, ws);
        return;
    }
    if (conv_use_direct(g))
        conv_forward_direct(&pool, g, x, w, bias, y);
    else if (conv_use_igemm(g))
        conv_forward_igemm(&pool, g, x, w, bias, y);
    else
        conv2d_forward_per_image(pool, g, x, w, bias, y, ws);
}

/// Forward with the layer's shape known at compile time: the path is fixed per layer.
template <class Shape, class T>
inline void conv2d_forward(thread_pool& pool, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                           T* ws, Shape) {
    if constexpr (!Shape::plain)
        conv2d_forward_general(pool, g, x, w, bias, y, ws);
    else if constexpr (conv_use_direct(Shape::k, Shape::stride))
        conv_forward_direct(&pool, g, x, w, bias, y);
    else if constexpr (conv_use_igemm(Shape::pointwise, Shape::p * Shape::q))
        conv_forward_igemm(&pool, g, x, w, bias, y);
    else
        conv2d_forward_per_image(pool, g, x, w, bias, y, ws);
}

/// dx = conv2d^T(dy, w) (overwrites dx).
template <class T>
inline void conv2d_backward_data(thread_pool& pool, const conv_geometry& g, const T* dy, const T* w, T* dx, T* ws) {
    if (!g.plain()) {
        if (conv_is_depthwise(g))
            conv_backward_data_depthwise(pool, g, dy, w, dx);
        else
            conv_backward_data_grouped(pool, g, dy, w, dx, ws);
        return;
    }
    if (conv_use_direct_backward_data(g)) {
        conv_backward_data_direct(&pool, g, dy, w, dx);
        return;
    }
    // 1x1 stride-1 unpadded: dx_n = W^T * dy_n directly (no col2im), per image.
    if (!conv_is_pointwise(g) && (pool.size() == 1 || g.c >= pool.size())) {
        conv_backward_data_igemm(&pool, g, dy, w, dx);
        return;
    }
    const std::size_t in = g.c * g.h * g.w, out = g.k * g.p * g.q;
    conv_for_images(pool, g, ws, [&](thread_pool* p, std::size_t n, T* col, unsigned, unsigned) {
        conv_backward_data_image(p, g, dy + n * out, w, dx + n * in, col);
    });
}

/// db[k] = sum of dy over n, p, q (overwrites db).
template <class T>
inline void conv_bias_grad(thread_pool& pool, const conv_geometry& g, const T* dy, T* db) {
    const std::size_t pq = g.p * g.q;
    parallel_range(pool, g.k, plane_grain(g.n * pq), [&](std::size_t lo, std::size_t hi) {
        for (std::size_t k = lo; k < hi; ++k) {
            T s = 0;
            for (std::size_t n = 0; n < g.n; ++n) s += contiguous_sum(dy + (n * g.k + k) * pq, pq);
            db[k] = s;
        }
    });
}

/// dw = sum over the batch of x (*) dy (overwrites dw); db[k] = sum of dy over n, p, q when
/// db is not null (overwrites db).
template <class T>
inline void conv2d_backward_weights(thread_pool& pool, const conv_geometry& g, const T* x, const T* dy, T* dw, T* db,
                                    T* ws) {
    const std::size_t in = g.c * g.h * g.w, out = g.k * g.p * g.q, wn = g.weight_size();
    if (db) conv_bias_grad(pool, g, dy, db);
    if (!g.plain()) {
        if (conv_is_depthwise(g))
            conv_backward_weights_depthwise(pool, g, x, dy, dw);
        else
            conv_backward_weights_grouped(pool, g, x, dy, dw, ws);
        return;
    }
    if (g.n == 0 || g.p * g.q == 0) {
        std::fill(dw, dw + wn, T(0));
        return;
    }
    if (!conv_split_images(g, pool.size())) {
        conv_for_images(pool, g, ws, [&](thread_pool* p, std::size_t n, T* col, unsigned, unsigned) {
            conv_backward_weights_image(p, g, x + n * in, dy + n * out, dw, col, n > 0);
        });
        return;
    }
    // Images split across threads: thread t accumulates its images into its own partial
    // (thread 0 into dw), then the partials are added to dw in thread order.
    // Grow-only per calling thread: no allocation on the hot path after the first call.
    // (Bound to a local reference: inside the pool lambda the name would denote each
    // worker's own thread_local.)
    thread_local std::vector<T*> partial_storage;
    std::vector<T*>& partial = partial_storage;
    partial.assign(std::max<std::size_t>(partial.size(), pool.size()), nullptr);
    unsigned used = 1;
    const std::size_t col_n = conv_col_size(g);
    pool.run([&](unsigned t, unsigned nt) {
        if (t == 0) used = nt;
        const std::size_t lo = g.n * t / nt, hi = g.n * (t + 1) / nt;
        T* acc = t == 0 ? dw : thread_scratch<T, slot_partial>(wn);
        partial[t] = acc;
        T* col = (t == 0 && ws) || col_n == 0 ? ws : thread_scratch<T, slot_col>(col_n);
        if (lo == hi) std::fill(acc, acc + wn, T(0));
        for (std::size_t n = lo; n < hi; ++n)
            conv_backward_weights_image<T>(nullptr, g, x + n * in, dy + n * out, acc, col, n > lo);
    });
    for (unsigned t = 1; t < used; ++t) {
        const T* src = partial[t];
        parallel_range(pool, wn, elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            map2(src, dw, dw, lo, hi, [](vec<T> a, vec<T> b) { return a + b; });
        });
    }
}

}  // namespace lamina::host_detail
