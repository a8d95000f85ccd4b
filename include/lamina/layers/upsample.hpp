// lamina: nearest-neighbour upsampling by an integer factor (PyTorch's
// nn.Upsample(scale_factor=Factor, mode="nearest")): (C, H, W) -> (C, H * Factor, W * Factor),
// every input pixel becomes a Factor x Factor block; backward sums each block's gradient.
// Written once for every backend (Backend::for_each_index).
//
//   ..., lm::upsample_nearest<2>, lm::conv2d<16, 3, 1, 1>, ...   // a decoder stage
#pragma once

#include <cstddef>
#include <string>

#include "../core/config.hpp"
#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

template <std::size_t Factor>
struct upsample_nearest : layer_descriptor_base {
    static_assert(Factor >= 1, "lamina::upsample_nearest: the factor must be at least 1");
    static std::string name() { return "upsample_nearest<" + std::to_string(Factor) + ">"; }
    template <class In>
    static constexpr bool accepts = In::rank == 3;
    template <class In>
    using expected_input = any_shape_of_rank<3>;
    template <class In>
    using output_shape = shape<chw<In>::c, chw<In>::h * Factor, chw<In>::w * Factor>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t H = chw<In>::h, W = chw<In>::w;
        static constexpr std::size_t OH = H * Factor, OW = W * Factor;
        static constexpr auto traits = graph::leaf_traits{}.no_input().accumulating();

        void forward(const context& c, const node_io<T>& io) const {
            const T* x = io.x[0];
            T* y = io.y;
            constexpr std::size_t h = H, w = W, oh = OH, ow = OW, f = Factor;
            Backend::for_each_index(c, io.batch * chw<In>::c * OH * OW, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t col = i % ow, row = (i / ow) % oh, plane = i / (oh * ow);
                y[i] = x[(plane * h + row / f) * w + col / f];
            });
        }
        void backward(const context& c, const node_io<T>& io) {
            T* dx = io.dx[0];
            if (!dx) return;
            const T* dy = io.dy;
            const bool acc = io.accumulate[0];
            constexpr std::size_t h = H, w = W, oh = OH, ow = OW, f = Factor;
            Backend::for_each_index(
                c, io.batch * In::size,
                LAMINA_LAMBDA(std::size_t i) {
                    const std::size_t col = i % w, row = (i / w) % h, plane = i / (h * w);
                    const T* block = dy + (plane * oh + row * f) * ow + col * f;
                    T s = 0;
                    for (std::size_t a = 0; a < f; ++a)
                        for (std::size_t b = 0; b < f; ++b) s += block[a * ow + b];
                    dx[i] = acc ? dx[i] + s : s;  // a select: dx may hold garbage when overwritten
                },
                Factor * Factor);
        }
    };
};

}  // namespace lamina
