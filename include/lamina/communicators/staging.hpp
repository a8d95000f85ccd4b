// lamina: where the MPI library can read a backend's gradients. The fusion buckets are slices of
// the model's gradient buffer, so they live in the model's memory space (host memory, or a
// Kokkos memory space). They go to MPI directly when MPI can address that memory: host memory,
// a Kokkos host-accessible space (Serial, OpenMP), or device memory when the MPI library is
// GPU-aware. Otherwise each bucket is copied to a host staging buffer (pinned host memory when
// Kokkos has it, so the copy is a DMA transfer), reduced there, and copied back.
//
// GPU-awareness is what the library says (Open MPI's MPIX_Query_cuda_support /
// MPIX_Query_rocm_support from <mpi-ext.h>, MPICH's MPIX_GPU_query_support), or forced by
// comm::mpi_options::gpu_aware. Include <lamina/kokkos.hpp> before this header for the Kokkos
// parts (as for every Kokkos use of lamina).
#pragma once

#include <mpi.h>

#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#if defined(OPEN_MPI) && OPEN_MPI && defined(__has_include)
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>
#endif
#endif

namespace lamina::comm {

/// Whether device buffers go to MPI directly.
enum class gpu_aware {
    detect,  ///< as the MPI library reports (false when it cannot say)
    yes,     ///< forced: the library is GPU-aware (e.g. a build the query does not know)
    no,      ///< forced: always stage through host buffers
};

namespace detail {

template <class Backend, class = void>
struct kokkos_memory_space {
    using type = void;
};
template <class Backend>
struct kokkos_memory_space<Backend, std::void_t<typename Backend::memory_space>> {
    using type = typename Backend::memory_space;
};

/// MPI can address the backend's buffers without asking the library about devices.
template <class Backend>
constexpr bool host_addressable() {
    if constexpr (Backend::host_accessible) {
        return true;
    } else {
#if defined(KOKKOS_VERSION)
        using space = typename kokkos_memory_space<Backend>::type;
        if constexpr (!std::is_void_v<space>) return Kokkos::SpaceAccessibility<Kokkos::HostSpace, space>::accessible;
        else return false;
#else
        return false;
#endif
    }
}

/// What the MPI library reports about device buffers for this build's device (CUDA or HIP
/// through Kokkos); false when it cannot tell.
inline bool library_gpu_aware() {
#if defined(KOKKOS_ENABLE_CUDA) && defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
    return MPIX_Query_cuda_support() == 1;
#elif defined(KOKKOS_ENABLE_HIP) && defined(MPIX_ROCM_AWARE_SUPPORT) && MPIX_ROCM_AWARE_SUPPORT
    return MPIX_Query_rocm_support() == 1;
#elif defined(KOKKOS_ENABLE_CUDA) && defined(MPIX_GPU_SUPPORT_CUDA)
    int yes = 0;
    return MPIX_GPU_query_support(MPIX_GPU_SUPPORT_CUDA, &yes) == MPI_SUCCESS && yes;
#elif defined(KOKKOS_ENABLE_HIP) && defined(MPIX_GPU_SUPPORT_HIP)
    int yes = 0;
    return MPIX_GPU_query_support(MPIX_GPU_SUPPORT_HIP, &yes) == MPI_SUCCESS && yes;
#else
    return false;
#endif
}

/// Host memory for staging device buffers: pinned when Kokkos has a pinned host space.
template <class T>
class staging_buffer {
public:
    void allocate(std::size_t n) {
#if defined(KOKKOS_ENABLE_CUDA) || defined(KOKKOS_ENABLE_HIP)
        view_ = view_type(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string("lamina::comm staging")), n);
#else
        data_.assign(n, T(0));
#endif
    }
    T* data() noexcept {
#if defined(KOKKOS_ENABLE_CUDA) || defined(KOKKOS_ENABLE_HIP)
        return view_.data();
#else
        return data_.data();
#endif
    }

private:
#if defined(KOKKOS_ENABLE_CUDA)
    using view_type = Kokkos::View<T*, Kokkos::CudaHostPinnedSpace>;
    view_type view_;
#elif defined(KOKKOS_ENABLE_HIP)
#if KOKKOS_VERSION >= 40000
    using view_type = Kokkos::View<T*, Kokkos::HIPHostPinnedSpace>;
#else
    using view_type = Kokkos::View<T*, Kokkos::Experimental::HIPHostPinnedSpace>;
#endif
    view_type view_;
#else
    std::vector<T> data_;
#endif
};

}  // namespace detail
}  // namespace lamina::comm
