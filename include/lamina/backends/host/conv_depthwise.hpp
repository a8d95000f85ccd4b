// lamina host backend: depthwise convolution (groups == C: one input channel per group,
// K = C * multiplier filters), any stride, padding and dilation.
//
// An im2col + GEMM per channel would be a 1 x R*S by R*S x P*Q product: all packing, little
// arithmetic. These kernels work on planes instead. Each input plane is copied once into a
// zero-padded buffer whose columns are split by the stride's phase (depthwise_plane), so the
// input a tap reads along an output row is one contiguous run at any stride and dilation, and
// every tap of every output row is a vector axpy (forward, backward data into the padded
// buffer) or dot product (weight gradient) without bounds checks. Threads own input planes
// (n, c) with the multiplier filters reading them (forward, backward data) or channels
// (weight gradient): no reduction between threads, results independent of the thread count.
#pragma once

#include <algorithm>
#include <cstddef>

#include "../../core/geometry.hpp"
#include "pooling.hpp"
#include "simd.hpp"

namespace lamina::host_detail {

/// Output positions q in [lo, hi) whose input column q*stride + s - pad lies in [0, extent)
/// (s is the tap's offset, s * dilation; conv.hpp's im2col and col2im use it too).
inline void conv_valid_range(std::size_t s, std::size_t stride, std::size_t pad, std::size_t extent, std::size_t outs,
                             std::size_t& lo, std::size_t& hi) {
    lo = s >= pad ? 0 : (pad - s + stride - 1) / stride;
    hi = extent + pad > s ? std::min(outs, (extent + pad - s + stride - 1) / stride) : 0;
    if (hi < lo) hi = lo;
}

/// One input channel per group: the depthwise kernels serve g.
inline bool conv_is_depthwise(const conv_geometry& g) { return g.groups > 1 && g.groups == g.c; }

/// out[i] += a * in[i] for i < n.
template <class T>
inline void depthwise_axpy(T* out, const T* in, T a, std::size_t n) {
    using V = vec<T>;
    constexpr std::size_t W = vec_size<T>;
    const V va(a);
    std::size_t i = 0;
    for (; i + W <= n; i += W) xsimd::fma(va, V::load_unaligned(in + i), V::load_unaligned(out + i)).store_unaligned(out + i);
    for (; i < n; ++i) out[i] += a * in[i];
}

inline constexpr int slot_depthwise_plane = 46;  // one padded, phase-split plane (each thread)
inline constexpr int slot_depthwise_acc = 47;    // one channel's weight-gradient sums (each thread)
inline constexpr int slot_depthwise_taps = 48;   // the taps' offsets in the plane (each thread)

/// One zero-padded plane with its columns split by the stride's phase, so that the columns
/// one tap reads along an output row, q * sw + off for q = 0, 1, ..., are contiguous: padded
/// row h, phase f holds padded columns f, f + sw, f + 2 sw, ... at [(h * sw + f) * len + j].
/// Output row p's run for tap (r, s) starts at p * row_step + tap(r, s).
struct depthwise_plane {
    std::size_t hp, wp, sw, len, row_step, slack;
    depthwise_plane(const conv_geometry& g, std::size_t vector)
        : hp(g.h + 2 * g.pad_h), wp(g.w + 2 * g.pad_w), sw(g.stride_w), len((wp + sw - 1) / sw),
          row_step(g.stride_h * sw * len), slack(vector) {}
    /// Elements to allocate: the plane, then zeros that whole-vector reads past a run's end
    /// (forward only; those lanes are discarded) may touch.
    std::size_t size() const { return hp * sw * len + slack; }
    std::size_t at(std::size_t h, std::size_t off) const { return (h * sw + off % sw) * len + off / sw; }
    /// taps[r * S + s] = the start of tap (r, s)'s run for output row 0.
    void taps(const conv_geometry& g, std::size_t* t) const {
        for (std::size_t r = 0; r < g.r; ++r)
            for (std::size_t s = 0; s < g.s; ++s) t[r * g.s + s] = at(r * g.dilation_h, s * g.dilation_w);
    }
};

/// buf = the padded, phase-split copy of the input plane x.
template <class T>
inline void depthwise_pack(const conv_geometry& g, const depthwise_plane& l, const T* x, T* buf) {
    std::fill(buf, buf + l.size(), T(0));
    for (std::size_t h = 0; h < g.h; ++h) {
        const T* in = x + h * g.w;
        T* row = buf + (h + g.pad_h) * l.sw * l.len;
        if (l.sw == 1) {
            std::copy(in, in + g.w, row + g.pad_w);
            continue;
        }
        for (std::size_t f = 0; f < l.sw; ++f) {  // the input columns w with (w + pad) % sw == f
            const std::size_t w0 = (f + l.sw - g.pad_w % l.sw) % l.sw;
            T* out = row + f * l.len + (w0 + g.pad_w) / l.sw;
            for (std::size_t w = w0, j = 0; w < g.w; w += l.sw, ++j) out[j] = in[w];
        }
    }
}

/// n <= NV * W outputs of one row: the accumulators stay in registers over all taps (whole
/// vectors are read; lanes past n are discarded).
template <std::size_t NV, class T>
inline void depthwise_row_chunk(const T* base, const std::size_t* taps, const T* wk, std::size_t rs, T bias, T* out,
                                std::size_t n) {
    using V = vec<T>;
    constexpr std::size_t W = vec_size<T>;
    V acc[NV];
    for (std::size_t v = 0; v < NV; ++v) acc[v] = V(bias);
    for (std::size_t e = 0; e < rs; ++e) {
        const V wv(wk[e]);
        const T* in = base + taps[e];
        for (std::size_t v = 0; v < NV; ++v) acc[v] = xsimd::fma(wv, V::load_unaligned(in + v * W), acc[v]);
    }
    if (n == NV * W) {
        for (std::size_t v = 0; v < NV; ++v) acc[v].store_unaligned(out + v * W);
    } else {
        alignas(64) T t[NV * W];
        for (std::size_t v = 0; v < NV; ++v) acc[v].store_aligned(t + v * W);
        std::copy(t, t + n, out);
    }
}

/// va (vector part) and tail (scalar part) += sum of a[i] * b[i] for i < n.
template <class T>
inline void depthwise_dot(const T* a, const T* b, std::size_t n, vec<T>& va, T& tail) {
    using V = vec<T>;
    constexpr std::size_t W = vec_size<T>;
    std::size_t i = 0;
    for (; i + W <= n; i += W) va = xsimd::fma(V::load_unaligned(a + i), V::load_unaligned(b + i), va);
    for (; i < n; ++i) tail += a[i] * b[i];
}

/// y = depthwise conv(x, w) + bias. Threads own input planes (n, c) and compute the
/// multiplier output planes that read it from one padded copy, row by row in register tiles
/// of up to 4 vectors.
template <class T>
inline void conv_forward_depthwise(thread_pool& pool, const conv_geometry& g, const T* x, const T* w, const T* bias,
                                   T* y) {
    constexpr std::size_t W = vec_size<T>;
    const std::size_t mult = g.k / g.c, hw = g.h * g.w, pq = g.p * g.q, rs = g.r * g.s;
    const depthwise_plane l(g, W);
    parallel_range(pool, g.n * g.c, plane_grain(mult * pq * rs), [&](std::size_t lo, std::size_t hi) {
        T* buf = thread_scratch<T, slot_depthwise_plane>(l.size());
        std::size_t* taps = thread_scratch<std::size_t, slot_depthwise_taps>(rs);
        l.taps(g, taps);
        for (std::size_t nc = lo; nc < hi; ++nc) {
            depthwise_pack(g, l, x + nc * hw, buf);
            for (std::size_t k = nc % g.c * mult; k < (nc % g.c + 1) * mult; ++k) {
                const T* wk = w + k * rs;
                const T b = bias ? bias[k] : T(0);
                T* yk = y + (nc / g.c * g.k + k) * pq;
                for (std::size_t p = 0; p < g.p; ++p) {
                    const T* base = buf + p * l.row_step;
                    T* out = yk + p * g.q;
                    std::size_t q0 = 0;
                    for (; q0 + 4 * W <= g.q; q0 += 4 * W) depthwise_row_chunk<4>(base + q0, taps, wk, rs, b, out + q0, 4 * W);
                    const std::size_t n = g.q - q0;
                    switch ((n + W - 1) / W) {
                        case 0: break;
                        case 1: depthwise_row_chunk<1>(base + q0, taps, wk, rs, b, out + q0, n); break;
                        case 2: depthwise_row_chunk<2>(base + q0, taps, wk, rs, b, out + q0, n); break;
                        case 3: depthwise_row_chunk<3>(base + q0, taps, wk, rs, b, out + q0, n); break;
                        default: depthwise_row_chunk<4>(base + q0, taps, wk, rs, b, out + q0, n); break;
                    }
                }
            }
        }
    });
}

/// dx = depthwise conv^T(dy, w) (overwrites dx): each input plane gathers its multiplier
/// filters' scatters (vector axpys) into a padded, phase-split plane, then its interior is
/// copied out.
template <class T>
inline void conv_backward_data_depthwise(thread_pool& pool, const conv_geometry& g, const T* dy, const T* w, T* dx) {
    const std::size_t mult = g.k / g.c, hw = g.h * g.w, pq = g.p * g.q, rs = g.r * g.s;
    const depthwise_plane l(g, vec_size<T>);
    parallel_range(pool, g.n * g.c, plane_grain(mult * pq * rs), [&](std::size_t lo, std::size_t hi) {
        T* buf = thread_scratch<T, slot_depthwise_plane>(l.size());
        std::size_t* taps = thread_scratch<std::size_t, slot_depthwise_taps>(rs);
        l.taps(g, taps);
        for (std::size_t nc = lo; nc < hi; ++nc) {
            std::fill(buf, buf + l.size(), T(0));
            for (std::size_t k = nc % g.c * mult; k < (nc % g.c + 1) * mult; ++k) {
                const T* wk = w + k * rs;
                const T* dyk = dy + (nc / g.c * g.k + k) * pq;
                for (std::size_t p = 0; p < g.p; ++p) {
                    T* base = buf + p * l.row_step;
                    for (std::size_t e = 0; e < rs; ++e) depthwise_axpy(base + taps[e], dyk + p * g.q, wk[e], g.q);
                }
            }
            T* dxc = dx + nc * hw;
            for (std::size_t h = 0; h < g.h; ++h) {
                const T* row = buf + (h + g.pad_h) * l.sw * l.len;
                T* out = dxc + h * g.w;
                if (l.sw == 1) {
                    std::copy(row + g.pad_w, row + g.pad_w + g.w, out);
                    continue;
                }
                for (std::size_t f = 0; f < l.sw; ++f) {
                    const std::size_t w0 = (f + l.sw - g.pad_w % l.sw) % l.sw;
                    const T* in = row + f * l.len + (w0 + g.pad_w) / l.sw;
                    for (std::size_t v = w0, j = 0; v < g.w; v += l.sw, ++j) out[v] = in[j];
                }
            }
        }
    });
}

/// dw[k][r][s] = sum over n, p, q of dy[n][k][p][q] * x[n][k / mult][tap] (overwrites dw).
/// Threads own channels (the multiplier filters reading one): no reduction between threads.
template <class T>
inline void conv_backward_weights_depthwise(thread_pool& pool, const conv_geometry& g, const T* x, const T* dy, T* dw) {
    const std::size_t mult = g.k / g.c, hw = g.h * g.w, pq = g.p * g.q, rs = g.r * g.s;
    const depthwise_plane l(g, vec_size<T>);
    parallel_range(pool, g.c, plane_grain(g.n * mult * pq * rs), [&](std::size_t lo, std::size_t hi) {
        T* buf = thread_scratch<T, slot_depthwise_plane>(l.size());
        T* acc = thread_scratch<T, slot_depthwise_acc>(mult * rs);
        std::size_t* taps = thread_scratch<std::size_t, slot_depthwise_taps>(rs);
        l.taps(g, taps);
        for (std::size_t c = lo; c < hi; ++c) {
            std::fill(acc, acc + mult * rs, T(0));
            for (std::size_t n = 0; n < g.n; ++n) {
                depthwise_pack(g, l, x + (n * g.c + c) * hw, buf);
                for (std::size_t m = 0; m < mult; ++m) {
                    const T* dyk = dy + (n * g.k + c * mult + m) * pq;
                    for (std::size_t e = 0; e < rs; ++e) {
                        vec<T> va(T(0));
                        T tail = 0;
                        for (std::size_t p = 0; p < g.p; ++p)
                            depthwise_dot(dyk + p * g.q, buf + p * l.row_step + taps[e], g.q, va, tail);
                        acc[m * rs + e] += hsum(va) + tail;
                    }
                }
            }
            std::copy(acc, acc + mult * rs, dw + c * mult * rs);
        }
    });
}

}  // namespace lamina::host_detail
