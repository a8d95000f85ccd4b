// lamina: elementwise activation layers (relu, leaky_relu, sigmoid, tanh, gelu), one
// template over the activation kind, so each backend needs one forward and one backward kernel.
#pragma once

#include <ratio>
#include <string>

#include "../core/activation.hpp"
#include "layer_concept.hpp"

namespace lamina {

/// Slope is a std::ratio (only used by leaky_relu).
template <activation_kind Kind, class Slope = std::ratio<0>>
struct activation_layer : layer_descriptor_base {
    static constexpr double alpha = double(Slope::num) / double(Slope::den);
    static std::string name() {
        return Kind == activation_kind::leaky_relu ? "leaky_relu<" + std::to_string(alpha).substr(0, 6) + ">"
                                                   : std::string(to_string(Kind));
    }

    template <class In, class Backend, class T>
    class impl : public layer_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr double flops_per_sample = double(In::size);
        /// Whether a preceding layer may apply this activation in its own epilogue: only when
        /// the derivative can be taken from the output y alone (relu, leaky_relu with a
        /// non-negative slope: y > 0 exactly when x > 0; sigmoid, tanh: f' is a function of y).
        /// backward() then receives y in place of x. GELU needs x: never fused.
        static constexpr bool fusable_into_producer =
            Kind == activation_kind::relu || Kind == activation_kind::sigmoid || Kind == activation_kind::tanh ||
            (Kind == activation_kind::leaky_relu && alpha >= 0.0);
        static activation fused_activation() { return activation{Kind, alpha}; }
        void forward(const context& c, const T* x, T* y, std::size_t batch, T*) const {
            Backend::activation_forward(c, activation{Kind, alpha}, x, y, batch * In::size);
        }
        void forward_train(const context& c, const T* x, T* y, std::size_t batch, T* ws, std::uint64_t) {
            forward(c, x, y, batch, ws);
        }
        void backward(const context& c, const T* x, const T* y, const T* dy, T* dx, std::size_t batch, T*) {
            if (dx) Backend::activation_backward(c, activation{Kind, alpha}, x, y, dy, dx, batch * In::size);
        }
    };
};

using relu = activation_layer<activation_kind::relu>;
using sigmoid = activation_layer<activation_kind::sigmoid>;
using tanh = activation_layer<activation_kind::tanh>;
using tanh_layer = tanh;  // for code that also uses std::tanh unqualified
using gelu = activation_layer<activation_kind::gelu>;
/// leaky_relu with PyTorch's default negative slope 0.01.
using leaky_relu = activation_layer<activation_kind::leaky_relu, std::ratio<1, 100>>;
template <class Slope>
using leaky_relu_slope = activation_layer<activation_kind::leaky_relu, Slope>;

}  // namespace lamina
