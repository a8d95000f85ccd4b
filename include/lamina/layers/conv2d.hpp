// lamina: 2-D convolution (cross-correlation, as in every framework), NCHW activations,
// weights [K][C][R][S] as in PyTorch's Conv2d. Kernel size, stride and padding are template
// arguments, so the backend sees compile-time-fixed geometry per layer.
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include "../core/geometry.hpp"
#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

namespace conv2d_detail {
/// Whether Backend's conv kernels take the compile-time conv_shape tag (host and reference
/// do); other backends are called with the runtime geometry alone.
template <class Backend, class T, class Shape, class = void>
struct takes_shape : std::false_type {};
template <class Backend, class T, class Shape>
struct takes_shape<Backend, T, Shape,
                   std::void_t<decltype(Backend::conv2d_forward(
                       std::declval<const typename Backend::context&>(), std::declval<const conv_geometry&>(),
                       std::declval<const T*>(), std::declval<const T*>(), std::declval<const T*>(), std::declval<T*>(),
                       std::declval<T*>(), Shape{}))>> : std::true_type {};
}  // namespace conv2d_detail

template <std::size_t Filters, std::size_t Kernel, std::size_t Stride = 1, std::size_t Padding = 0,
          class Init = init::glorot_uniform, bool Bias = true>
struct conv2d : layer_descriptor_base {
    static_assert(Filters > 0 && Kernel > 0 && Stride > 0, "lamina::conv2d needs positive filters, kernel and stride");
    static std::string name() {
        return "conv2d<" + std::to_string(Filters) + "," + std::to_string(Kernel) + "x" + std::to_string(Kernel) +
               (Stride != 1 ? ",s" + std::to_string(Stride) : std::string()) +
               (Padding != 0 ? ",p" + std::to_string(Padding) : std::string()) + ">";
    }

    template <class In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank != 3) return false;
        else return In::dims[1] + 2 * Padding >= Kernel && In::dims[2] + 2 * Padding >= Kernel;
    }();
    template <class In>
    using expected_input = spatial_at_least<(Kernel > 2 * Padding ? Kernel - 2 * Padding : 1),
                                            (Kernel > 2 * Padding ? Kernel - 2 * Padding : 1)>;
    template <class In>
    using output_shape = shape<Filters, conv_geometry::out_extent(chw<In>::h, Kernel, Stride, Padding),
                               conv_geometry::out_extent(chw<In>::w, Kernel, Stride, Padding)>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t C = In::dims[0], H = In::dims[1], W = In::dims[2];
        static constexpr std::size_t P = conv_geometry::out_extent(H, Kernel, Stride, Padding);
        static constexpr std::size_t Q = conv_geometry::out_extent(W, Kernel, Stride, Padding);
        static constexpr std::size_t weight_count = Filters * C * Kernel * Kernel;
        static constexpr std::size_t parameter_count = weight_count + (Bias ? Filters : 0);
        static constexpr double flops_per_sample = 2.0 * Filters * C * Kernel * Kernel * P * Q;

        static conv_geometry geometry(std::size_t batch) {
            conv_geometry g;
            g.n = batch; g.c = C; g.h = H; g.w = W; g.k = Filters; g.r = Kernel; g.s = Kernel;
            g.stride_h = g.stride_w = Stride; g.pad_h = g.pad_w = Padding; g.p = P; g.q = Q;
            return g;
        }

        std::vector<tensor_spec> tensor_specs() const {
            std::vector<tensor_spec> p{
                {"weight", weight_count, C * Kernel * Kernel, Filters * Kernel * Kernel, Init::value, true}};
            if (Bias) p.push_back({"bias", Filters, C * Kernel * Kernel, Filters * Kernel * Kernel, init::kind::zeros, false});
            return p;
        }
        void bind(const tensor_binding<T>& b) {
            w_ = b.parameters;
            dw_ = b.gradients;
        }
        std::size_t workspace_size(std::size_t batch) const {
            return Backend::template conv2d_workspace<T>(geometry(batch));
        }

        /// The layer's compile-time shape, the trailing tag of the backend's conv kernels.
        using shape_tag = conv_shape<C, H, W, Filters, Kernel, Kernel, Stride, Padding>;
        static constexpr bool tagged = conv2d_detail::takes_shape<Backend, T, shape_tag>::value;

        void forward(const context& c, const node_io<T>& io) const {
            const T* b = Bias ? w_ + weight_count : static_cast<const T*>(nullptr);
            if constexpr (tagged)
                Backend::conv2d_forward(c, geometry(io.batch), io.x[0], static_cast<const T*>(w_), b, io.y, io.workspace,
                                        shape_tag{});
            else
                Backend::conv2d_forward(c, geometry(io.batch), io.x[0], static_cast<const T*>(w_), b, io.y, io.workspace);
        }
        template <class Sink>
        void backward(const context& c, const node_io<T>& io, Sink& sink) {
            auto g = geometry(io.batch);
            T* db = Bias ? dw_ + weight_count : static_cast<T*>(nullptr);
            if constexpr (tagged) Backend::conv2d_backward_weights(c, g, io.x[0], io.dy, dw_, db, io.workspace, shape_tag{});
            else Backend::conv2d_backward_weights(c, g, io.x[0], io.dy, dw_, db, io.workspace);
            sink.ready(static_cast<const T*>(dw_), parameter_count);
            if (!io.dx[0]) return;
            if constexpr (tagged)
                Backend::conv2d_backward_data(c, g, io.dy, static_cast<const T*>(w_), io.dx[0], io.workspace, shape_tag{});
            else Backend::conv2d_backward_data(c, g, io.dy, static_cast<const T*>(w_), io.dx[0], io.workspace);
        }

    private:
        T* w_ = nullptr;
        T* dw_ = nullptr;
    };
};

}  // namespace lamina
