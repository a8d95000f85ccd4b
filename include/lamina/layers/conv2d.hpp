// lamina: 2-D convolution (cross-correlation, as in every framework), NCHW activations,
// weights [K][C/groups][R][S] as in PyTorch's Conv2d. Kernel size, stride, padding, dilation
// and groups are template arguments, so the backend sees compile-time-fixed geometry per layer.
//
//   conv2d<64, 3, 1, 1>                                    3x3, padding 1
//   conv2d<64, 3, 1, 2, init::he_normal, false, 2>         3x3 taps 2 apart (a 5x5 field), no bias
//   conv2d<64, 3, 1, 1, init::glorot_uniform, true, 1, 4>  4 groups of 16 filters, each on C/4 channels
//   depthwise_conv2d<3, 1, 1>                              one 3x3 filter per channel (groups = C)
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include "../core/geometry.hpp"
#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

/// Expected-shape description for diagnostics: a rank-3 (C, H, W) input whose channel count
/// C divides by the given group count (grouped convolutions).
template <std::size_t Groups>
struct channels_divisible_by {};

namespace conv2d_detail {
/// Whether Backend's conv kernels take the compile-time conv_shape tag (lamina's backends
/// do); other backends are called with the runtime geometry alone.
template <class Backend, class T, class Shape, class = void>
struct takes_shape : std::false_type {};
template <class Backend, class T, class Shape>
struct takes_shape<Backend, T, Shape,
                   std::void_t<decltype(Backend::conv2d_forward(
                       std::declval<const typename Backend::context&>(), std::declval<const conv_geometry&>(),
                       std::declval<const T*>(), std::declval<const T*>(), std::declval<const T*>(), std::declval<T*>(),
                       std::declval<T*>(), Shape{}))>> : std::true_type {};

/// The summary's geometry suffix: ",s2,p1,d2,g4" with the defaults left out.
inline std::string suffix(std::size_t stride, std::size_t padding, std::size_t dilation, std::size_t groups) {
    return (stride != 1 ? ",s" + std::to_string(stride) : std::string()) +
           (padding != 0 ? ",p" + std::to_string(padding) : std::string()) +
           (dilation != 1 ? ",d" + std::to_string(dilation) : std::string()) +
           (groups != 1 ? ",g" + std::to_string(groups) : std::string());
}

/// The smallest spatial extent a convolution with this (dilated) kernel extent and padding
/// can take.
constexpr std::size_t min_extent(std::size_t span, std::size_t padding) {
    return span > 2 * padding ? span - 2 * padding : 1;
}
}  // namespace conv2d_detail

/// Filters output channels, Kernel x Kernel taps Dilation apart, Groups channel groups (the
/// input's channels and Filters must divide by Groups; filter k reads only the channels of its
/// group k / (Filters / Groups)).
template <std::size_t Filters, std::size_t Kernel, std::size_t Stride = 1, std::size_t Padding = 0,
          class Init = init::glorot_uniform, bool Bias = true, std::size_t Dilation = 1, std::size_t Groups = 1>
struct conv2d : layer_descriptor_base {
    static_assert(Filters > 0 && Kernel > 0 && Stride > 0, "lamina::conv2d needs positive filters, kernel and stride");
    static_assert(Dilation > 0 && Groups > 0, "lamina::conv2d needs positive dilation and groups");
    static_assert(Filters % Groups == 0, "lamina::conv2d: the filter count must be divisible by the groups");
    /// Extent of the dilated kernel: Dilation * (Kernel - 1) + 1.
    static constexpr std::size_t span = Dilation * (Kernel - 1) + 1;

    static std::string name() {
        return "conv2d<" + std::to_string(Filters) + "," + std::to_string(Kernel) + "x" + std::to_string(Kernel) +
               conv2d_detail::suffix(Stride, Padding, Dilation, Groups) + ">";
    }

