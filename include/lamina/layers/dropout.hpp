// lamina: inverted dropout. Training keeps each element with probability 1 - p and scales
// it by 1/(1 - p); inference is the identity. The mask comes from the counter-based RNG,
// keyed by the model seed, the layer and the training step, so it is the same on every
// backend and thread count and a resumed run draws the same masks. The mask is the node's
// saved-for-backward block (planned by the model), so the layer holds no buffers.
#pragma once

#include <ratio>
#include <string>

#include "../core/philox.hpp"
#include "layer_concept.hpp"

namespace lamina {

/// dropout<P> with P a std::ratio, e.g. dropout<std::ratio<1, 2>>; `dropout_p<Percent>` for
/// an integer percentage.
template <class P = std::ratio<1, 2>>
struct dropout : layer_descriptor_base {
    static constexpr double p = double(P::num) / double(P::den);
    static_assert(P::num >= 0 && P::num < P::den, "lamina::dropout: probability must be in [0, 1)");
    static std::string name() { return "dropout<" + std::to_string(p).substr(0, 4) + ">"; }

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        // y = x * mask and dx = dy * mask, elementwise: both may run in place
        static constexpr auto traits = graph::leaf_traits{}.in_place().in_place_gradient().no_input();
        std::size_t saved_bytes(std::size_t batch) const { return batch * In::size * sizeof(T); }
        /// Set by the model: distinguishes this layer's stream from every other layer's.
        void set_stream(random_stream s) { stream_ = s; }

        void forward(const context& c, const node_io<T>& io) const {
            Backend::copy(c, io.y, io.x[0], io.batch * In::size);
        }
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t step) {
            Backend::dropout_forward(c, io.x[0], io.y, io.template saved_as<T>(), io.batch * In::size, static_cast<T>(p),
                                     stream_.child(step));
        }
        void backward(const context& c, const node_io<T>& io) {
            if (io.dx[0])
                Backend::multiply(c, io.batch * In::size, io.dy, static_cast<const T*>(io.template saved_as<T>()),
                                  io.dx[0]);
        }

    private:
        random_stream stream_{};
    };
};

template <int Percent>
using dropout_p = dropout<std::ratio<Percent, 100>>;

}  // namespace lamina
