// lamina: a packed, register-blocked GEMM for Kokkos execution spaces that run on the host
// (Serial, OpenMP, Threads, HPX). Used by kokkos_backend<ExecutionSpace, MemorySpace> when
// ExecutionSpace can access HostSpace; GPU spaces keep the backend's team-scratch GEMM.
//
// One Kokkos::TeamPolicy (team size 1, team scratch level 0) over blocks of C: a team owns an
// mc x nc block of one C matrix (of a batch); for each kc slice of the reduction it packs
// op(A) into MR-row panels and op(B) into NR-column panels in its scratch, then runs the
// MR x NR micro-kernel (plain loops with fixed trip counts that the compiler keeps in vector
// registers) over the panels and hands each accumulated tile to a store functor.
//
// The operand access is abstracted by three device-callable functors, so the same driver runs
// the dense GEMM and the implicit-GEMM convolutions (host_space_conv.hpp):
//   pack_a(b, i0, mr, p0, kc, dst)   dst[p * MR + i] = op(A)_b(i0 + i, p0 + p), 0 for i >= mr
//   pack_b(b, j0, nr, p0, kc, dst)   dst[p * NR + j] = op(B)_b(p0 + p, j0 + j), 0 for j >= nr
//   store(b, i0, j0, mr, nr, acc, first, last)  acc[i * NR + j] = sum over this kc slice;
//                                     first: the first slice of the reduction, last: the last
// Every C element is written by exactly one team (no atomics, deterministic), and K == 0 still
// calls store once (acc all zero, first and last) so beta and the epilogue apply.
//
// Device-clean code only inside the kernel: no std:: containers, exceptions or virtual calls.
// Includes no host-backend header and no SIMD library: vectorisation is the compiler's.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../../core/activation.hpp"
#include "../../core/geometry.hpp"  // lamina::transpose

namespace lamina {
namespace kokkos_detail {

/// True when ExecutionSpace runs on the host (it can access HostSpace memory): Serial,
/// OpenMP, Threads, HPX. False for Cuda, HIP, SYCL, OpenMPTarget.
template <class ExecutionSpace>
inline constexpr bool is_host_execution_space =
    Kokkos::SpaceAccessibility<ExecutionSpace, Kokkos::HostSpace>::accessible;

/// Blocking of the host GEMM: MR x NR accumulators (12 AVX2 registers for float), a kc x NR
/// panel of B in L1, an mc x kc block of A in L2.
template <class T>
struct host_gemm_blocking {
    static constexpr std::int64_t MR = 6;
    static constexpr std::int64_t NR = sizeof(T) >= 8 ? 8 : 16;  // two 32-byte vectors per row
    static constexpr std::int64_t KC = 256;
    static constexpr std::int64_t MC = 96;   // multiple of MR
    static constexpr std::int64_t NC = 384;  // multiple of NR
};

// The micro-kernel's accumulators are kept in vector registers through GCC/Clang vector
// types (a 32-byte vector: 8 floats or 4 doubles) where the compiler has them: g++ 12 does
// not keep a plain MR x NR accumulator array in registers (it spills and shuffles). Host
// compilers only: under nvcc, hipcc or a SYCL device pass the plain loops below are used.
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__) && !defined(__HIPCC__) && \
    !defined(__SYCL_DEVICE_ONLY__) && !defined(LAMINA_KOKKOS_HOST_GEMM_PLAIN)
#define LAMINA_KOKKOS_HOST_GEMM_VECTOR_TYPES 1
template <class T>
struct host_vec32;
template <>
struct host_vec32<float> {
    typedef float type __attribute__((vector_size(32)));
};
template <>
struct host_vec32<double> {
    typedef double type __attribute__((vector_size(32)));
};
#endif

/// acc[i * NR + j] = sum_p a[p * MR + i] * b[p * NR + j] for p in [0, kc).
template <class T, std::int64_t MR, std::int64_t NR>
KOKKOS_INLINE_FUNCTION void host_gemm_micro_kernel(std::int64_t kc, const T* __restrict__ a, const T* __restrict__ b,
                                                   T* __restrict__ acc) {
#if defined(LAMINA_KOKKOS_HOST_GEMM_VECTOR_TYPES)
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
        using V = typename host_vec32<T>::type;
        constexpr std::int64_t L = static_cast<std::int64_t>(sizeof(V) / sizeof(T)), NV = NR / L;
        static_assert(NR % L == 0, "NR must be a multiple of the vector length");
        V c[MR][NV];
        for (std::int64_t i = 0; i < MR; ++i)
            for (std::int64_t v = 0; v < NV; ++v) c[i][v] = V{};
        for (std::int64_t p = 0; p < kc; ++p) {
            V bv[NV];
            for (std::int64_t v = 0; v < NV; ++v) __builtin_memcpy(&bv[v], b + p * NR + v * L, sizeof(V));
            for (std::int64_t i = 0; i < MR; ++i) {
                const T av = a[p * MR + i];
                for (std::int64_t v = 0; v < NV; ++v) c[i][v] += av * bv[v];
            }
        }
        for (std::int64_t i = 0; i < MR; ++i)
            for (std::int64_t v = 0; v < NV; ++v) __builtin_memcpy(acc + i * NR + v * L, &c[i][v], sizeof(V));
        return;
    }
#endif
    T c[MR][NR];
    for (std::int64_t i = 0; i < MR; ++i)
        for (std::int64_t j = 0; j < NR; ++j) c[i][j] = T(0);
    for (std::int64_t p = 0; p < kc; ++p) {
        const T* __restrict__ bp = b + p * NR;
        const T* __restrict__ ap = a + p * MR;
        for (std::int64_t i = 0; i < MR; ++i) {
            const T av = ap[i];
            for (std::int64_t j = 0; j < NR; ++j) c[i][j] += av * bp[j];
        }
    }
    for (std::int64_t i = 0; i < MR; ++i)
        for (std::int64_t j = 0; j < NR; ++j) acc[i * NR + j] = c[i][j];
}

