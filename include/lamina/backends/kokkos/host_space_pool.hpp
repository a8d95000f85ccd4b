// lamina: max pooling (NCHW) for Kokkos execution spaces that run on the host. One work item
// per (n, c) plane: the forward keeps the running max with selects instead of branches (a
// data-dependent branch is mispredicted half the time on random data), the backward zeroes
// the plane and scatters each dy to its window's winner (in output order, like the reference;
// planes are disjoint, so no atomics). Padded cells never win.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "../../core/geometry.hpp"
#include "host_space_gemm.hpp"  // host_vec32 (vector types of the host compiler)

namespace lamina {
namespace kokkos_detail {

/// One output of max_pool_forward (scalar): the first valid cell, then strictly larger ones.
template <class T>
struct host_max_pool_one {
    std::int64_t W, Q, KW, SW, PW;
    T neg_inf;
    KOKKOS_INLINE_FUNCTION void operator()(std::int64_t p, std::int64_t h0, std::int64_t i0, std::int64_t i1,
                                           std::int64_t q, const T* xp, T* yp, std::int32_t* ap) const {
        using index = std::int64_t;
        const index w0 = q * SW - PW;
        const index j0 = w0 < 0 ? -w0 : 0, j1 = W - w0 < KW ? W - w0 : KW;
        T best = neg_inf;
        std::int32_t where = -1;
        for (index i = i0; i < i1; ++i)
            for (index j = j0; j < j1; ++j) {
                const index off = (h0 + i) * W + w0 + j;
                const T v = xp[off];
                const bool take = (where < 0) | (v > best) | ((v != v) & (best == best));  // a NaN wins
                best = take ? v : best;
                where = take ? static_cast<std::int32_t>(off) : where;
            }
        yp[p * Q + q] = best;
        if (ap) ap[p * Q + q] = where;
    }
};

template <class ExecutionSpace, class T>
void host_space_max_pool_forward(const ExecutionSpace& space, const pool_geometry& g, const T* x, T* y,
                                 std::int32_t* argmax) {
    using index = std::int64_t;
    const index H = static_cast<index>(g.h), W = static_cast<index>(g.w), P = static_cast<index>(g.p),
                Q = static_cast<index>(g.q), KH = static_cast<index>(g.kh), KW = static_cast<index>(g.kw),
                SH = static_cast<index>(g.stride_h), SW = static_cast<index>(g.stride_w),
                PH = static_cast<index>(g.pad_h), PW = static_cast<index>(g.pad_w);
    const T neg_inf = -std::numeric_limits<T>::infinity();
    const host_max_pool_one<T> pool_one{W, Q, KW, SW, PW, neg_inf};
    // 2x2 windows, stride 2, no padding (LeNet, VGG-style nets): every window is whole, so the
    // four cells are read directly, compared in window order with selects (first cell, then
    // strictly larger ones: the reference's tie rule), and the compiler vectorises along q.
    const bool two_by_two = KH == 2 && KW == 2 && SH == 2 && SW == 2 && PH == 0 && PW == 0 && 2 * P <= H && 2 * Q <= W;
    Kokkos::parallel_for(
        "lamina::max_pool_forward_host",
        Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<index>>(space, 0, static_cast<index>(g.n * g.c)),
        KOKKOS_LAMBDA(const index nc) {
            const T* xp = x + nc * H * W;
            T* yp = y + nc * P * Q;
            std::int32_t* ap = argmax ? argmax + nc * P * Q : nullptr;
            if (two_by_two) {
                for (index p = 0; p < P; ++p) {
                    const index o0 = 2 * p * W, o1 = o0 + W;
                    const T* r0 = xp + o0;
                    const T* r1 = xp + o1;
                    T* yr = yp + p * Q;
                    std::int32_t* ar = ap ? ap + p * Q : nullptr;
                    for (index q = 0; q < Q; ++q) {
                        const index j = 2 * q;
                        T best = r0[j];
                        index where = o0 + j;
                        bool take = (r0[j + 1] > best) | ((r0[j + 1] != r0[j + 1]) & (best == best));
                        best = take ? r0[j + 1] : best;
                        where = take ? o0 + j + 1 : where;
                        take = (r1[j] > best) | ((r1[j] != r1[j]) & (best == best));
                        best = take ? r1[j] : best;
                        where = take ? o1 + j : where;
                        take = (r1[j + 1] > best) | ((r1[j + 1] != r1[j + 1]) & (best == best));
                        best = take ? r1[j + 1] : best;
                        where = take ? o1 + j + 1 : where;
                        yr[q] = best;
                        if (ar) ar[q] = static_cast<std::int32_t>(where);
                    }
                }
                return;
            }
            for (index p = 0; p < P; ++p) {
                const index h0 = p * SH - PH;
                const index i0 = h0 < 0 ? -h0 : 0, i1 = H - h0 < KH ? H - h0 : KH;
                index q = 0;
#if defined(LAMINA_KOKKOS_HOST_GEMM_VECTOR_TYPES)
                // outputs whose window lies inside the row: [q_in0, q_in1)
                const index q_in0 = PW <= 0 ? 0 : (PW + SW - 1) / SW;
                const index q_in1 = W - KW + PW < 0 ? 0 : (W - KW + PW) / SW + 1 < Q ? (W - KW + PW) / SW + 1 : Q;
                // 8 outputs side by side: gathered window cells, compare and select in vector registers
                if constexpr (std::is_same_v<T, float>) {
                    using V = typename host_vec32<float>::type;
                    typedef std::int32_t IV __attribute__((vector_size(32)));
                    constexpr index L = 8;
                    for (; q < q_in0 && q < Q; ++q) pool_one(p, h0, i0, i1, q, xp, yp, ap);
                    if (i0 < i1)
                        for (; q + L <= q_in1; q += L) {
                            V best = V{};
                            IV where = IV{};
                            for (index i = i0; i < i1; ++i)
                                for (index j = 0; j < KW; ++j) {
                                    float vals[L];
                                    std::int32_t offs[L];
                                    for (index l = 0; l < L; ++l) {
                                        const index off = (h0 + i) * W + (q + l) * SW - PW + j;
                                        offs[l] = static_cast<std::int32_t>(off);
                                        vals[l] = xp[off];
                                    }
                                    V v;
                                    IV o;
                                    __builtin_memcpy(&v, vals, sizeof(V));
                                    __builtin_memcpy(&o, offs, sizeof(IV));
                                    if (i == i0 && j == 0) {
                                        best = v;
                                        where = o;
                                    } else {
                                        const IV take = (v > best) | ((v != v) & (best == best));
                                        best = take ? v : best;
                                        where = take ? o : where;
                                    }
                                }
                            __builtin_memcpy(yp + p * Q + q, &best, sizeof(V));
                            if (ap) __builtin_memcpy(ap + p * Q + q, &where, sizeof(IV));
                        }
                }
#endif
                for (; q < Q; ++q) pool_one(p, h0, i0, i1, q, xp, yp, ap);
            }
        });
}

template <class ExecutionSpace, class T>
void host_space_max_pool_backward(const ExecutionSpace& space, const pool_geometry& g, const T* dy,
                                  const std::int32_t* argmax, T* dx) {
    using index = std::int64_t;
    const index HW = static_cast<index>(g.h * g.w), PQ = static_cast<index>(g.p * g.q);
    Kokkos::parallel_for(
        "lamina::max_pool_backward_host",
        Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<index>>(space, 0, static_cast<index>(g.n * g.c)),
        KOKKOS_LAMBDA(const index nc) {
            T* dxp = dx + nc * HW;
            const T* dyp = dy + nc * PQ;
            const std::int32_t* ap = argmax + nc * PQ;
            for (index e = 0; e < HW; ++e) dxp[e] = T(0);
            for (index o = 0; o < PQ; ++o)
                if (ap[o] >= 0) dxp[ap[o]] += dyp[o];
        });
}

}  // namespace kokkos_detail
}  // namespace lamina
