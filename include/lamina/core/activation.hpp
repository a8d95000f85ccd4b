// lamina: the elementwise activation functions as a runtime-tagged value type, so one
// kernel entry point per backend serves every activation layer.
#pragma once

#include <cmath>

#include "config.hpp"

namespace lamina {

enum class activation_kind { identity, relu, leaky_relu, sigmoid, tanh, gelu };

struct activation {
    activation_kind kind = activation_kind::identity;
    double alpha = 0.0;  // leaky_relu's negative slope
};

inline const char* to_string(activation_kind k) {
    switch (k) {
        case activation_kind::identity: return "identity";
        case activation_kind::relu: return "relu";
        case activation_kind::leaky_relu: return "leaky_relu";
        case activation_kind::sigmoid: return "sigmoid";
        case activation_kind::tanh: return "tanh";
        case activation_kind::gelu: return "gelu";
    }
    return "?";
}

/// Scalar definitions, used by the reference and Kokkos backends (the host backend has
/// its own vectorised versions and is tested against these). GELU is the exact erf form
/// (PyTorch's default), d/dx = Phi(x) + x * phi(x).
template <class T>
LAMINA_HOST_DEVICE T activation_value(activation_kind k, T alpha, T x) {
    switch (k) {
        case activation_kind::identity: return x;
        case activation_kind::relu: return x < T(0) ? T(0) : x;  // NaN stays NaN (PyTorch)
        case activation_kind::leaky_relu: return x > T(0) ? x : alpha * x;
        case activation_kind::sigmoid: return T(1) / (T(1) + std::exp(-x));
        case activation_kind::tanh: return std::tanh(x);
        case activation_kind::gelu: return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
    }
    return x;
}

/// Derivative dy/dx given the input x and the output y = f(x). For relu and leaky_relu use
/// activation_gradient, which selects rather than multiplies (as PyTorch does).
template <class T>
LAMINA_HOST_DEVICE T activation_derivative(activation_kind k, T alpha, T x, T y) {
    switch (k) {
        case activation_kind::identity: return T(1);
        case activation_kind::relu: return x > T(0) ? T(1) : T(0);
        case activation_kind::leaky_relu: return x > T(0) ? T(1) : alpha;
        case activation_kind::sigmoid: return y * (T(1) - y);
        case activation_kind::tanh: return T(1) - y * y;
        case activation_kind::gelu: {
            T cdf = T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440)));
            T pdf = T(0.39894228040143267794) * std::exp(T(-0.5) * x * x);
            return cdf + x * pdf;
        }
    }
    return T(1);
}

/// dx for one element: f'(x) * dy, except that relu and leaky_relu select dy (PyTorch's
/// threshold_backward: a NaN upstream gradient is dropped where the unit is off, a NaN input
/// passes dy through). With y in place of x (fused or in-place use) the result is the same,
/// since y <= 0 exactly when x <= 0 and y is NaN exactly when x is.
template <class T>
LAMINA_HOST_DEVICE T activation_gradient(activation_kind k, T alpha, T x, T y, T dy) {
    switch (k) {
        case activation_kind::relu: return x <= T(0) ? T(0) : dy;
        case activation_kind::leaky_relu: return x > T(0) ? dy : alpha * dy;
        default: return dy * activation_derivative<T>(k, alpha, x, y);
    }
}

}  // namespace lamina
