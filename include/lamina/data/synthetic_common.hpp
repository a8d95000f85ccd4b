// lamina: what the synthetic data generators share (data/synthetic_cells.hpp,
// data/synthetic_calorimeter.hpp): size arithmetic that fails loudly, and numbers drawn from
// Philox blocks.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <string>

#include "../core/error.hpp"
#include "../core/philox.hpp"

namespace lamina::data::detail {

/// a * b, or an argument_error naming the generator and `what` when it overflows std::size_t.
inline std::size_t synthetic_product(std::size_t a, std::size_t b, const char* generator, const std::string& what) {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a)
        throw argument_error(std::string("lamina: ") + generator + ": " + what + " overflows std::size_t");
    return a * b;
}

/// Four standard normals from one Philox block (Box-Muller on both word pairs).
inline void normals4(const philox4x32::block& b, double out[4]) {
    constexpr double two_pi = 6.283185307179586, inv32 = 1.0 / 4294967296.0;
    for (int k = 0; k < 2; ++k) {
        const double u1 = (static_cast<double>(b.v[2 * k]) + 1.0) * inv32;  // (0, 1]: the log is finite
        const double u2 = static_cast<double>(b.v[2 * k + 1]) * inv32;
        const double r = std::sqrt(-2.0 * std::log(u1));
        out[2 * k] = r * std::cos(two_pi * u2);
        out[2 * k + 1] = r * std::sin(two_pi * u2);
    }
}

/// Uniform in [0, 1) from word w of a block.
inline double unit(const philox4x32::block& b, int w) { return static_cast<double>(b.v[w]) * (1.0 / 4294967296.0); }

}  // namespace lamina::data::detail
