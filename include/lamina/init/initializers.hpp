// lamina: weight initialisation (He, Glorot, LeCun; uniform and normal), drawn from the
// counter-based RNG so that a seed gives the same weights on every backend and thread count.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include "../core/philox.hpp"

namespace lamina::init {

enum class kind { zeros, ones, he_uniform, he_normal, glorot_uniform, glorot_normal, lecun_uniform, lecun_normal };

inline const char* to_string(kind k) {
    switch (k) {
        case kind::zeros: return "zeros";
        case kind::ones: return "ones";
        case kind::he_uniform: return "he_uniform";
        case kind::he_normal: return "he_normal";
        case kind::glorot_uniform: return "glorot_uniform";
        case kind::glorot_normal: return "glorot_normal";
        case kind::lecun_uniform: return "lecun_uniform";
        case kind::lecun_normal: return "lecun_normal";
    }
    return "?";
}

/// Variance of the target distribution: He 2/fan_in, Glorot 2/(fan_in+fan_out), LeCun 1/fan_in.
inline double variance(kind k, std::size_t fan_in, std::size_t fan_out) {
    double fi = static_cast<double>(fan_in ? fan_in : 1), fo = static_cast<double>(fan_out ? fan_out : 1);
    switch (k) {
        case kind::he_uniform:
        case kind::he_normal: return 2.0 / fi;
        case kind::glorot_uniform:
        case kind::glorot_normal: return 2.0 / (fi + fo);
        case kind::lecun_uniform:
        case kind::lecun_normal: return 1.0 / fi;
        default: return 0.0;
    }
}

/// The index-th value of a parameter tensor initialised with `k` from stream `s`.
/// Uniform: U(-a, a) with a = sqrt(3 var). Normal: N(0, var) (not truncated).
inline double sample(kind k, const random_stream& s, std::uint64_t index, std::size_t fan_in, std::size_t fan_out) {
    switch (k) {
        case kind::zeros: return 0.0;
        case kind::ones: return 1.0;
        case kind::he_uniform:
        case kind::glorot_uniform:
        case kind::lecun_uniform: {
            double a = std::sqrt(3.0 * variance(k, fan_in, fan_out));
            return (2.0 * s.uniform_double(index) - 1.0) * a;
        }
        default: return s.normal(index) * std::sqrt(variance(k, fan_in, fan_out));
    }
}

/// Policy types for layer templates: dense<120, init::he_uniform>.
struct he_uniform { static constexpr kind value = kind::he_uniform; };
struct he_normal { static constexpr kind value = kind::he_normal; };
struct glorot_uniform { static constexpr kind value = kind::glorot_uniform; };
struct glorot_normal { static constexpr kind value = kind::glorot_normal; };
struct lecun_uniform { static constexpr kind value = kind::lecun_uniform; };
struct lecun_normal { static constexpr kind value = kind::lecun_normal; };

}  // namespace lamina::init
