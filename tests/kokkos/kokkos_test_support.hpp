// Helpers for the Kokkos backend tests: the execution spaces under test, device buffers
// filled from host vectors, and the agreed tolerance
//   |a - b| <= 1e-5 * max(|a|, |b|) + 1e-6 * max|ref|.
#pragma once

#include <lamina/backends/kokkos/kokkos_backend.hpp>  // first: Kokkos, then lamina

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <lamina/core/philox.hpp>

namespace kt {

#if defined(KOKKOS_ENABLE_SERIAL) && defined(KOKKOS_ENABLE_OPENMP)
#define LAMINA_KOKKOS_HOST_TEST_SPACES Kokkos::Serial, Kokkos::OpenMP
#elif defined(KOKKOS_ENABLE_OPENMP)
#define LAMINA_KOKKOS_HOST_TEST_SPACES Kokkos::OpenMP
#elif defined(KOKKOS_ENABLE_SERIAL)
#define LAMINA_KOKKOS_HOST_TEST_SPACES Kokkos::Serial
#else
#define LAMINA_KOKKOS_HOST_TEST_SPACES Kokkos::DefaultHostExecutionSpace
#endif
// CUDA builds also test on Kokkos::Cuda, so every kernel is compiled for the device (the CUDA
// compile check, scripts/check_kokkos_cuda.sh) and runs there on a GPU machine.
#if defined(KOKKOS_ENABLE_CUDA)
#define LAMINA_KOKKOS_TEST_SPACES LAMINA_KOKKOS_HOST_TEST_SPACES, Kokkos::Cuda
#else
#define LAMINA_KOKKOS_TEST_SPACES LAMINA_KOKKOS_HOST_TEST_SPACES
#endif

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed, double lo = -1, double hi = 1) {
    lamina::random_stream r{seed, 77};
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(lo + (hi - lo) * r.uniform_double(i));
    return v;
}

/// A device copy of a host vector, with download back.
template <class B, class T>
struct dev {
    typename B::context ctx;
    typename B::template buffer<T> buf;
    explicit dev(const std::vector<T>& h) : buf(std::max<std::size_t>(h.size(), 1)) {
        B::upload(ctx, buf.data(), h.data(), h.size());
        n = h.size();
    }
    explicit dev(std::size_t count) : buf(std::max<std::size_t>(count, 1)), n(count) {}
    std::vector<T> host() const {
        std::vector<T> h(n);
        B::download(ctx, h.data(), buf.data(), n);
        return h;
    }
    T* data() { return buf.data(); }
    std::size_t n = 0;
};

template <class T>
bool close(const std::vector<T>& got, const std::vector<T>& ref, std::string* why = nullptr, double rel = 1e-5,
           double abs_of_max = 1e-6) {
    if (got.size() != ref.size()) {
        if (why) *why = "size " + std::to_string(got.size()) + " vs " + std::to_string(ref.size());
        return false;
    }
    double maxref = 0;
    for (auto v : ref) maxref = std::max(maxref, std::abs(static_cast<double>(v)));
    for (std::size_t i = 0; i < got.size(); ++i) {
        double a = got[i], b = ref[i];
        double tol = rel * std::max(std::abs(a), std::abs(b)) + abs_of_max * maxref;
        if (!(std::abs(a - b) <= tol) && !(a == b)) {
            if (why) *why = "element " + std::to_string(i) + ": " + std::to_string(a) + " vs reference " + std::to_string(b);
            return false;
        }
    }
    return true;
}

}  // namespace kt

#define KT_REQUIRE_CLOSE(got, ref) KT_REQUIRE_CLOSE_TOL(got, ref, 1e-5, 1e-6)
#define KT_REQUIRE_CLOSE_TOL(got, ref, rel, abs_of_max)                     \
    do {                                                                    \
        std::string kt_why_;                                                \
        bool kt_ok_ = kt::close((got), (ref), &kt_why_, (rel), (abs_of_max)); \
        INFO(kt_why_);                           \
        REQUIRE(kt_ok_);                         \
    } while (0)
