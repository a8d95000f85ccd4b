// lamina: zero padding of images (PyTorch's nn.ZeroPad2d): (C, H, W) ->
// (C, Top + H + Bottom, Left + W + Right) with zeros around the input; backward crops the
// gradient. zero_pad2d<Pad> pads every side by Pad; zero_pad2d_tblr<Top, Bottom, Left, Right>
// pads each side on its own (an asymmetric "same" padding before a strided conv).
// Written once for every backend (Backend::for_each_index).
#pragma once

#include <cstddef>
#include <string>

#include "../core/config.hpp"
#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

template <std::size_t Top, std::size_t Bottom, std::size_t Left, std::size_t Right>
struct zero_pad2d_tblr : layer_descriptor_base {
    static std::string name() {
        if (Top == Bottom && Top == Left && Top == Right) return "zero_pad2d<" + std::to_string(Top) + ">";
        return "zero_pad2d<" + std::to_string(Top) + "," + std::to_string(Bottom) + "," + std::to_string(Left) + "," +
               std::to_string(Right) + ">";
    }
    template <class In>
    static constexpr bool accepts = In::rank == 3;
    template <class In>
    using expected_input = any_shape_of_rank<3>;
    template <class In>
    using output_shape = shape<chw<In>::c, Top + chw<In>::h + Bottom, Left + chw<In>::w + Right>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t H = chw<In>::h, W = chw<In>::w;
        static constexpr std::size_t OH = Top + H + Bottom, OW = Left + W + Right;
        static constexpr auto traits = graph::leaf_traits{}.no_input().accumulating();

        void forward(const context& c, const node_io<T>& io) const {
            const T* x = io.x[0];
            T* y = io.y;
            constexpr std::size_t h = H, w = W, oh = OH, ow = OW, top = Top, left = Left;
            Backend::for_each_index(c, io.batch * chw<In>::c * OH * OW, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t col = i % ow, row = (i / ow) % oh, plane = i / (oh * ow);
                // unsigned wrap-around makes rows/columns above or left of the input out of range
                const std::size_t r = row - top, q = col - left;
                y[i] = (r < h && q < w) ? x[(plane * h + r) * w + q] : T(0);
            });
        }
        void backward(const context& c, const node_io<T>& io) {
            T* dx = io.dx[0];
            if (!dx) return;
            const T* dy = io.dy;
            const bool acc = io.accumulate[0];
            constexpr std::size_t h = H, w = W, oh = OH, ow = OW, top = Top, left = Left;
            Backend::for_each_index(c, io.batch * In::size, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t col = i % w, row = (i / w) % h, plane = i / (h * w);
                const T g = dy[(plane * oh + row + top) * ow + col + left];
                dx[i] = acc ? dx[i] + g : g;  // a select: dx may hold garbage when overwritten
            });
        }
    };
};

template <std::size_t Pad>
using zero_pad2d = zero_pad2d_tblr<Pad, Pad, Pad, Pad>;

}  // namespace lamina
