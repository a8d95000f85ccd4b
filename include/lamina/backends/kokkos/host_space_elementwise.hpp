// lamina: activation kernels and the per-channel bias gradient for Kokkos execution spaces
// that run on the host. The Kokkos backend's portable versions switch on the activation kind
// per element (a data-dependent branch for relu: mispredicted half the time on random data);
// here the kind is a template argument, so each kernel is a branch-free loop over a chunk of
// elements that the compiler vectorises. Same scalar formulas (core/activation.hpp).
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../../core/activation.hpp"
#include "host_space_gemm.hpp"  // host_vec32 (vector types of the host compiler)

namespace lamina {
namespace kokkos_detail {

inline constexpr std::int64_t host_elementwise_chunk = 4096;

// activation_value / activation_derivative with the kind fixed at compile time, spelled as
// plain selects for the piecewise-linear kinds (g++ does not if-convert the switch of
// core/activation.hpp even with a constant kind, so those loops kept a branch per element).
template <activation_kind Kind, class T>
KOKKOS_INLINE_FUNCTION T host_activation_value(T slope, T x) {
    if constexpr (Kind == activation_kind::identity) return x;
    else if constexpr (Kind == activation_kind::relu) return x < T(0) ? T(0) : x;  // NaN stays NaN
    else if constexpr (Kind == activation_kind::leaky_relu) return x > T(0) ? x : slope * x;
    else return activation_value<T>(Kind, slope, x);
}
template <activation_kind Kind, class T>
KOKKOS_INLINE_FUNCTION T host_activation_derivative(T slope, T x, T y) {
    if constexpr (Kind == activation_kind::identity) return T(1);
    else if constexpr (Kind == activation_kind::relu) return x > T(0) ? T(1) : T(0);
    else if constexpr (Kind == activation_kind::leaky_relu) return x > T(0) ? T(1) : slope;
    else if constexpr (Kind == activation_kind::sigmoid) return y * (T(1) - y);
    else if constexpr (Kind == activation_kind::tanh) return T(1) - y * y;
    else return activation_derivative<T>(Kind, slope, x, y);
}

/// dx for one element with PyTorch's select semantics for relu and leaky_relu (see
/// activation_gradient in core/activation.hpp).
template <activation_kind Kind, class T>
KOKKOS_INLINE_FUNCTION T host_activation_gradient(T slope, T x, T y, T dy) {
    if constexpr (Kind == activation_kind::relu) return x <= T(0) ? T(0) : dy;
    else if constexpr (Kind == activation_kind::leaky_relu) return x > T(0) ? dy : slope * dy;
    else return dy * host_activation_derivative<Kind, T>(slope, x, y);
}

template <activation_kind Kind, class ExecutionSpace, class T>
void host_activation_forward_kind(const ExecutionSpace& space, T slope, const T* x, T* y, std::int64_t n) {
    constexpr std::int64_t CH = host_elementwise_chunk;
    Kokkos::parallel_for(
        "lamina::activation_forward_host",
        Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>(space, 0, (n + CH - 1) / CH),
        KOKKOS_LAMBDA(const std::int64_t chunk) {
            const std::int64_t lo = chunk * CH, hi = n - lo < CH ? n : lo + CH;
            const T* __restrict__ xs = x + lo;
            T* __restrict__ ys = y + lo;
            for (std::int64_t i = 0; i < hi - lo; ++i) ys[i] = host_activation_value<Kind, T>(slope, xs[i]);
        });
}

template <activation_kind Kind, class ExecutionSpace, class T>
void host_activation_backward_kind(const ExecutionSpace& space, T slope, const T* x, const T* y, const T* dy, T* dx,
                                   std::int64_t n) {
    constexpr std::int64_t CH = host_elementwise_chunk;
    Kokkos::parallel_for(
        "lamina::activation_backward_host",
        Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>(space, 0, (n + CH - 1) / CH),
        KOKKOS_LAMBDA(const std::int64_t chunk) {
            const std::int64_t lo = chunk * CH, hi = n - lo < CH ? n : lo + CH;
            // elementwise at equal indices: in-place use (dx == dy) stays correct under __restrict__
            const T* __restrict__ xs = x + lo;
            const T* __restrict__ ys = y + lo;
            const T* __restrict__ dys = dy + lo;
            T* __restrict__ dxs = dx + lo;
            std::int64_t i = 0;
#if defined(LAMINA_KOKKOS_HOST_GEMM_VECTOR_TYPES)
            // relu / leaky_relu: g++ keeps a branch per element for the compare under its default
            // -ftrapping-math; a vector select has none. relu: dx = x <= 0 ? 0 : dy; leaky_relu:
            // dx = x > 0 ? dy : slope * dy (selects, so NaN follows PyTorch's rules).
            if constexpr ((Kind == activation_kind::relu || Kind == activation_kind::leaky_relu) &&
                          (std::is_same_v<T, float> || std::is_same_v<T, double>)) {
                using V = typename host_vec32<T>::type;
                constexpr std::int64_t L = static_cast<std::int64_t>(sizeof(V) / sizeof(T));
                const V low = V{} + slope;
                for (; i + L <= hi - lo; i += L) {
                    V xv, dv;
                    __builtin_memcpy(&xv, xs + i, sizeof(V));
                    __builtin_memcpy(&dv, dys + i, sizeof(V));
                    V r;
                    if constexpr (Kind == activation_kind::relu) r = xv <= V{} ? V{} : dv;
                    else r = xv > V{} ? dv : dv * low;
                    __builtin_memcpy(dxs + i, &r, sizeof(V));
                }
            }
#endif
            for (; i < hi - lo; ++i) dxs[i] = host_activation_gradient<Kind, T>(slope, xs[i], ys[i], dys[i]);
        });
}

/// y = f(x) elementwise.
template <class ExecutionSpace, class T>
void host_space_activation_forward(const ExecutionSpace& space, activation a, const T* x, T* y, std::size_t count) {
    const T slope = static_cast<T>(a.alpha);
    const auto n = static_cast<std::int64_t>(count);
    switch (a.kind) {
        case activation_kind::identity: host_activation_forward_kind<activation_kind::identity>(space, slope, x, y, n); break;
        case activation_kind::relu: host_activation_forward_kind<activation_kind::relu>(space, slope, x, y, n); break;
        case activation_kind::leaky_relu: host_activation_forward_kind<activation_kind::leaky_relu>(space, slope, x, y, n); break;
        case activation_kind::sigmoid: host_activation_forward_kind<activation_kind::sigmoid>(space, slope, x, y, n); break;
        case activation_kind::tanh: host_activation_forward_kind<activation_kind::tanh>(space, slope, x, y, n); break;
        case activation_kind::gelu: host_activation_forward_kind<activation_kind::gelu>(space, slope, x, y, n); break;
    }
}

/// dx = f'(x) * dy, with y = f(x).
template <class ExecutionSpace, class T>
void host_space_activation_backward(const ExecutionSpace& space, activation a, const T* x, const T* y, const T* dy,
                                    T* dx, std::size_t count) {
    const T slope = static_cast<T>(a.alpha);
    const auto n = static_cast<std::int64_t>(count);
    switch (a.kind) {
        case activation_kind::identity: host_activation_backward_kind<activation_kind::identity>(space, slope, x, y, dy, dx, n); break;
        case activation_kind::relu: host_activation_backward_kind<activation_kind::relu>(space, slope, x, y, dy, dx, n); break;
        case activation_kind::leaky_relu: host_activation_backward_kind<activation_kind::leaky_relu>(space, slope, x, y, dy, dx, n); break;
        case activation_kind::sigmoid: host_activation_backward_kind<activation_kind::sigmoid>(space, slope, x, y, dy, dx, n); break;
        case activation_kind::tanh: host_activation_backward_kind<activation_kind::tanh>(space, slope, x, y, dy, dx, n); break;
        case activation_kind::gelu: host_activation_backward_kind<activation_kind::gelu>(space, slope, x, y, dy, dx, n); break;
    }
}

/// db[c] = sum over outer and inner of dy, dy being [outer][channels][inner] (overwrites db).
/// One work item per channel, summing contiguous rows (no index division per element).
template <class ExecutionSpace, class T>
void host_space_channel_bias_grad(const ExecutionSpace& space, const T* dy, T* db, std::size_t outer,
                                  std::size_t channels, std::size_t inner) {
    const auto nch = static_cast<std::int64_t>(channels), nin = static_cast<std::int64_t>(inner),
               nout = static_cast<std::int64_t>(outer);
    Kokkos::parallel_for(
        "lamina::channel_bias_grad_host", Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>(space, 0, nch),
        KOKKOS_LAMBDA(const std::int64_t ch) {
            constexpr std::int64_t L = 8;  // independent partial sums: vectorised, no serial add chain
            T part[L];
            for (std::int64_t l = 0; l < L; ++l) part[l] = T(0);
            T s = 0;
            for (std::int64_t o = 0; o < nout; ++o) {
                const T* row = dy + (o * nch + ch) * nin;
                std::int64_t i = 0;
                for (; i + L <= nin; i += L)
                    for (std::int64_t l = 0; l < L; ++l) part[l] += row[i + l];
                for (; i < nin; ++i) s += row[i];
            }
            for (std::int64_t l = 0; l < L; ++l) s += part[l];
            db[ch] = s;
        });
}

}  // namespace kokkos_detail
}  // namespace lamina
