// lamina: fully connected layer y = x W^T + b, W stored [out][in] as in PyTorch's Linear.
#pragma once

#include <string>

#include "../core/activation.hpp"
#include "../core/geometry.hpp"
#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

template <std::size_t Outputs, class Init = init::glorot_uniform, bool Bias = true>
struct dense : layer_descriptor_base {
    static_assert(Outputs > 0, "lamina::dense needs at least one output");
    static std::string name() { return "dense<" + std::to_string(Outputs) + ">"; }

    template <class In>
    static constexpr bool accepts = In::rank == 1;
    template <class In>
    using expected_input = any_shape_of_rank<1>;
    template <class In>
    using output_shape = shape<Outputs>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t inputs = 1;
        static constexpr std::size_t fan_in = In::size;
        static constexpr std::size_t parameter_count = Outputs * fan_in + (Bias ? Outputs : 0);
        static constexpr double flops_per_sample = 2.0 * Outputs * fan_in;
        static constexpr auto traits = graph::leaf_traits{}.accumulating();  // dx through the GEMM's beta

        std::vector<tensor_spec> tensor_specs() const {
            std::vector<tensor_spec> p{{"weight", Outputs * fan_in, fan_in, Outputs, Init::value, true}};
            if (Bias) p.push_back({"bias", Outputs, fan_in, Outputs, init::kind::zeros, false});
            return p;
        }
        void bind(const tensor_binding<T>& b) {
            w_ = b.parameters;
            dw_ = b.gradients;
        }

        void forward(const context& c, const node_io<T>& io) const { forward_fused(c, io, activation{}); }
        /// y = act(x W^T + b): bias and activation in the GEMM's epilogue, while each C tile is
        /// still in L1. The chain runs this for dense + activation as one leaf
        /// (network/leaf_node.hpp's fused_leaf_node), whose backward never reads y as this
        /// layer's own output.
        static constexpr bool fuses_activation = true;
        void forward_fused(const context& c, const node_io<T>& io, activation act) const {
            Backend::gemm_bias_act(c, transpose::no, transpose::yes, io.batch, Outputs, fan_in, T(1), io.x[0], fan_in,
                                   static_cast<const T*>(w_), fan_in, T(0), io.y, Outputs,
                                   Bias ? static_cast<const T*>(w_ + Outputs * fan_in) : static_cast<const T*>(nullptr),
                                   act);
        }
        template <class Sink>
        void backward(const context& c, const node_io<T>& io, Sink& sink) {
            // dW = dy^T x, db = column sums of dy (reported), then dx (+)= dy W
            Backend::gemm(c, transpose::yes, transpose::no, Outputs, fan_in, io.batch, T(1), io.dy, Outputs, io.x[0],
                          fan_in, T(0), dw_, fan_in);
            if (Bias) Backend::channel_bias_grad(c, io.dy, dw_ + Outputs * fan_in, io.batch, Outputs, std::size_t(1));
            sink.ready(static_cast<const T*>(dw_), parameter_count);
            if (io.dx[0])
                Backend::gemm(c, transpose::no, transpose::no, io.batch, fan_in, Outputs, T(1), io.dy, Outputs,
                              static_cast<const T*>(w_), fan_in, io.beta(0), io.dx[0], fan_in);
        }

    private:
        T* w_ = nullptr;
        T* dw_ = nullptr;
    };
};

}  // namespace lamina
