// lamina: max and average pooling over square windows (stride defaults to the window).
#pragma once

#include <cstdint>
#include <string>

#include "../core/geometry.hpp"
#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

namespace detail {
template <std::size_t Window, std::size_t Stride, std::size_t Padding>
struct pool_shape_rule : layer_descriptor_base {
    template <class In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank != 3) return false;
        else return In::dims[1] + 2 * Padding >= Window && In::dims[2] + 2 * Padding >= Window;
    }();
    template <class In>
    using expected_input = spatial_at_least<(Window > 2 * Padding ? Window - 2 * Padding : 1),
                                            (Window > 2 * Padding ? Window - 2 * Padding : 1)>;
    template <class In>
    using output_shape = shape<chw<In>::c, conv_geometry::out_extent(chw<In>::h, Window, Stride, Padding),
                               conv_geometry::out_extent(chw<In>::w, Window, Stride, Padding)>;

    template <class In>
    static pool_geometry geometry(std::size_t batch) {
        pool_geometry g;
        g.n = batch; g.c = In::dims[0]; g.h = In::dims[1]; g.w = In::dims[2];
        g.kh = g.kw = Window; g.stride_h = g.stride_w = Stride; g.pad_h = g.pad_w = Padding;
        g.p = conv_geometry::out_extent(g.h, Window, Stride, Padding);
        g.q = conv_geometry::out_extent(g.w, Window, Stride, Padding);
        return g;
    }
};
}  // namespace detail

template <std::size_t Window, std::size_t Stride = Window, std::size_t Padding = 0>
struct max_pool : detail::pool_shape_rule<Window, Stride, Padding> {
    static_assert(Window > 0 && Stride > 0, "lamina::max_pool needs a positive window and stride");
    static_assert(Padding * 2 < Window + 1, "lamina::max_pool: padding must be at most half the window");
    static std::string name() { return "max_pool<" + std::to_string(Window) + (Stride != Window ? ",s" + std::to_string(Stride) : std::string()) + ">"; }

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
        using rule = detail::pool_shape_rule<Window, Stride, Padding>;
        static constexpr std::size_t out_size = rule::template output_shape<In>::size;

    public:
        using context = typename Backend::context;
        static constexpr double flops_per_sample = double(out_size) * Window * Window;
        static constexpr auto traits = graph::leaf_traits{}.no_input();  // backward routes dy through the saved argmax
        /// The winning input cell of every output, from forward_train to backward.
        std::size_t saved_bytes(std::size_t batch) const { return batch * out_size * sizeof(std::int32_t); }

        void forward(const context& c, const node_io<T>& io) const {
            Backend::max_pool_forward(c, rule::template geometry<In>(io.batch), io.x[0], io.y,
                                      static_cast<std::int32_t*>(nullptr));
        }
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t) {
            Backend::max_pool_forward(c, rule::template geometry<In>(io.batch), io.x[0], io.y,
                                      io.template saved_as<std::int32_t>());
        }
        void backward(const context& c, const node_io<T>& io) {
            if (io.dx[0])
                Backend::max_pool_backward(c, rule::template geometry<In>(io.batch), io.dy,
                                           static_cast<const std::int32_t*>(io.template saved_as<std::int32_t>()),
                                           io.dx[0]);
        }
    };
};

template <std::size_t Window, std::size_t Stride = Window, std::size_t Padding = 0>
struct avg_pool : detail::pool_shape_rule<Window, Stride, Padding> {
    static_assert(Window > 0 && Stride > 0, "lamina::avg_pool needs a positive window and stride");
    static std::string name() { return "avg_pool<" + std::to_string(Window) + (Stride != Window ? ",s" + std::to_string(Stride) : std::string()) + ">"; }

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
        using rule = detail::pool_shape_rule<Window, Stride, Padding>;

    public:
        using context = typename Backend::context;
        static constexpr double flops_per_sample =
            double(rule::template output_shape<In>::size) * Window * Window;
        static constexpr auto traits = graph::leaf_traits{}.no_input();

        void forward(const context& c, const node_io<T>& io) const {
            Backend::avg_pool_forward(c, rule::template geometry<In>(io.batch), io.x[0], io.y);
        }
        void backward(const context& c, const node_io<T>& io) {
            if (io.dx[0]) Backend::avg_pool_backward(c, rule::template geometry<In>(io.batch), io.dy, io.dx[0]);
        }
    };
};

}  // namespace lamina
