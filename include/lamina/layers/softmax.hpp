// lamina: softmax over a vector (for probabilities at inference; train on logits with
// loss::softmax_cross_entropy, which fuses the softmax and is numerically stable).
#pragma once

#include <string>

#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

struct softmax : layer_descriptor_base {
    static std::string name() { return "softmax"; }
    template <class In>
    static constexpr bool accepts = In::rank == 1;
    template <class In>
    using expected_input = any_shape_of_rank<1>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr double flops_per_sample = 3.0 * In::size;
        static constexpr auto traits = graph::leaf_traits{}.no_input().reads_output();
        void forward(const context& c, const node_io<T>& io) const {
            Backend::softmax_forward(c, io.x[0], io.y, io.batch, In::size);
        }
        void backward(const context& c, const node_io<T>& io) {
            if (io.dx[0]) Backend::softmax_backward(c, static_cast<const T*>(io.y), io.dy, io.dx[0], io.batch, In::size);
        }
    };
};

}  // namespace lamina
