// lamina host backend: max and average pooling (NCHW). Work is split across threads by whole
// (image, channel) planes, which never write to each other. Within a plane the valid window is
// clipped once per output row/column, so the inner loops carry no bounds tests; windows are
// tiny (2x2, 3x3), so these loops are bound by memory traffic rather than arithmetic, and
// the scalar code visits cells in the reference's order (identical argmax ties and sums).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../../core/geometry.hpp"
#include "simd.hpp"

namespace lamina::host_detail {

/// Valid window rows [lo, hi) for output index o: o*stride + i - pad in [0, extent).
inline void pool_window(std::size_t o, std::size_t stride, std::size_t pad, std::size_t k, std::size_t extent,
                        std::size_t& lo, std::size_t& hi) {
    const std::size_t start = o * stride;  // window cell i sits at start + i - pad
    lo = start >= pad ? 0 : pad - start;
    const std::size_t end = extent + pad;  // need start + i < extent + pad
    hi = end > start ? std::min(k, end - start) : 0;
    if (hi < lo) hi = lo;
}

inline std::size_t plane_grain(std::size_t plane_elems) {
    return std::max<std::size_t>(1, elementwise_grain / std::max<std::size_t>(1, plane_elems));
}

/// Whether window cell v replaces the running max: strictly larger, or the first NaN (a NaN
/// in the window makes the max NaN, as in PyTorch; the reference's rule).
template <class T>
inline bool wins(T v, T best) {
    return v > best || (v != v && best == best);
}

/// The common 2x2, stride 2, unpadded window, unrolled (same visiting order and tie rule as
/// the general loop: the first cell, then strictly greater ones).
template <class T>
inline void max_pool_planes_2x2(const pool_geometry& g, const T* x, T* y, std::int32_t* argmax, std::size_t lo,
                                std::size_t hi) {
    for (std::size_t nc = lo; nc < hi; ++nc) {
        const T* xp = x + nc * g.h * g.w;
        T* yp = y + nc * g.p * g.q;
        std::int32_t* ap = argmax ? argmax + nc * g.p * g.q : nullptr;
        for (std::size_t p = 0; p < g.p; ++p) {
            const std::size_t row0 = 2 * p * g.w, row1 = row0 + g.w;
            for (std::size_t q = 0; q < g.q; ++q) {
                const std::size_t o0 = row0 + 2 * q, o1 = row1 + 2 * q;
                T best = xp[o0];
                std::size_t where = o0;
                if (wins(xp[o0 + 1], best)) { best = xp[o0 + 1]; where = o0 + 1; }
                if (wins(xp[o1], best)) { best = xp[o1]; where = o1; }
                if (wins(xp[o1 + 1], best)) { best = xp[o1 + 1]; where = o1 + 1; }
                yp[p * g.q + q] = best;
                if (ap) ap[p * g.q + q] = static_cast<std::int32_t>(where);
            }
        }
    }
}

template <class T>
inline void max_pool_planes(const pool_geometry& g, const T* x, T* y, std::int32_t* argmax, std::size_t lo,
                            std::size_t hi) {
    if (g.kh == 2 && g.kw == 2 && g.stride_h == 2 && g.stride_w == 2 && g.pad_h == 0 && g.pad_w == 0 &&
        2 * g.p <= g.h && 2 * g.q <= g.w) {
        max_pool_planes_2x2(g, x, y, argmax, lo, hi);
        return;
    }
    for (std::size_t nc = lo; nc < hi; ++nc) {
        const T* xp = x + nc * g.h * g.w;
        T* yp = y + nc * g.p * g.q;
        std::int32_t* ap = argmax ? argmax + nc * g.p * g.q : nullptr;
        for (std::size_t p = 0; p < g.p; ++p) {
            std::size_t i0, i1;
            pool_window(p, g.stride_h, g.pad_h, g.kh, g.h, i0, i1);
            for (std::size_t q = 0; q < g.q; ++q) {
                std::size_t j0, j1;
                pool_window(q, g.stride_w, g.pad_w, g.kw, g.w, j0, j1);
                T best = -std::numeric_limits<T>::infinity();
                std::int32_t where = -1;
                for (std::size_t i = i0; i < i1; ++i) {
                    const std::size_t row = (p * g.stride_h + i - g.pad_h) * g.w;
                    for (std::size_t j = j0; j < j1; ++j) {
                        const std::size_t off = row + q * g.stride_w + j - g.pad_w;
                        const T v = xp[off];
                        if (where < 0 || wins(v, best)) {
                            best = v;
                            where = static_cast<std::int32_t>(off);
                        }
                    }
                }
                yp[p * g.q + q] = best;
                if (ap) ap[p * g.q + q] = where;
            }
        }
    }
}

template <class T>
inline void max_pool_backward_planes(const pool_geometry& g, const T* dy, const std::int32_t* argmax, T* dx,
                                     std::size_t lo, std::size_t hi) {
    std::memset(static_cast<void*>(dx + lo * g.h * g.w), 0, (hi - lo) * g.h * g.w * sizeof(T));
    for (std::size_t nc = lo; nc < hi; ++nc) {
        T* dxp = dx + nc * g.h * g.w;
        const T* dyp = dy + nc * g.p * g.q;
        const std::int32_t* ap = argmax + nc * g.p * g.q;
        for (std::size_t o = 0; o < g.p * g.q; ++o)
            if (ap[o] >= 0) dxp[static_cast<std::size_t>(ap[o])] += dyp[o];
    }
}

template <class T>
inline void avg_pool_planes(const pool_geometry& g, const T* x, T* y, std::size_t lo, std::size_t hi) {
    const T inv = T(1) / static_cast<T>(g.kh * g.kw);
    for (std::size_t nc = lo; nc < hi; ++nc) {
        const T* xp = x + nc * g.h * g.w;
        T* yp = y + nc * g.p * g.q;
        for (std::size_t p = 0; p < g.p; ++p) {
            std::size_t i0, i1;
            pool_window(p, g.stride_h, g.pad_h, g.kh, g.h, i0, i1);
            for (std::size_t q = 0; q < g.q; ++q) {
                std::size_t j0, j1;
                pool_window(q, g.stride_w, g.pad_w, g.kw, g.w, j0, j1);
                T s = 0;
                for (std::size_t i = i0; i < i1; ++i) {
                    const T* row = xp + (p * g.stride_h + i - g.pad_h) * g.w + (q * g.stride_w + j0 - g.pad_w);
                    for (std::size_t j = 0; j < j1 - j0; ++j) s += row[j];
                }
                yp[p * g.q + q] = s * inv;
            }
        }
    }
}

template <class T>
inline void avg_pool_backward_planes(const pool_geometry& g, const T* dy, T* dx, std::size_t lo, std::size_t hi) {
    const T inv = T(1) / static_cast<T>(g.kh * g.kw);
    std::memset(static_cast<void*>(dx + lo * g.h * g.w), 0, (hi - lo) * g.h * g.w * sizeof(T));
    for (std::size_t nc = lo; nc < hi; ++nc) {
        T* dxp = dx + nc * g.h * g.w;
        const T* dyp = dy + nc * g.p * g.q;
        for (std::size_t p = 0; p < g.p; ++p) {
            std::size_t i0, i1;
            pool_window(p, g.stride_h, g.pad_h, g.kh, g.h, i0, i1);
            for (std::size_t q = 0; q < g.q; ++q) {
                std::size_t j0, j1;
                pool_window(q, g.stride_w, g.pad_w, g.kw, g.w, j0, j1);
                const T d = dyp[p * g.q + q] * inv;
                for (std::size_t i = i0; i < i1; ++i) {
                    T* row = dxp + (p * g.stride_h + i - g.pad_h) * g.w + (q * g.stride_w + j0 - g.pad_w);
                    for (std::size_t j = 0; j < j1 - j0; ++j) row[j] += d;
                }
            }
        }
    }
}

}  // namespace lamina::host_detail
