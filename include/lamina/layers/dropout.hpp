// lamina: inverted dropout. Training keeps each element with probability 1 - p and scales
// it by 1/(1 - p); inference is the identity. The mask comes from the counter-based RNG,
// keyed by the model seed, the layer and the training step, so it is the same on every
// backend and thread count and a resumed run draws the same masks.
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
    class impl : public layer_base<Backend, T> {
    public:
        using context = typename Backend::context;
        void plan(const context&, std::size_t batch) {
            if (mask_.size() < batch * In::size) mask_.allocate(batch * In::size);
        }
        /// Set by the network: distinguishes this layer's stream from every other layer's.
        void set_stream(random_stream s) { stream_ = s; }

        void forward(const context& c, const T* x, T* y, std::size_t batch, T*) const {
            Backend::copy(c, y, x, batch * In::size);
        }
        void forward_train(const context& c, const T* x, T* y, std::size_t batch, T*, std::uint64_t step) {
            Backend::dropout_forward(c, x, y, mask_.data(), batch * In::size, static_cast<T>(p), stream_.child(step));
        }
        void backward(const context& c, const T*, const T*, const T* dy, T* dx, std::size_t batch, T*) {
            if (dx) Backend::multiply(c, batch * In::size, dy, static_cast<const T*>(mask_.data()), dx);
        }

    private:
        typename Backend::template buffer<T> mask_;
        random_stream stream_{};
    };
};

template <int Percent>
using dropout_p = dropout<std::ratio<Percent, 100>>;

}  // namespace lamina
