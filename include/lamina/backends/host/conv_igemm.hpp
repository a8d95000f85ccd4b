// lamina host backend: forward convolution as an implicit GEMM (no im2col buffer).
//
// The whole batch is one GEMM, Y[K][N*P*Q] = W[K][C*R*S] * col[C*R*S][N*P*Q], with the batch
// folded into the columns so that small feature maps (7x7, 14x14) still give long panels.
// col is never materialised: GEMM's B-packing routine gathers each KC x NR panel straight
// from the NCHW input (gemm_pack_b_conv), so the only copy of the input is the cache-resident
// packed panel the micro-kernel needs anyway. W is packed once per call (shared, read-only).
//
// Threads split the columns into blocks (and the rows into halves when there are too few
// blocks). Each block is computed into a thread-local row-padded tile (full micro-tiles, no
// partial stores) and written out to NCHW with the bias added. Every output element sums its
// C*R*S products in the same KC-blocked order whatever the thread count: results are
// bit-identical across thread counts.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "../../core/geometry.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"
#include "simd.hpp"

namespace lamina::host_detail {

inline constexpr int slot_conv_w = 40;     // packed weights (calling thread)
inline constexpr int slot_conv_tile = 41;  // output tile (each thread)

inline constexpr int slot_conv_row = 42;   // one row of the implicit im2col block (each thread)
inline constexpr int slot_conv_seg = 43;   // the block's column runs (each thread)

/// A run of consecutive columns lying in one image and one output row: input columns iw0,
/// iw0 + stride, ... of input row ih0 (before the kernel offsets r, s are added).
struct conv_segment {
    long col, len;   // first column within the block, length
    long image;      // offset of the image in x
    long ih0, iw0;   // p*stride - pad, q*stride - pad
};

/// Splits columns [j0, j0 + nc) into runs within one image and output row; returns the count.
inline std::size_t conv_segments(const conv_geometry& g, std::size_t j0, std::size_t nc, conv_segment* seg) {
    const std::size_t pq = g.p * g.q, chw = g.c * g.h * g.w;
    std::size_t nseg = 0;
    for (std::size_t j = j0; j < j0 + nc;) {
        const std::size_t n = j / pq, rem = j % pq, p = rem / g.q, q = rem % g.q;
        const std::size_t len = std::min(j0 + nc - j, g.q - q);
        seg[nseg++] = {static_cast<long>(j - j0), static_cast<long>(len), static_cast<long>(n * chw),
                       static_cast<long>(p * g.stride_h) - static_cast<long>(g.pad_h),
                       static_cast<long>(q * g.stride_w) - static_cast<long>(g.pad_w)};
        j += len;
    }
    return nseg;
}

/// Valid t range of a run: 0 <= iw + t*sw < W, clamped to [0, len].
inline void conv_run_range(long iw, long sw, long Wd, long len, long& tlo, long& thi) {
    tlo = iw >= 0 ? 0 : (-iw + sw - 1) / sw;
    thi = iw < Wd ? std::min(len, (Wd - iw + sw - 1) / sw) : 0;
    if (tlo > len) tlo = len;
    if (thi < tlo) thi = tlo;
}

/// Packs rows [p0, p0 + kc) (index (c*R + r)*S + s) and columns [j0, j0 + nc) (index
/// (n*P + p)*Q + q) of the implicit im2col matrix into NR-wide panels, zero-padded.
/// Each row is first gathered into a linear buffer (contiguous copies of the input rows, zeros
/// for padding), then cut into panels with vector moves.
template <class T>
inline void gemm_pack_b_conv(const conv_geometry& g, const T* x, std::size_t p0, std::size_t j0, std::size_t kc,
                             std::size_t nc, T* dst) {
    constexpr std::size_t NR = gemm_blocking<T>::NR, W = gemm_blocking<T>::W;
    const std::size_t hw = g.h * g.w;
    const long H = static_cast<long>(g.h), Wd = static_cast<long>(g.w), sw = static_cast<long>(g.stride_w);
    const std::size_t ncp = (nc + NR - 1) / NR * NR;
    T* line = thread_scratch<T, slot_conv_row>(ncp);
    conv_segment* seg = reinterpret_cast<conv_segment*>(thread_scratch<long, slot_conv_seg>(5 * (nc + 2)));
    const std::size_t nseg = conv_segments(g, j0, nc, seg);
    for (std::size_t t = nc; t < ncp; ++t) line[t] = T(0);
    std::size_t c = p0 / (g.r * g.s), r = (p0 / g.s) % g.r, s = p0 % g.s;
    for (std::size_t p = 0; p < kc; ++p) {
        const T* xc = x + c * hw;
        for (std::size_t k = 0; k < nseg; ++k) {
            const conv_segment& sg = seg[k];
            T* o = line + sg.col;
            const long ih = sg.ih0 + static_cast<long>(r);
            const long len = sg.len;
            if (ih < 0 || ih >= H) {
                for (long t = 0; t < len; ++t) o[t] = T(0);
                continue;
            }
            const T* src = xc + sg.image + ih * Wd;
            const long iw = sg.iw0 + static_cast<long>(s);
            long tlo, thi;
            conv_run_range(iw, sw, Wd, len, tlo, thi);
            for (long t = 0; t < tlo; ++t) o[t] = T(0);
            if (sw == 1) {  // short runs: inline vector copy (a memcpy call costs more)
                const T* in = src + iw;
                long t = tlo;
                for (; t + static_cast<long>(W) <= thi; t += static_cast<long>(W))
                    vec<T>::load_unaligned(in + t).store_unaligned(o + t);
                for (; t < thi; ++t) o[t] = in[t];
            } else {
                for (long t = tlo; t < thi; ++t) o[t] = src[iw + t * sw];
            }
            for (long t = thi; t < len; ++t) o[t] = T(0);
        }
        T* d = dst + p * NR;
        for (std::size_t jr = 0; jr < ncp; jr += NR) {
            vec<T>::load_aligned(line + jr).store_aligned(d + jr * kc);
            vec<T>::load_aligned(line + jr + W).store_aligned(d + jr * kc + W);
        }
        if (++s == g.s) {
            s = 0;
            if (++r == g.r) {
                r = 0;
                ++c;
            }
        }
    }
}

/// Column block width (a multiple of NR) and row split for a conv GEMM with ncols columns.
template <class T>
inline void conv_igemm_blocks(std::size_t ncols, std::size_t kpad, unsigned nt, std::size_t& nb, std::size_t& jblocks,
                              std::size_t& kblocks) {
    constexpr std::size_t NR = gemm_blocking<T>::NR, MR = gemm_blocking<T>::MR;
    constexpr std::size_t target = 192;  // KC x target panel block stays in L2
    std::size_t blocks = std::max<std::size_t>(1, (ncols + target - 1) / target);
    if (nt > 1) blocks = (blocks + nt - 1) / nt * nt;  // whole rounds: balanced threads
    nb = ((ncols + blocks - 1) / blocks + NR - 1) / NR * NR;
    jblocks = (ncols + nb - 1) / nb;
    // Too few column blocks to keep every thread busy: split the rows too.
    kblocks = 1;
    const std::size_t row_panels = kpad / MR;
    while (jblocks * kblocks < nt && kblocks * 2 <= row_panels) kblocks *= 2;
}

/// y = conv(x, w) + bias over the whole batch (pool may be null: serial).
template <class T>
inline void conv_forward_igemm(thread_pool* pool, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y) {
    using blk = gemm_blocking<T>;
    constexpr std::size_t MR = blk::MR, NR = blk::NR, KC = blk::KC, MC = blk::MC;
    const std::size_t crs = g.c * g.r * g.s, pq = g.p * g.q, ncols = g.n * pq;
    if (ncols == 0 || g.k == 0) return;
    if (crs == 0) {
        for (std::size_t n = 0; n < g.n; ++n)
            for (std::size_t k = 0; k < g.k; ++k) std::fill(y + (n * g.k + k) * pq, y + (n * g.k + k + 1) * pq, bias ? bias[k] : T(0));
        return;
    }
    // A 1x1 stride-1 unpadded convolution reads each image plane as one row: longer runs.
    conv_geometry gp = g;
    if (g.r == 1 && g.s == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0) {
        gp.h = gp.p = 1;
        gp.w = gp.q = pq;
    }
    const std::size_t kpad = (g.k + MR - 1) / MR * MR;
    const unsigned nt = pool ? pool->size() : 1u;
    // Pack W once: for each KC block pc, all kpad rows as MR panels at wp + pc*kpad.
    T* wp = thread_scratch<T, slot_conv_w>(kpad * crs);
    const std::size_t pblocks = (crs + KC - 1) / KC;
    auto pack_w = [&](std::size_t lo, std::size_t hi) {
        for (std::size_t b = lo; b < hi; ++b) {
            const std::size_t pc = b * KC, kc = std::min(KC, crs - pc);
            gemm_pack_a(transpose::no, w, crs, 0, pc, g.k, kc, wp + pc * kpad);
        }
    };
    if (pool && nt > 1 && pblocks > 1 && g.k * crs >= 65536)
        pool->parallel_for(pblocks, pack_w);
    else
        pack_w(0, pblocks);

    std::size_t nb, jblocks, kblocks;
    conv_igemm_blocks<T>(ncols, kpad, nt, nb, jblocks, kblocks);
    const std::size_t kpanels = kpad / MR;
    auto work = [&](std::size_t lo, std::size_t hi) {
        T* pb = thread_scratch<T, slot_pack_b>(KC * nb);
        T* tile = thread_scratch<T, slot_conv_tile>(kpad * nb);
        for (std::size_t item = lo; item < hi; ++item) {
            const std::size_t jb = item / kblocks, kb = item % kblocks;
            const std::size_t j0 = jb * nb, ncb = std::min(nb, ncols - j0), ncp = (ncb + NR - 1) / NR * NR;
            const std::size_t r0 = kpanels * kb / kblocks * MR, r1 = kpanels * (kb + 1) / kblocks * MR;
            for (std::size_t pc = 0; pc < crs; pc += KC) {
                const std::size_t kc = std::min(KC, crs - pc);
                const gemm_store mode = pc == 0 ? gemm_store::overwrite : gemm_store::accumulate;
                gemm_pack_b_conv(gp, x, pc, j0, kc, ncb, pb);
                const T* wblk = wp + pc * kpad;
                for (std::size_t ic = r0; ic < r1; ic += MC) {
                    const std::size_t ic1 = std::min(r1, ic + MC);
                    for (std::size_t jr = 0; jr < ncp; jr += NR)
                        for (std::size_t ir = ic; ir < ic1; ir += MR)
                            gemm_micro_kernel(kc, wblk + ir * kc, pb + jr * kc, tile + ir * nb + jr, nb, MR, NR, T(1),
                                              T(0), mode);
                }
            }
            // Write out rows [r0, min(r1, K)) of the block to NCHW, adding the bias.
            const std::size_t k1 = std::min(r1, g.k);
            std::size_t j = j0;
            while (j < j0 + ncb) {
                const std::size_t n = j / pq, rem = j % pq, len = std::min(j0 + ncb - j, pq - rem);
                for (std::size_t k = r0; k < k1; ++k) {
                    const T* src = tile + k * nb + (j - j0);
                    T* dst = y + (n * g.k + k) * pq + rem;
                    if (bias) {
                        const vec<T> vb(bias[k]);
                        map1(src, dst, 0, len, [&](vec<T> v) { return v + vb; });
                    } else {
                        std::memcpy(static_cast<void*>(dst), src, len * sizeof(T));
                    }
                }
                j += len;
            }
        }
    };
    const std::size_t items = jblocks * kblocks;
    if (pool && nt > 1 && items > 1)
        pool->parallel_for(items, work);
    else
        work(0, items);
}

/// dx = conv2d^T(dy, w) over the whole batch as an implicit GEMM, col[C*R*S][N*P*Q] =
/// W^T * dY, one column block at a time into a tile that is scattered (col2im) straight into
/// dx. Threads own disjoint input-channel ranges (rows (c, r, s) of col), so their scatters
/// never overlap; each packs the dY block itself (dY is read as a 1x1 convolution's input).
/// Every dx element sums its contributions in the same order whatever the thread count.
/// Needs at least as many channels as threads (pool may be null: serial).
template <class T>
inline void conv_backward_data_igemm(thread_pool* pool, const conv_geometry& g, const T* dy, const T* w, T* dx) {
    using blk = gemm_blocking<T>;
    constexpr std::size_t MR = blk::MR, NR = blk::NR, KC = blk::KC, MC = blk::MC;
    const std::size_t rs = g.r * g.s, crs = g.c * rs, pq = g.p * g.q, ncols = g.n * pq, hw = g.h * g.w;
    const std::size_t chw = g.c * hw;
    const std::size_t mpad = (crs + MR - 1) / MR * MR;
    const unsigned nt = pool ? pool->size() : 1u;
    // W^T packed once: for each KC block of K, all mpad rows as MR panels at wp + pc*mpad.
    T* wp = thread_scratch<T, slot_conv_w>(mpad * std::max<std::size_t>(g.k, 1));
    const std::size_t pblocks = (g.k + KC - 1) / KC;
    auto pack_w = [&](std::size_t lo, std::size_t hi) {
        for (std::size_t b = lo; b < hi; ++b) {
            const std::size_t pc = b * KC, kc = std::min(KC, g.k - pc);
            gemm_pack_a(transpose::yes, w, crs, 0, pc, crs, kc, wp + pc * mpad);
        }
    };
    if (pool && nt > 1 && pblocks > 1 && g.k * crs >= 65536)
        pool->parallel_for(pblocks, pack_w);
    else
        pack_w(0, pblocks);
    // dY as the input of a 1x1 convolution with K channels and one P*Q-long row per image.
    conv_geometry gd;
    gd.n = g.n; gd.c = g.k; gd.h = 1; gd.w = pq; gd.k = g.c; gd.r = gd.s = 1; gd.p = 1; gd.q = pq;
    // Column blocks: the tile (this thread's rows x nb) stays around L2 size. Fixed by the
    // geometry alone (not the thread count): deterministic summation order.
    const std::size_t nb = std::clamp<std::size_t>((65536 / std::max<std::size_t>(crs, 1)) / NR * NR, 2 * NR, 192);
    const long H = static_cast<long>(g.h), Wd = static_cast<long>(g.w), sw = static_cast<long>(g.stride_w);
    auto work = [&](unsigned t, unsigned parts) {
        const std::size_t c0 = g.c * t / parts, c1 = g.c * (t + 1) / parts;
        if (c0 == c1) return;
        for (std::size_t n = 0; n < g.n; ++n)
            std::memset(static_cast<void*>(dx + n * chw + c0 * hw), 0, (c1 - c0) * hw * sizeof(T));
        if (g.k == 0 || ncols == 0) return;
        const std::size_t row0 = c0 * rs, row1 = c1 * rs;
        const std::size_t m0 = row0 / MR * MR, m1 = (row1 + MR - 1) / MR * MR;
        T* pb = thread_scratch<T, slot_pack_b>(KC * nb);
        T* tile = thread_scratch<T, slot_conv_tile>((m1 - m0) * nb);
        conv_segment* seg = reinterpret_cast<conv_segment*>(thread_scratch<long, slot_conv_seg>(5 * (nb + 2)));
        for (std::size_t j0 = 0; j0 < ncols; j0 += nb) {
            const std::size_t ncb = std::min(nb, ncols - j0), ncp = (ncb + NR - 1) / NR * NR;
            for (std::size_t pc = 0; pc < g.k; pc += KC) {
                const std::size_t kc = std::min(KC, g.k - pc);
                const gemm_store mode = pc == 0 ? gemm_store::overwrite : gemm_store::accumulate;
                gemm_pack_b_conv(gd, dy, pc, j0, kc, ncb, pb);
                const T* wblk = wp + pc * mpad;
                for (std::size_t ic = m0; ic < m1; ic += MC) {
                    const std::size_t ic1 = std::min(m1, ic + MC);
                    for (std::size_t jr = 0; jr < ncp; jr += NR)
                        for (std::size_t ir = ic; ir < ic1; ir += MR)
                            gemm_micro_kernel(kc, wblk + ir * kc, pb + jr * kc, tile + (ir - m0) * nb + jr, nb, MR, NR,
                                              T(1), T(0), mode);
                }
            }
            // col2im: scatter rows [row0, row1) of the block into dx.
            const std::size_t nseg = conv_segments(g, j0, ncb, seg);
            for (std::size_t row = row0; row < row1; ++row) {
                const std::size_t c = row / rs, r = (row / g.s) % g.r, s = row % g.s;
                const T* trow = tile + (row - m0) * nb;
                for (std::size_t k = 0; k < nseg; ++k) {
                    const conv_segment& sg = seg[k];
                    const long ih = sg.ih0 + static_cast<long>(r);
                    if (ih < 0 || ih >= H) continue;
                    T* drow = dx + sg.image + c * hw + ih * Wd;
                    const long iw = sg.iw0 + static_cast<long>(s);
                    long tlo, thi;
                    conv_run_range(iw, sw, Wd, sg.len, tlo, thi);
                    const T* src = trow + sg.col;
                    if (sw == 1) {
                        T* o = drow + iw;
                        long u = tlo;
                        for (; u + static_cast<long>(vec_size<T>) <= thi; u += static_cast<long>(vec_size<T>))
                            (vec<T>::load_unaligned(o + u) + vec<T>::load_unaligned(src + u)).store_unaligned(o + u);
                        for (; u < thi; ++u) o[u] += src[u];
                    } else {
                        for (long u = tlo; u < thi; ++u) drow[iw + u * sw] += src[u];
                    }
                }
            }
        }
    };
    if (pool && nt > 1 && g.c >= nt)
        pool->run([&](unsigned t, unsigned parts) { work(t, parts); });
    else
        work(0, 1);
}

}  // namespace lamina::host_detail
