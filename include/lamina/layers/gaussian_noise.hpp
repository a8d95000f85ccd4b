// lamina: additive Gaussian noise, a regulariser (Keras' GaussianNoise). Training adds
// independent N(0, sigma^2) noise to every element; inference is the identity; the gradient
// passes through unchanged (dx = dy). The noise comes from the counter-based RNG keyed by the
// model seed, the layer and the training step (as dropout's mask), so it is the same on every
// backend and thread count and a resumed run draws the same noise. Written once for every
// backend (Backend::for_each_index); nothing is kept for backward.
//
//   lm::input<1, 28, 28>, lm::gaussian_noise<std::ratio<1, 10>>, lm::conv2d<8, 3>, ...
#pragma once

#include <cstddef>
#include <cstdint>
#include <ratio>
#include <string>

#include "../core/config.hpp"
#include "../core/philox.hpp"
#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

/// Sigma (the noise's standard deviation) is a std::ratio, e.g. std::ratio<1, 10>.
template <class Sigma>
struct gaussian_noise : layer_descriptor_base {
    static constexpr double sigma = double(Sigma::num) / double(Sigma::den);
    static_assert(Sigma::num >= 0, "lamina::gaussian_noise: sigma must be non-negative");
    static std::string name() { return "gaussian_noise<" + std::to_string(sigma).substr(0, 6) + ">"; }
    template <class In>
    static constexpr bool accepts = is_shape<In>::value;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr double flops_per_sample = double(In::size);
        // y = x + noise elementwise; dx = dy, so the model may give dx dy's storage
        static constexpr auto traits = graph::leaf_traits{}.in_place().passthrough().no_input().accumulating();
        /// Set by the model: distinguishes this layer's stream from every other layer's.
        void set_stream(random_stream s) { stream_ = s; }

        void forward(const context& c, const node_io<T>& io) const {
            Backend::copy(c, io.y, io.x[0], io.batch * In::size);
        }
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t step) {
            const random_stream s = stream_.child(step);  // element i of the batch draws number i
            const T* x = io.x[0];
            T* y = io.y;
            const double sd = sigma;
            Backend::for_each_index(c, io.batch * In::size, LAMINA_LAMBDA(std::size_t i) {
                y[i] = x[i] + static_cast<T>(sd * s.gaussian(i));
            }, 40);
        }
        void backward(const context& c, const node_io<T>& io) {
            T* dx = io.dx[0];
            if (!dx || dx == io.dy) return;  // aliased by the model: nothing to do
            const std::size_t n = io.batch * In::size;
            if (io.accumulate[0]) Backend::axpy(c, n, T(1), io.dy, dx);
            else Backend::copy(c, dx, io.dy, n);
        }

    private:
        random_stream stream_{};
    };
};

}  // namespace lamina
