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
    class impl : public layer_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t inputs = In::size;
        static constexpr std::size_t parameter_count = Outputs * inputs + (Bias ? Outputs : 0);
        static constexpr double flops_per_sample = 2.0 * Outputs * inputs;

        std::vector<parameter_spec> parameter_specs() const {
            std::vector<parameter_spec> p{{"weight", Outputs * inputs, inputs, Outputs, Init::value, true}};
            if (Bias) p.push_back({"bias", Outputs, inputs, Outputs, init::kind::zeros, false});
            return p;
        }
        void bind_parameters(T* w, T* g) { w_ = w; dw_ = g; }

        void forward(const context& c, const T* x, T* y, std::size_t batch, T* ws) const {
            forward_fused(c, x, y, batch, ws, activation{});
        }
        /// y = act(x W^T + b): bias and activation in the GEMM's epilogue, while each C tile is
        /// still in L1. layer_chain calls this when an activation layer follows (the activation
        /// layer is then skipped), so backward must not read this layer's own output y.
        static constexpr bool fuses_activation = true;
        void forward_fused(const context& c, const T* x, T* y, std::size_t batch, T*, activation act) const {
            Backend::gemm_bias_act(c, transpose::no, transpose::yes, batch, Outputs, inputs, T(1), x, inputs, w_, inputs,
                                   T(0), y, Outputs, Bias ? w_ + Outputs * inputs : static_cast<const T*>(nullptr),
                                   act);
        }
        void forward_train(const context& c, const T* x, T* y, std::size_t batch, T* ws, std::uint64_t) {
            forward(c, x, y, batch, ws);
        }
        void backward(const context& c, const T* x, const T*, const T* dy, T* dx, std::size_t batch, T*) {
            // dW = dy^T x, db = column sums of dy, dx = dy W
            Backend::gemm(c, transpose::yes, transpose::no, Outputs, inputs, batch, T(1), dy, Outputs, x, inputs, T(0), dw_,
                          inputs);
            if (Bias) Backend::channel_bias_grad(c, dy, dw_ + Outputs * inputs, batch, Outputs, std::size_t(1));
            if (dx)
                Backend::gemm(c, transpose::no, transpose::no, batch, inputs, Outputs, T(1), dy, Outputs, w_, inputs, T(0), dx,
                              inputs);
        }

    private:
        T* w_ = nullptr;
        T* dw_ = nullptr;
    };
};

}  // namespace lamina
