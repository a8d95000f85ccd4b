// What the MPI tests share (test_mpi_training.cpp, test_mpi_comm.cpp, test_mpi_kokkos.cpp): the
// residual and batch-norm networks they train, the world's rank and size, a seeded data set that
// is the same on every rank, and the agreed tolerance |a-b| <= 1e-5 max(|a|,|b|) + 1e-6.
#pragma once

#include <catch2/catch.hpp>
#include <mpi.h>

#include <lamina/framework.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mpi_test {

namespace lm = lamina;

/// conv, a residual block of two convs, pool, dense-tanh-dense: every kind of gradient report.
using res_net = lm::sequential<lm::input<2, 6, 6>, lm::conv2d<4, 3, 1, 1, lm::init::he_uniform>, lm::relu,
                               lm::residual<lm::sequential<lm::conv2d<4, 3, 1, 1, lm::init::he_uniform>, lm::relu,
                                                           lm::conv2d<4, 3, 1, 1, lm::init::he_uniform>>>,
                               lm::relu, lm::max_pool<2>, lm::flatten, lm::dense<7, lm::init::he_uniform>, lm::tanh,
                               lm::dense<5>>;

/// Batch norm after a conv and inside a residual block, for the synchronised-BN tests.
template <std::size_t Classes>
using bn_net_with = lm::sequential<lm::input<2, 6, 6>, lm::conv2d<4, 3, 1, 1, lm::init::he_uniform, false>,
                                   lm::batch_norm, lm::relu,
                                   lm::residual<lm::sequential<lm::conv2d<4, 3, 1, 1, lm::init::he_uniform, false>,
                                                               lm::batch_norm>>,
                                   lm::relu, lm::global_avg_pool, lm::dense<Classes>>;

inline int world_rank() {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}
inline int world_size() {
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

/// `n` samples of 2x6x6 inputs in [-1, 1] (a fixed integer hash from `seed`, the same on every
/// rank) with labels i mod classes.
inline lm::dataset<float> hashed_data(std::size_t n, std::size_t classes, std::uint32_t seed) {
    lm::dataset<float> d(n, 72, 1);
    std::uint32_t h = seed;
    for (auto& v : d.inputs()) {
        h = h * 1664525u + 1013904223u;
        v = static_cast<float>((h >> 8) % 2001) / 1000.0f - 1.0f;
    }
    for (std::size_t i = 0; i < n; ++i) d.targets()[i] = static_cast<float>(i % classes);
    return d;
}

/// The largest amount by which |a-b| exceeds the tolerance: <= 0 when every element is within.
template <class U>
double excess(const std::vector<U>& a, const std::vector<U>& b) {
    REQUIRE(a.size() == b.size());
    double worst = -1;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double x = a[i], y = b[i];
        worst = std::max(worst, std::abs(x - y) - (1e-5 * std::max(std::abs(x), std::abs(y)) + 1e-6));
    }
    return worst;
}

}  // namespace mpi_test
