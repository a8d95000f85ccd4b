// lamina Kokkos backend: GEMM through KokkosBlas::gemm (KokkosKernels) when the build has a
// KokkosKernels that matches the Kokkos in use (LAMINA_WITH_KOKKOSKERNELS, set by
// cmake/LaminaKokkos.cmake only when KokkosKernels was built against that same Kokkos).
// KokkosKernels then picks its own implementation or a vendor library (the system BLAS on
// host spaces, cuBLAS on CUDA), which is the point: lamina's own tiled GEMM is the fallback.
//
// KokkosBlas::gemm takes whole 2-D Views, so only contiguous row-major operands qualify
// (leading dimension == row length); anything else, or a scalar/layout/space combination
// KokkosKernels has no kernel for, returns false and the caller runs lamina's own GEMM.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <type_traits>

#include "../../core/geometry.hpp"  // lamina::transpose

#if defined(LAMINA_WITH_KOKKOSKERNELS)
#if defined(__has_include)
#if !__has_include(<KokkosBlas3_gemm.hpp>)
#error "lamina: LAMINA_WITH_KOKKOSKERNELS is defined but <KokkosBlas3_gemm.hpp> is not on the include path"
#endif
#endif
#include <KokkosBlas3_gemm.hpp>
#endif

namespace lamina::kokkos_detail {

/// True when this build routes GEMMs on (ExecutionSpace, MemorySpace) to KokkosBlas::gemm.
template <class ExecutionSpace, class MemorySpace, class T>
constexpr bool kokkos_blas_gemm_enabled() {
#if defined(LAMINA_WITH_KOKKOSKERNELS)
    // Debian's KokkosKernels instantiates (and forwards to BLAS) float/double on host memory;
    // other combinations would compile KokkosKernels' generic kernels into every user.
    return (std::is_same<T, float>::value || std::is_same<T, double>::value) &&
           std::is_same<typename ExecutionSpace::memory_space, MemorySpace>::value &&
           std::is_same<ExecutionSpace, Kokkos::DefaultExecutionSpace>::value;
#else
    return false;
#endif
}

/// C = alpha * op(A) * op(B) + beta * C (row-major, leading dimensions ld*) through KokkosBlas.
/// Returns false, touching nothing, when the operands do not qualify.
template <class ExecutionSpace, class MemorySpace, class T>
bool kokkos_blas_gemm(const ExecutionSpace& space, transpose ta, transpose tb, std::size_t M, std::size_t N,
                      std::size_t K, T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C,
                      std::size_t ldc) {
#if defined(LAMINA_WITH_KOKKOSKERNELS)
    if constexpr (kokkos_blas_gemm_enabled<ExecutionSpace, MemorySpace, T>()) {
        const std::size_t a_rows = ta == transpose::no ? M : K, a_cols = ta == transpose::no ? K : M;
        const std::size_t b_rows = tb == transpose::no ? K : N, b_cols = tb == transpose::no ? N : K;
        if (M == 0 || N == 0 || K == 0 || lda != a_cols || ldb != b_cols || ldc != N) return false;
        using unmanaged = Kokkos::MemoryTraits<Kokkos::Unmanaged>;
        using cview = Kokkos::View<const T**, Kokkos::LayoutRight, MemorySpace, unmanaged>;
        using view = Kokkos::View<T**, Kokkos::LayoutRight, MemorySpace, unmanaged>;
        space.fence();  // KokkosBlas::gemm runs on the default instance: order it after our kernels
        KokkosBlas::gemm(ta == transpose::no ? "N" : "T", tb == transpose::no ? "N" : "T", alpha,
                         cview(A, a_rows, a_cols), cview(B, b_rows, b_cols), beta, view(C, M, N));
        return true;
    }
#endif
    (void)space, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B, (void)ldb,
        (void)beta, (void)C, (void)ldc;
    return false;
}

}  // namespace lamina::kokkos_detail
