// lamina: 2-D convolution (NCHW, KCRS weights) for Kokkos execution spaces that run on the
// host, as implicit GEMMs on the packed driver of host_space_gemm.hpp: the panel packers
// gather straight from the tensors, so no im2col buffer exists and no workspace is needed.
//
//   forward          per image b:  y_b[k][pq]   = bias[k] + sum_{crs} w[k][crs] * x_b(crs, pq)
//   backward data    per image b:  col_b[crs][pq] = sum_k w[k][crs] * dy_b[k][pq], each tile of
//                    col_b added into dx_b at x_b(crs, pq) (col2im; one team per image)
//   backward weights one product:  dw[k][crs]   = sum_{b,pq} dy_b[k][pq] * x_b(crs, pq)
//                    (C blocks partition (k, crs): no reduction between threads)
// where x_b(crs, pq) = x_b[c][p*sh + r - ph][q*sw + s - pw] (0 in the padding). Same math as
// the reference backend; the summation order differs.
#pragma once

#include "host_space_gemm.hpp"

#include <cstddef>
#include <cstdint>

namespace lamina {
namespace kokkos_detail {

/// conv_geometry in signed 64-bit integers, copied into kernels.
struct host_conv_dims {
    std::int64_t N, C, H, W, K, R, S, P, Q, SH, SW, PH, PW;
    explicit host_conv_dims(const conv_geometry& g)
        : N(static_cast<std::int64_t>(g.n)), C(static_cast<std::int64_t>(g.c)), H(static_cast<std::int64_t>(g.h)),
          W(static_cast<std::int64_t>(g.w)), K(static_cast<std::int64_t>(g.k)), R(static_cast<std::int64_t>(g.r)),
          S(static_cast<std::int64_t>(g.s)), P(static_cast<std::int64_t>(g.p)), Q(static_cast<std::int64_t>(g.q)),
          SH(static_cast<std::int64_t>(g.stride_h)), SW(static_cast<std::int64_t>(g.stride_w)),
          PH(static_cast<std::int64_t>(g.pad_h)), PW(static_cast<std::int64_t>(g.pad_w)) {}
};

/// Zeroes columns [nr, NR) of a kc x NR panel.
template <class T, std::int64_t NR>
KOKKOS_INLINE_FUNCTION void host_zero_tail_columns(std::int64_t nr, std::int64_t kc, T* dst) {
    if (nr >= NR) return;
    for (std::int64_t p = 0; p < kc; ++p)
        for (std::int64_t j = nr; j < NR; ++j) dst[p * NR + j] = T(0);
}

// ---- forward ---------------------------------------------------------------------------------
/// B panel of the forward product: dst[p * NR + j] = x_b(crs = p0 + p, pq = j0 + j). The
/// columns are handled in segments of one output row each: a row of the panel is then a
/// (strided) run of one input row, copied without bounds checks when it is inside the image.
template <class T>
struct host_conv_fwd_pack_b {
    const T* x;
    host_conv_dims d;
    KOKKOS_INLINE_FUNCTION void operator()(std::int64_t b, std::int64_t j0, std::int64_t nr, std::int64_t p0,
                                           std::int64_t kc, T* __restrict__ dst) const {
        constexpr std::int64_t NR = host_gemm_blocking<T>::NR;
        host_zero_tail_columns<T, NR>(nr, kc, dst);
        const T* xb = x + b * d.C * d.H * d.W;
        const std::int64_t RS = d.R * d.S;
        for (std::int64_t j = 0; j < nr;) {
            const std::int64_t pq = j0 + j, oh = pq / d.Q, ow = pq % d.Q;
            const std::int64_t len = nr - j < d.Q - ow ? nr - j : d.Q - ow;
            const std::int64_t ih_base = oh * d.SH - d.PH, iw_base = ow * d.SW - d.PW;
            std::int64_t c = p0 / RS, r = (p0 % RS) / d.S, s = p0 % d.S;
            for (std::int64_t p = 0; p < kc; ++p) {
                T* __restrict__ out = dst + p * NR + j;
                const std::int64_t ih = ih_base + r;
                if (ih < 0 || ih >= d.H) {
                    for (std::int64_t t = 0; t < len; ++t) out[t] = T(0);
                } else {
                    const T* __restrict__ xr = xb + (c * d.H + ih) * d.W;
                    const std::int64_t iw0 = iw_base + s, iw_last = iw0 + (len - 1) * d.SW;
                    if (iw0 >= 0 && iw_last < d.W) {
                        if (d.SW == 1)
                            for (std::int64_t t = 0; t < len; ++t) out[t] = xr[iw0 + t];
                        else
                            for (std::int64_t t = 0; t < len; ++t) out[t] = xr[iw0 + t * d.SW];
                    } else {
                        for (std::int64_t t = 0; t < len; ++t) {
                            const std::int64_t iw = iw0 + t * d.SW;
                            out[t] = iw >= 0 && iw < d.W ? xr[iw] : T(0);
                        }
                    }
                }
                if (++s == d.S) {
                    s = 0;
                    if (++r == d.R) {
                        r = 0;
                        ++c;
                    }
                }
            }
            j += len;
        }
    }
};

/// y_b[k][pq] = bias[k] + acc, accumulated over the reduction slices.
template <class T>
struct host_conv_fwd_store {
    T* y;
    const T* bias;
    std::int64_t K, PQ;
    KOKKOS_INLINE_FUNCTION void operator()(std::int64_t b, std::int64_t i0, std::int64_t j0, std::int64_t mr,
                                           std::int64_t nr, const T* __restrict__ acc, bool first, bool) const {
        constexpr std::int64_t NR = host_gemm_blocking<T>::NR;
        for (std::int64_t i = 0; i < mr; ++i) {
            T* __restrict__ yr = y + (b * K + i0 + i) * PQ + j0;
            const T* __restrict__ a = acc + i * NR;
            if (first) {
                const T bk = bias ? bias[i0 + i] : T(0);
                for (std::int64_t j = 0; j < nr; ++j) yr[j] = bk + a[j];
            } else {
                for (std::int64_t j = 0; j < nr; ++j) yr[j] += a[j];
            }
        }
    }
};

template <class ExecutionSpace, class T>
void host_space_conv2d_forward(const ExecutionSpace& space, const conv_geometry& g, const T* x, const T* w,
                               const T* bias, T* y) {
    const host_conv_dims d(g);
    host_gemm_pack_a<T> pa{w, d.C * d.R * d.S, false};  // w is K x CRS, row-major
    host_conv_fwd_pack_b<T> pb{x, d};
    host_conv_fwd_store<T> st{y, bias, d.K, d.P * d.Q};
    host_packed_gemm<ExecutionSpace, T>(space, "lamina::conv2d_forward_host", d.N, d.K, d.P * d.Q, d.C * d.R * d.S,
                                        pa, pb, st);
}

// ---- backward data ----------------------------------------------------------------------------
/// B panel: op(B)(k, pq) = dy_b[k][pq] (row-major K x PQ per image).
template <class T>
struct host_conv_bwd_data_pack_b {
    const T* dy;
    std::int64_t K, PQ;
    KOKKOS_INLINE_FUNCTION void operator()(std::int64_t b, std::int64_t j0, std::int64_t nr, std::int64_t p0,
                                           std::int64_t kc, T* __restrict__ dst) const {
        host_gemm_pack_b<T>{dy + b * K * PQ, PQ, false}(b, j0, nr, p0, kc, dst);
    }
};

/// col2im as the store: the tile col[crs][pq] (col = w^T dy_b) is added into the input cells
/// x_b(crs, pq) it belongs to. Tiles of one image overlap in dx, so one team owns an image
/// (split_mn == false) and dx is zeroed beforehand.
template <class T>
struct host_conv_col2im_store {
    T* dx;
    host_conv_dims d;
    KOKKOS_INLINE_FUNCTION void operator()(std::int64_t b, std::int64_t i0, std::int64_t j0, std::int64_t mr,
                                           std::int64_t nr, const T* __restrict__ acc, bool, bool) const {
        constexpr std::int64_t NR = host_gemm_blocking<T>::NR, MR = host_gemm_blocking<T>::MR;
        const std::int64_t RS = d.R * d.S;
        std::int64_t cc[MR], rr[MR], ss[MR];
        for (std::int64_t i = 0; i < mr; ++i) {
            const std::int64_t crs = i0 + i;
            cc[i] = crs / RS;
            rr[i] = (crs % RS) / d.S;
            ss[i] = crs % d.S;
        }
        T* dxb = dx + b * d.C * d.H * d.W;
        for (std::int64_t j = 0; j < nr;) {  // segments of one output row: a (strided) run of an input row
            const std::int64_t pq = j0 + j, oh = pq / d.Q, ow = pq % d.Q;
            const std::int64_t len = nr - j < d.Q - ow ? nr - j : d.Q - ow;
            const std::int64_t ihb = oh * d.SH - d.PH, iwb = ow * d.SW - d.PW;
            for (std::int64_t i = 0; i < mr; ++i) {
                const std::int64_t ih = ihb + rr[i];
                if (ih < 0 || ih >= d.H) continue;
                T* __restrict__ row = dxb + (cc[i] * d.H + ih) * d.W;
                const T* __restrict__ a = acc + i * NR + j;
                const std::int64_t iw0 = iwb + ss[i];  // column t: iw0 + t * SW
                if (d.SW == 1) {
                    const std::int64_t tlo = iw0 < 0 ? -iw0 : 0, thi = d.W - iw0 < len ? d.W - iw0 : len;
                    for (std::int64_t t = tlo; t < thi; ++t) row[iw0 + t] += a[t];
                } else {
                    for (std::int64_t t = 0; t < len; ++t) {
                        const std::int64_t iw = iw0 + t * d.SW;
                        if (iw >= 0 && iw < d.W) row[iw] += a[t];
                    }
                }
            }
            j += len;
        }
    }
};

/// dx = conv2d^T(dy, w) (overwrites dx): per image, col = w^T dy_b (CRS x PQ, never stored
/// whole) scattered into dx tile by tile.
template <class ExecutionSpace, class T>
void host_space_conv2d_backward_data(const ExecutionSpace& space, const conv_geometry& g, const T* dy, const T* w,
                                     T* dx) {
    const host_conv_dims d(g);
    const std::int64_t n_dx = d.N * d.C * d.H * d.W;
    Kokkos::parallel_for(
        "lamina::conv2d_backward_data_zero_host",
        Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>(space, 0, n_dx),
        KOKKOS_LAMBDA(const std::int64_t i) { dx[i] = T(0); });
    const std::int64_t CRS = d.C * d.R * d.S;
    host_gemm_pack_a<T> pa{w, CRS, true};  // op(A) = w^T: w is K x CRS
    host_conv_bwd_data_pack_b<T> pb{dy, d.K, d.P * d.Q};
    host_conv_col2im_store<T> st{dx, d};
    host_packed_gemm<ExecutionSpace, T>(space, "lamina::conv2d_backward_data_host", d.N, CRS, d.P * d.Q, d.K, pa, pb,
                                        st, false);
}

/// Overwrites (first slice) then accumulates into a batch of row-major M x N matrices.
template <class T>
struct host_overwrite_store {
    T* out;
    std::int64_t batch_stride, ld;
    KOKKOS_INLINE_FUNCTION void operator()(std::int64_t b, std::int64_t i0, std::int64_t j0, std::int64_t mr,
                                           std::int64_t nr, const T* __restrict__ acc, bool first, bool) const {
        constexpr std::int64_t NR = host_gemm_blocking<T>::NR;
        for (std::int64_t i = 0; i < mr; ++i) {
            T* __restrict__ o = out + b * batch_stride + (i0 + i) * ld + j0;
            const T* __restrict__ a = acc + i * NR;
            if (first)
                for (std::int64_t j = 0; j < nr; ++j) o[j] = a[j];
            else
                for (std::int64_t j = 0; j < nr; ++j) o[j] += a[j];
        }
    }
};

// ---- backward weights ---------------------------------------------------------------------------
/// A panel: op(A)(k, t) = dy_b[k][pq] with t = b * PQ + pq.
template <class T>
struct host_conv_bwd_weights_pack_a {
    const T* dy;
    host_conv_dims d;
    KOKKOS_INLINE_FUNCTION void operator()(std::int64_t, std::int64_t i0, std::int64_t mr, std::int64_t p0,
                                           std::int64_t kc, T* __restrict__ dst) const {
        constexpr std::int64_t MR = host_gemm_blocking<T>::MR;
        const std::int64_t PQ = d.P * d.Q;
        for (std::int64_t i = 0; i < MR; ++i) {
            if (i >= mr) {
                for (std::int64_t p = 0; p < kc; ++p) dst[p * MR + i] = T(0);
                continue;
            }
            std::int64_t b = p0 / PQ, pq = p0 % PQ;
            for (std::int64_t p = 0; p < kc;) {  // runs of one image: contiguous in pq
                const std::int64_t run = kc - p < PQ - pq ? kc - p : PQ - pq;
                const T* __restrict__ src = dy + (b * d.K + i0 + i) * PQ + pq;
                for (std::int64_t t = 0; t < run; ++t) dst[(p + t) * MR + i] = src[t];
                p += run;
                pq = 0;
                ++b;
            }
        }
    }
};

/// B panel: op(B)(t, crs) = x_b(crs, pq) with t = b * PQ + pq. Rows in runs of one output row:
/// along such a run each column (c, r, s) reads a (strided) run of one input row, clipped to
/// the image once per run instead of checked per element.
template <class T>
struct host_conv_bwd_weights_pack_b {
    const T* x;
    host_conv_dims d;
    KOKKOS_INLINE_FUNCTION void operator()(std::int64_t, std::int64_t j0, std::int64_t nr, std::int64_t p0,
                                           std::int64_t kc, T* __restrict__ dst) const {
        constexpr std::int64_t NR = host_gemm_blocking<T>::NR;
        host_zero_tail_columns<T, NR>(nr, kc, dst);
        const std::int64_t RS = d.R * d.S, PQ = d.P * d.Q, CHW = d.C * d.H * d.W;
        std::int64_t cc[NR], rr[NR], ss[NR];
        for (std::int64_t j = 0; j < nr; ++j) {
            const std::int64_t crs = j0 + j;
            cc[j] = crs / RS;
            rr[j] = (crs % RS) / d.S;
            ss[j] = crs % d.S;
        }
        std::int64_t b = p0 / PQ, oh = (p0 % PQ) / d.Q, ow = p0 % d.Q;
        for (std::int64_t p = 0; p < kc;) {
            const std::int64_t len = kc - p < d.Q - ow ? kc - p : d.Q - ow;
            const std::int64_t ih0 = oh * d.SH - d.PH, iwb = ow * d.SW - d.PW;
            const T* xb = x + b * CHW;
            for (std::int64_t j = 0; j < nr; ++j) {
                T* __restrict__ out = dst + p * NR + j;  // position t: out[t * NR]
                const std::int64_t ih = ih0 + rr[j];
                if (ih < 0 || ih >= d.H) {
                    for (std::int64_t t = 0; t < len; ++t) out[t * NR] = T(0);
                    continue;
                }
                const T* __restrict__ row = xb + (cc[j] * d.H + ih) * d.W;
                const std::int64_t iw0 = iwb + ss[j];  // position t: iw0 + t * SW
                std::int64_t tlo = iw0 < 0 ? (-iw0 + d.SW - 1) / d.SW : 0;
                std::int64_t thi = d.W - iw0 <= 0 ? 0 : (d.W - iw0 + d.SW - 1) / d.SW;
                tlo = tlo < len ? tlo : len;
                thi = thi < len ? thi : len;
                thi = thi < tlo ? tlo : thi;
                for (std::int64_t t = 0; t < tlo; ++t) out[t * NR] = T(0);
                if (d.SW == 1)
                    for (std::int64_t t = tlo; t < thi; ++t) out[t * NR] = row[iw0 + t];
                else
                    for (std::int64_t t = tlo; t < thi; ++t) out[t * NR] = row[iw0 + t * d.SW];
                for (std::int64_t t = thi; t < len; ++t) out[t * NR] = T(0);
            }
            p += len;
            ow += len;
            if (ow == d.Q) {
                ow = 0;
                if (++oh == d.P) {
                    oh = 0;
                    ++b;
                }
            }
        }
    }
};

/// dw = sum over the batch of x (*) dy (overwrites dw). The bias gradient is the backend's.
template <class ExecutionSpace, class T>
void host_space_conv2d_backward_weights(const ExecutionSpace& space, const conv_geometry& g, const T* x, const T* dy,
                                        T* dw) {
    const host_conv_dims d(g);
    host_conv_bwd_weights_pack_a<T> pa{dy, d};
    host_conv_bwd_weights_pack_b<T> pb{x, d};
    host_overwrite_store<T> st{dw, 0, d.C * d.R * d.S};
    host_packed_gemm<ExecutionSpace, T>(space, "lamina::conv2d_backward_weights_host", 1, d.K, d.C * d.R * d.S,
                                        d.N * d.P * d.Q, pa, pb, st);
}

}  // namespace kokkos_detail
}  // namespace lamina
