// lamina: compile-time configuration, version and portability macros.
#pragma once

#include <cstddef>
#include <cstdint>

#define LAMINA_VERSION_MAJOR 0
#define LAMINA_VERSION_MINOR 1
#define LAMINA_VERSION_PATCH 0

// Marks functions that kernels may call on any backend. On the host this is plain
// `inline`; when Kokkos_Core.hpp was included first (backends/kokkos does that) it is
// KOKKOS_INLINE_FUNCTION, so the same scalar helpers (activations, RNG) compile for devices.
#ifndef LAMINA_HOST_DEVICE
#if defined(KOKKOS_INLINE_FUNCTION)  // Kokkos_Core.hpp came first: device-callable helpers
#define LAMINA_HOST_DEVICE KOKKOS_INLINE_FUNCTION
#define LAMINA_HOST_DEVICE_IS_KOKKOS 1
#else
#define LAMINA_HOST_DEVICE inline
#endif
#endif

// The lambda that kernels written once for every backend hand to Backend::for_each_index:
// KOKKOS_LAMBDA when Kokkos_Core.hpp came first (a __host__ __device__ lambda under CUDA),
// a plain by-value lambda otherwise. Capture only values and device pointers.
#ifndef LAMINA_LAMBDA
#if defined(KOKKOS_LAMBDA)
#define LAMINA_LAMBDA KOKKOS_LAMBDA
#else
#define LAMINA_LAMBDA [=]
#endif
#endif

namespace lamina {

using index_t = std::ptrdiff_t;

/// Alignment of every buffer lamina allocates: one cache line, which also covers AVX-512.
inline constexpr std::size_t buffer_alignment = 64;

}  // namespace lamina