/// The packed GEMM driver: batch independent products C_b (M x N) = sum_p op(A)_b(:, p) op(B)_b(p, :)
/// over p in [0, K), each C tile handed to store. See the header comment for the functors.
/// split_mn == false gives each batch entry to a single team (tiles stored in sequence), for
/// stores whose targets overlap between tiles of one entry.
template <class ExecutionSpace, class T, class PackA, class PackB, class Store>
void host_packed_gemm(const ExecutionSpace& space, const char* label, std::int64_t batch, std::int64_t M,
                      std::int64_t N, std::int64_t K, const PackA& pack_a, const PackB& pack_b, const Store& store,
                      bool split_mn = true) {
    using index = std::int64_t;
    using blk = host_gemm_blocking<T>;
    constexpr index MR = blk::MR, NR = blk::NR;
    if (batch <= 0 || M <= 0 || N <= 0) return;
    // Split M and N into near-equal blocks (multiples of MR / NR), then split further until
    // there are a few blocks per thread (or the blocks are one panel wide).
    index mblocks = (M + blk::MC - 1) / blk::MC, nblocks = (N + blk::NC - 1) / blk::NC;
    const index want = 3 * static_cast<index>(space.concurrency());
    const index m_panels = (M + MR - 1) / MR, n_panels = (N + NR - 1) / NR;
    if (!split_mn) mblocks = nblocks = 1;  // one team per batch entry (the store may scatter)
    while (split_mn && batch * mblocks * nblocks < want) {
        const index mp = (m_panels + mblocks - 1) / mblocks, np = (n_panels + nblocks - 1) / nblocks;
        if (np >= 2 && (np * NR >= mp * MR || mp < 2))
            ++nblocks;
        else if (mp >= 2)
            ++mblocks;
        else
            break;
    }
    const index mc = (m_panels + mblocks - 1) / mblocks * MR, nc = (n_panels + nblocks - 1) / nblocks * NR;
    mblocks = (M + mc - 1) / mc;
    nblocks = (N + nc - 1) / nc;
    const index kslices = K > 0 ? (K + blk::KC - 1) / blk::KC : 1;
    const index kcmax = K > 0 ? (K + kslices - 1) / kslices : 0;  // near-equal slices

    using policy_type = Kokkos::TeamPolicy<ExecutionSpace>;
    using member_type = typename policy_type::member_type;
    using scratch_view = Kokkos::View<T*, typename ExecutionSpace::scratch_memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    const index a_size = mc * (kcmax > 0 ? kcmax : 1), b_size = nc * (kcmax > 0 ? kcmax : 1);
    const std::size_t bytes = scratch_view::shmem_size(static_cast<std::size_t>(a_size)) +
                              scratch_view::shmem_size(static_cast<std::size_t>(b_size)) +
                              scratch_view::shmem_size(static_cast<std::size_t>(MR * NR));
    policy_type policy(space, static_cast<int>(batch * mblocks * nblocks), 1);
    policy = policy.set_scratch_size(0, Kokkos::PerTeam(bytes));
    Kokkos::parallel_for(
        label, policy, KOKKOS_LAMBDA(const member_type& team) {
            const index t = team.league_rank();
            const index b = t / (mblocks * nblocks), rest = t % (mblocks * nblocks);
            const index i0 = (rest / nblocks) * mc, j0 = (rest % nblocks) * nc;
            const index mlen = M - i0 < mc ? M - i0 : mc, nlen = N - j0 < nc ? N - j0 : nc;
            scratch_view as(team.team_scratch(0), a_size);
            scratch_view bs(team.team_scratch(0), b_size);
            scratch_view cs(team.team_scratch(0), MR * NR);
            T* const ap = as.data();
            T* const bp = bs.data();
            T* const acc = cs.data();
            if (K <= 0) {
                for (index e = 0; e < MR * NR; ++e) acc[e] = T(0);
                for (index jr = 0; jr < nlen; jr += NR)
                    for (index ir = 0; ir < mlen; ir += MR)
                        store(b, i0 + ir, j0 + jr, mlen - ir < MR ? mlen - ir : MR, nlen - jr < NR ? nlen - jr : NR, acc,
                              true, true);
                return;
            }
            for (index p0 = 0; p0 < K; p0 += kcmax) {
                const index kc = K - p0 < kcmax ? K - p0 : kcmax;
                for (index ir = 0; ir < mlen; ir += MR)
                    pack_a(b, i0 + ir, mlen - ir < MR ? mlen - ir : MR, p0, kc, ap + ir * kc);
                for (index jr = 0; jr < nlen; jr += NR)
                    pack_b(b, j0 + jr, nlen - jr < NR ? nlen - jr : NR, p0, kc, bp + jr * kc);
                const bool first = p0 == 0, last = p0 + kc >= K;
                for (index jr = 0; jr < nlen; jr += NR)
                    for (index ir = 0; ir < mlen; ir += MR) {
                        host_gemm_micro_kernel<T, MR, NR>(kc, ap + ir * kc, bp + jr * kc, acc);
                        store(b, i0 + ir, j0 + jr, mlen - ir < MR ? mlen - ir : MR, nlen - jr < NR ? nlen - jr : NR,
                              acc, first, last);
                    }
            }
        });
}

