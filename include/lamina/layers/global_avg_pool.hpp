// lamina: global average pooling, (C, H, W) -> (C): the mean of each channel's plane
// (ResNet's and the HEP CNN's head). Written once for every backend (Backend::for_each_index).
#pragma once

#include <cstddef>
#include <string>

#include "../core/config.hpp"
#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

struct global_avg_pool : layer_descriptor_base {
    static std::string name() { return "global_avg_pool"; }
    template <class In>
    static constexpr bool accepts = In::rank == 3;
    template <class In>
    using expected_input = any_shape_of_rank<3>;
    template <class In>
    using output_shape = shape<chw<In>::c>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t C = chw<In>::c, HW = chw<In>::h * chw<In>::w;
        static constexpr double flops_per_sample = double(In::size);
        static constexpr auto traits = graph::leaf_traits{}.no_input().accumulating();

        void forward(const context& c, const node_io<T>& io) const {
            const T* x = io.x[0];
            T* y = io.y;
            const T inv = T(1) / static_cast<T>(HW);
            Backend::for_each_index(
                c, io.batch * C,
                LAMINA_LAMBDA(std::size_t nc) {
                    const T* p = x + nc * HW;
                    T s = 0;
                    for (std::size_t j = 0; j < HW; ++j) s += p[j];
                    y[nc] = s * inv;
                },
                HW);
        }
        void backward(const context& c, const node_io<T>& io) {
            T* dx = io.dx[0];
            if (!dx) return;
            const T* dy = io.dy;
            const T inv = T(1) / static_cast<T>(HW);
            const bool acc = io.accumulate[0];
            Backend::for_each_index(c, io.batch * In::size, LAMINA_LAMBDA(std::size_t i) {
                const T g = dy[i / HW] * inv;
                dx[i] = acc ? dx[i] + g : g;
            });
        }
    };
};

}  // namespace lamina
