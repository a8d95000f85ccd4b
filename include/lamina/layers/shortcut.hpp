// lamina: subsample_pad<Cout, Stride>, He et al.'s parameter-free residual shortcut (option A)
// for blocks that change the number of channels or the resolution: every Stride-th pixel, the
// channels zero-padded equally on both sides to Cout (network/composites.hpp's shortcut_for
// picks it).
#pragma once

#include <cstddef>
#include <string>

#include "../core/config.hpp"
#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

template <std::size_t Cout, std::size_t Stride = 2>
struct subsample_pad : layer_descriptor_base {
    static_assert(Stride >= 1, "lamina::subsample_pad needs a positive stride");
    static std::string name() { return "subsample_pad<" + std::to_string(Cout) + ",s" + std::to_string(Stride) + ">"; }
    template <class In>
    static constexpr bool accepts = In::rank == 3 && Cout >= chw<In>::c && (Cout - chw<In>::c) % 2 == 0;
    template <class In>
    using expected_input = any_shape_of_rank<3>;
    template <class In>
    using output_shape = shape<Cout, (chw<In>::h + Stride - 1) / Stride, (chw<In>::w + Stride - 1) / Stride>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t C = chw<In>::c, H = chw<In>::h, W = chw<In>::w;
        static constexpr std::size_t P = (H + Stride - 1) / Stride, Q = (W + Stride - 1) / Stride;
        static constexpr std::size_t pad = (Cout - C) / 2;
        static constexpr auto traits = graph::leaf_traits{}.no_input().accumulating();

        void forward(const context& c, const node_io<T>& io) const {
            const T* x = io.x[0];
            T* y = io.y;
            Backend::for_each_index(c, io.batch * Cout * P * Q, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t q = i % Q, p = (i / Q) % P, k = (i / (P * Q)) % Cout, n = i / (Cout * P * Q);
                y[i] = (k >= pad && k < pad + C) ? x[((n * C + (k - pad)) * H + p * Stride) * W + q * Stride] : T(0);
            });
        }
        void backward(const context& c, const node_io<T>& io) {
            T* dx = io.dx[0];
            if (!dx) return;
            const T* dy = io.dy;
            const bool acc = io.accumulate[0];
            Backend::for_each_index(c, io.batch * C * H * W, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t w = i % W, h = (i / W) % H, ch = (i / (H * W)) % C, n = i / (C * H * W);
                const T g = (h % Stride == 0 && w % Stride == 0)
                                ? dy[((n * Cout + ch + pad) * P + h / Stride) * Q + w / Stride]
                                : T(0);
                dx[i] = acc ? dx[i] + g : g;
            });
        }
    };
};

}  // namespace lamina
