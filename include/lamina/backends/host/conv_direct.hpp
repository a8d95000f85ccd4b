// lamina host backend: direct forward convolution for few output channels (stride 1).
//
// With few filters (K <= 32: ResNet-20's 16/32, LeNet's 6/16), every implicit-im2col element
// would be used only K times, so packing it costs as much as the arithmetic. This kernel reads
// the input instead: each image is copied once into a zero-padded buffer (so the inner loop
// has no bounds checks), then for a block of KB <= 6 filters and NV vectors of output columns
// it keeps KB x NV accumulators in registers and, per tap (c, r, s), loads NV input vectors and
// broadcasts KB weights. Images are split across threads; every output sums its taps in (c, r,
// s) order whatever the thread count (bit-identical results).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "../../core/geometry.hpp"
#include "simd.hpp"

namespace lamina::host_detail {

inline constexpr int slot_conv_pad = 44;   // padded input image (each thread)
inline constexpr int slot_conv_flip = 45;  // flipped, transposed weights for backward-data (calling thread)

/// Whether the direct kernel serves g.
inline bool conv_use_direct(const conv_geometry& g) {
    return g.stride_h == 1 && g.stride_w == 1 && g.k <= 32;
}
constexpr bool conv_use_direct(std::size_t k, std::size_t stride) { return stride == 1 && k <= 32; }

/// KB filters x NV vectors of output columns at output row p, columns [q0, q0 + NV*W).
template <std::size_t KB, std::size_t NV, class T>
inline void conv_direct_tile(const conv_geometry& g, const T* xp, std::size_t hp, std::size_t wp, const T* w,
                             std::size_t k0, const T* bias, T* y, std::size_t p, std::size_t q0) {
    using V = vec<T>;
    constexpr std::size_t W = vec_size<T>;
    const std::size_t rs = g.r * g.s, crs = g.c * rs, pq = g.p * g.q;
    V acc[KB][NV];
    for (std::size_t i = 0; i < KB; ++i)
        for (std::size_t v = 0; v < NV; ++v) acc[i][v] = V(T(0));
    const T* wk = w + k0 * crs;
    for (std::size_t c = 0; c < g.c; ++c)
        for (std::size_t r = 0; r < g.r; ++r) {
            const T* row = xp + (c * hp + p + r) * wp + q0;
            const T* wr = wk + c * rs + r * g.s;
            for (std::size_t s = 0; s < g.s; ++s) {
                V xv[NV];
                for (std::size_t v = 0; v < NV; ++v) xv[v] = V::load_unaligned(row + s + v * W);
                for (std::size_t i = 0; i < KB; ++i) {
                    const V wv(wr[i * crs + s]);
                    for (std::size_t v = 0; v < NV; ++v) acc[i][v] = xsimd::fma(wv, xv[v], acc[i][v]);
                }
            }
        }
    const std::size_t n = std::min(NV * W, g.q - q0);
    for (std::size_t i = 0; i < KB; ++i) {
        const V b(bias ? bias[k0 + i] : T(0));
        T* out = y + (k0 + i) * pq + p * g.q + q0;
        if (n == NV * W) {
            for (std::size_t v = 0; v < NV; ++v) (acc[i][v] + b).store_unaligned(out + v * W);
        } else {
            alignas(64) T t[NV * W];
            for (std::size_t v = 0; v < NV; ++v) (acc[i][v] + b).store_aligned(t + v * W);
            for (std::size_t j = 0; j < n; ++j) out[j] = t[j];
        }
    }
}

template <std::size_t NV, class T>
inline void conv_direct_image(const conv_geometry& g, const T* xp, std::size_t hp, std::size_t wp, const T* w,
                              const T* bias, T* y) {
    constexpr std::size_t W = vec_size<T>;
    for (std::size_t k0 = 0; k0 < g.k; k0 += 6) {
        const std::size_t kb = std::min<std::size_t>(6, g.k - k0);
        for (std::size_t p = 0; p < g.p; ++p)
            for (std::size_t q0 = 0; q0 < g.q; q0 += NV * W) switch (kb) {
                    case 6: conv_direct_tile<6, NV>(g, xp, hp, wp, w, k0, bias, y, p, q0); break;
                    case 5: conv_direct_tile<5, NV>(g, xp, hp, wp, w, k0, bias, y, p, q0); break;
                    case 4: conv_direct_tile<4, NV>(g, xp, hp, wp, w, k0, bias, y, p, q0); break;
                    case 3: conv_direct_tile<3, NV>(g, xp, hp, wp, w, k0, bias, y, p, q0); break;
                    case 2: conv_direct_tile<2, NV>(g, xp, hp, wp, w, k0, bias, y, p, q0); break;
                    default: conv_direct_tile<1, NV>(g, xp, hp, wp, w, k0, bias, y, p, q0); break;
                }
    }
}

/// y = conv(x, w) + bias, stride 1 (pool may be null: serial).
template <class T>
inline void conv_forward_direct(thread_pool* pool, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y) {
    constexpr std::size_t W = vec_size<T>;
    // Two vectors of columns per tile unless that would waste a vector on every row.
    const bool two = g.q % (2 * W) == 0 || (g.q % W != 0 && g.q > W);
    const std::size_t nv = two ? 2 : 1;
    const std::size_t qr = (g.q + nv * W - 1) / (nv * W) * (nv * W);
    const std::size_t hp = g.h + 2 * g.pad_h, wp = qr + g.s - 1;  // >= w + 2 * pad_w
    const std::size_t in = g.c * g.h * g.w, out = g.k * g.p * g.q;
    auto images = [&](std::size_t lo, std::size_t hi) {
        T* xp = thread_scratch<T, slot_conv_pad>(g.c * hp * wp + W);
        std::fill(xp, xp + g.c * hp * wp + W, T(0));
        for (std::size_t n = lo; n < hi; ++n) {
            const T* xn = x + n * in;
            for (std::size_t c = 0; c < g.c; ++c)
                for (std::size_t h = 0; h < g.h; ++h)
                    std::memcpy(static_cast<void*>(xp + (c * hp + h + g.pad_h) * wp + g.pad_w), xn + (c * g.h + h) * g.w,
                                g.w * sizeof(T));
            if (two)
                conv_direct_image<2>(g, xp, hp, wp, w, bias, y + n * out);
            else
                conv_direct_image<1>(g, xp, hp, wp, w, bias, y + n * out);
        }
    };
    if (pool && pool->size() > 1 && g.n > 1)
        pool->parallel_for(g.n, images);
    else
        images(0, g.n);
}

/// Whether backward-data runs as a direct convolution: with stride 1, dx is the forward
/// convolution of dy with the weights transposed (K <-> C) and rotated by 180 degrees, padded
/// by R-1-pad; the direct kernel serves it when C (its filter count) is small. A single input
/// channel (LeNet's first layer) would leave one accumulator row: the implicit GEMM does better.
inline bool conv_use_direct_backward_data(const conv_geometry& g) {
    return g.stride_h == 1 && g.stride_w == 1 && g.c >= 2 && g.c <= 32 && g.pad_h < g.r && g.pad_w < g.s;
}

/// dx = conv2d^T(dy, w) for conv_use_direct_backward_data(g) (overwrites dx).
template <class T>
inline void conv_backward_data_direct(thread_pool* pool, const conv_geometry& g, const T* dy, const T* w, T* dx) {
    conv_geometry t = g;
    t.c = g.k;
    t.k = g.c;
    t.h = g.p;
    t.w = g.q;
    t.p = g.h;
    t.q = g.w;
    t.pad_h = g.r - 1 - g.pad_h;
    t.pad_w = g.s - 1 - g.pad_w;
    const std::size_t r = g.r, s = g.s;
    T* wt = thread_scratch<T, slot_conv_flip>(g.k * g.c * r * s);
    for (std::size_t k = 0; k < g.k; ++k)
        for (std::size_t c = 0; c < g.c; ++c)
            for (std::size_t i = 0; i < r; ++i)
                for (std::size_t j = 0; j < s; ++j)
                    wt[((c * g.k + k) * r + i) * s + j] = w[((k * g.c + c) * r + (r - 1 - i)) * s + (s - 1 - j)];
    conv_forward_direct(pool, t, dy, static_cast<const T*>(wt), static_cast<const T*>(nullptr), dx);
}

}  // namespace lamina::host_detail