/// Packs MR rows of op(A) for the dense GEMM (A row-major with leading dimension lda).
template <class T>
struct host_gemm_pack_a {
    const T* A;
    std::int64_t lda;
    bool trans;
    KOKKOS_INLINE_FUNCTION void operator()(std::int64_t, std::int64_t i0, std::int64_t mr, std::int64_t p0,
                                           std::int64_t kc, T* __restrict__ dst) const {
        constexpr std::int64_t MR = host_gemm_blocking<T>::MR;
        if (!trans) {  // op(A)(i, p) = A[i * lda + p]: rows are contiguous in p
            const T* a = A + i0 * lda + p0;
            if (mr == MR) {
                for (std::int64_t p = 0; p < kc; ++p)
                    for (std::int64_t i = 0; i < MR; ++i) dst[p * MR + i] = a[i * lda + p];
            } else {
                for (std::int64_t p = 0; p < kc; ++p)
                    for (std::int64_t i = 0; i < MR; ++i) dst[p * MR + i] = i < mr ? a[i * lda + p] : T(0);
            }
        } else {  // op(A)(i, p) = A[p * lda + i]: contiguous in i
            const T* a = A + p0 * lda + i0;
            for (std::int64_t p = 0; p < kc; ++p)
                for (std::int64_t i = 0; i < MR; ++i) dst[p * MR + i] = i < mr ? a[p * lda + i] : T(0);
        }
    }
};