    template <class In>
    static constexpr bool groups_fit = [] {
        if constexpr (In::rank != 3) return true;
        else return In::dims[0] % Groups == 0;
    }();
    template <class In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank != 3) return false;
        else return groups_fit<In> && In::dims[1] + 2 * Padding >= span && In::dims[2] + 2 * Padding >= span;
    }();
    template <class In>
    using expected_input =
        std::conditional_t<groups_fit<In>,
                           spatial_at_least<conv2d_detail::min_extent(span, Padding), conv2d_detail::min_extent(span, Padding)>,
                           channels_divisible_by<Groups>>;
    template <class In>
    using output_shape = shape<Filters, conv_geometry::out_extent(chw<In>::h, Kernel, Stride, Padding, Dilation),
                               conv_geometry::out_extent(chw<In>::w, Kernel, Stride, Padding, Dilation)>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t C = In::dims[0], H = In::dims[1], W = In::dims[2];
        static constexpr std::size_t CG = C / Groups, KG = Filters / Groups;  // channels, filters per group
        static constexpr std::size_t P = conv_geometry::out_extent(H, Kernel, Stride, Padding, Dilation);
        static constexpr std::size_t Q = conv_geometry::out_extent(W, Kernel, Stride, Padding, Dilation);
        static constexpr std::size_t weight_count = Filters * CG * Kernel * Kernel;
        static constexpr std::size_t parameter_count = weight_count + (Bias ? Filters : 0);
        static constexpr double flops_per_sample = 2.0 * Filters * CG * Kernel * Kernel * P * Q;

        static conv_geometry geometry(std::size_t batch) {
            conv_geometry g;
            g.n = batch; g.c = C; g.h = H; g.w = W; g.k = Filters; g.r = Kernel; g.s = Kernel;
            g.stride_h = g.stride_w = Stride; g.pad_h = g.pad_w = Padding; g.p = P; g.q = Q;
            g.dilation_h = g.dilation_w = Dilation;
            g.groups = Groups;
            return g;
        }

        /// Fans count the connections each weight takes part in: an output reads CG channels
        /// x taps, an input feeds KG filters x taps. (PyTorch's fan computation uses all
        /// Filters for fan_out; with groups == 1 the two agree.)
        std::vector<tensor_spec> tensor_specs() const {
            std::vector<tensor_spec> p{
                {"weight", weight_count, CG * Kernel * Kernel, KG * Kernel * Kernel, Init::value, true}};
            if (Bias) p.push_back({"bias", Filters, CG * Kernel * Kernel, KG * Kernel * Kernel, init::kind::zeros, false});
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
        using shape_tag = conv_shape<C, H, W, Filters, Kernel, Kernel, Stride, Padding, Dilation, Groups>;
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

/// Depthwise convolution: one group per input channel (groups = C), Multiplier filters per
/// channel (filters = C * Multiplier, filter k reads channel k / Multiplier); weights
/// [C * Multiplier][1][R][S] as in PyTorch's Conv2d(C, C * M, K, groups=C). It is the
/// grouped conv2d once the input's channel count is known.
template <std::size_t Kernel, std::size_t Stride = 1, std::size_t Padding = 0, std::size_t Multiplier = 1,
          class Init = init::glorot_uniform, bool Bias = true, std::size_t Dilation = 1>
struct depthwise_conv2d : layer_descriptor_base {
    static_assert(Kernel > 0 && Stride > 0 && Multiplier > 0 && Dilation > 0,
                  "lamina::depthwise_conv2d needs positive kernel, stride, multiplier and dilation");
    template <class In>
    using conv = conv2d<chw<In>::c * Multiplier, Kernel, Stride, Padding, Init, Bias, Dilation, chw<In>::c>;
    static constexpr std::size_t span = Dilation * (Kernel - 1) + 1;

    static std::string name() {
        return "depthwise_conv2d<" + std::to_string(Kernel) + "x" + std::to_string(Kernel) +
               conv2d_detail::suffix(Stride, Padding, Dilation, 1) +
               (Multiplier != 1 ? ",m" + std::to_string(Multiplier) : std::string()) + ">";
    }
    template <class In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank != 3) return false;
        else return In::dims[1] + 2 * Padding >= span && In::dims[2] + 2 * Padding >= span;
    }();
    template <class In>
    using expected_input =
        spatial_at_least<conv2d_detail::min_extent(span, Padding), conv2d_detail::min_extent(span, Padding)>;
    template <class In>
    using output_shape = shape<chw<In>::c * Multiplier,
                               conv_geometry::out_extent(chw<In>::h, Kernel, Stride, Padding, Dilation),
                               conv_geometry::out_extent(chw<In>::w, Kernel, Stride, Padding, Dilation)>;

    template <class In, class Backend, class T>
    class impl : public conv<In>::template impl<In, Backend, T> {};
};

}  // namespace lamina
