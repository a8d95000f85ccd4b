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
    class impl : public layer_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr double flops_per_sample = 3.0 * In::size;
        void forward(const context& c, const T* x, T* y, std::size_t batch, T*) const {
            Backend::softmax_forward(c, x, y, batch, In::size);
        }
        void forward_train(const context& c, const T* x, T* y, std::size_t batch, T* ws, std::uint64_t) {
            forward(c, x, y, batch, ws);
        }
        void backward(const context& c, const T*, const T* y, const T* dy, T* dx, std::size_t batch, T*) {
            if (dx) Backend::softmax_backward(c, y, dy, dx, batch, In::size);
        }
    };
};

}  // namespace lamina