/// Packs NR columns of op(B) for the dense GEMM (B row-major with leading dimension ldb).
template <class T>
struct host_gemm_pack_b {
    const T* B;
    std::int64_t ldb;
    bool trans;
    KOKKOS_INLINE_FUNCTION void operator()(std::int64_t, std::int64_t j0, std::int64_t nr, std::int64_t p0,
                                           std::int64_t kc, T* __restrict__ dst) const {
        constexpr std::int64_t NR = host_gemm_blocking<T>::NR;
        if (!trans) {  // op(B)(p, j) = B[p * ldb + j]: contiguous in j
            const T* bsrc = B + p0 * ldb + j0;
            if (nr == NR) {
                for (std::int64_t p = 0; p < kc; ++p)
                    for (std::int64_t j = 0; j < NR; ++j) dst[p * NR + j] = bsrc[p * ldb + j];
            } else {
                for (std::int64_t p = 0; p < kc; ++p)
                    for (std::int64_t j = 0; j < NR; ++j) dst[p * NR + j] = j < nr ? bsrc[p * ldb + j] : T(0);
            }
        } else {  // op(B)(p, j) = B[j * ldb + p]: contiguous in p
            const T* bsrc = B + j0 * ldb + p0;
            for (std::int64_t j = 0; j < NR; ++j) {
                if (j < nr)
                    for (std::int64_t p = 0; p < kc; ++p) dst[p * NR + j] = bsrc[j * ldb + p];
                else
                    for (std::int64_t p = 0; p < kc; ++p) dst[p * NR + j] = T(0);
            }
        }
    }
};

/// C = act(alpha * acc + beta * C + bias[j]) for the dense GEMM; beta == 0 never reads C.
template <class T>
struct host_gemm_store {
    T* C;
    std::int64_t ldc;
    T alpha, beta;
    const T* bias;  // N entries or null
    bool epilogue;
    activation_kind kind;
    T slope;
    KOKKOS_INLINE_FUNCTION void operator()(std::int64_t, std::int64_t i0, std::int64_t j0, std::int64_t mr,
                                           std::int64_t nr, const T* __restrict__ acc, bool first, bool last) const {
        constexpr std::int64_t NR = host_gemm_blocking<T>::NR;
        const bool beta_zero = beta == T(0);
        for (std::int64_t i = 0; i < mr; ++i) {
            T* __restrict__ c = C + (i0 + i) * ldc + j0;
            const T* __restrict__ a = acc + i * NR;
            if (first && beta_zero) {
                for (std::int64_t j = 0; j < nr; ++j) c[j] = alpha * a[j];
            } else if (first) {
                for (std::int64_t j = 0; j < nr; ++j) c[j] = alpha * a[j] + beta * c[j];
            } else {
                for (std::int64_t j = 0; j < nr; ++j) c[j] += alpha * a[j];
            }
            if (last && epilogue) {
                if (bias)
                    for (std::int64_t j = 0; j < nr; ++j) c[j] = activation_value<T>(kind, slope, c[j] + bias[j0 + j]);
                else if (kind != activation_kind::identity)
                    for (std::int64_t j = 0; j < nr; ++j) c[j] = activation_value<T>(kind, slope, c[j]);
            }
        }
    }
};

/// C = alpha * op(A) op(B) + beta * C, then (epilogue) C = act(C + bias[column]); row-major,
/// on a host execution space. beta == 0 never reads C.
template <class ExecutionSpace, class T>
void host_space_gemm(const ExecutionSpace& space, transpose ta, transpose tb, std::size_t M, std::size_t N,
                     std::size_t K, T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C,
                     std::size_t ldc, const T* bias, bool epilogue, activation act) {
    static_assert(is_host_execution_space<ExecutionSpace>, "host_space_gemm runs on host execution spaces only");
    using index = std::int64_t;
    host_gemm_pack_a<T> pa{A, static_cast<index>(lda), ta == transpose::yes};
    host_gemm_pack_b<T> pb{B, static_cast<index>(ldb), tb == transpose::yes};
    host_gemm_store<T> st{C, static_cast<index>(ldc), alpha, beta, bias, epilogue, act.kind, static_cast<T>(act.alpha)};
    host_packed_gemm<ExecutionSpace, T>(space, "lamina::gemm_host", 1, static_cast<index>(M), static_cast<index>(N),
                                        static_cast<index>(K), pa, pb, st);
}

}  // namespace kokkos_detail
}  // namespace lamina
