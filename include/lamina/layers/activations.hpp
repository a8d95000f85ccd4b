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
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr double flops_per_sample = double(In::size);
        /// Whether the derivative can be taken from the output y alone (relu, leaky_relu with a
        /// non-negative slope: y > 0 exactly when x > 0; sigmoid, tanh: f' is a function of y).
        /// Such an activation may run in place, be applied in a preceding layer's epilogue
        /// (network/chain.hpp), and its backward reads y where it would read x. GELU needs x.
        static constexpr bool fusable_into_producer =
            Kind == activation_kind::relu || Kind == activation_kind::sigmoid || Kind == activation_kind::tanh ||
            (Kind == activation_kind::leaky_relu && alpha >= 0.0);
        static constexpr graph::leaf_traits traits = [] {
            graph::leaf_traits t;
            t.in_place_forward = fusable_into_producer;
            t.in_place_backward = true;  // dx[i] depends on dy[i] alone
            t.needs_input = !fusable_into_producer;
            t.needs_output = fusable_into_producer;
            return t;
        }();
        static activation fused_activation() { return activation{Kind, alpha}; }

        void forward(const context& c, const node_io<T>& io) const {
            Backend::activation_forward(c, activation{Kind, alpha}, io.x[0], io.y, io.batch * In::size);
        }
        void backward(const context& c, const node_io<T>& io) {
            if (!io.dx[0]) return;
            const T* x = fusable_into_producer ? static_cast<const T*>(io.y) : io.x[0];
            Backend::activation_backward(c, activation{Kind, alpha}, x, static_cast<const T*>(io.y), io.dy, io.dx[0],
                                         io.batch * In::size);
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
