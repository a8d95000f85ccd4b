// lamina: 2-D transposed convolution with PyTorch's ConvTranspose2d semantics (no groups, no
// dilation): every input cell adds its value times the kernel into the output, Stride apart;
// the result is cropped by Padding on each side and extended by OutputPadding at the bottom
// and right, so an H x W input gives
//     ((H - 1) * Stride - 2 * Padding + Kernel + OutputPadding) x (same for W).
// Weights are [C_in][C_out][R][S] as in PyTorch; OutputPadding < Stride.
//
//   conv_transpose2d<16, 3, 2, 1, 1>     16 filters, 3x3, stride 2: 8x8 -> 16x16
//
// No kernels of its own. The "adjoint" convolution maps this layer's output shape
// (C_out, Ho, Wo) back to its input shape (C_in, H, W) with the same kernel, stride and
// padding, and its weights [K = C_in][C = C_out][R][S] are exactly this layer's tensor
// (Ho + 2P - K = (H - 1) S + OutputPadding, so its output extent is H again). Then
//   forward          y  = conv2d_backward_data(adjoint, dy := x) + bias
//   input gradient   dx = conv2d_forward(adjoint, x := dy)
//   weight gradient  dw = conv2d_backward_weights(adjoint, x := dy, dy := x)
// and every backend's conv paths serve it, chosen per layer at compile time through the
// adjoint's conv_shape tag where the backend takes one.
#pragma once

#include <string>

#include "../core/geometry.hpp"
#include "../network/shape_check.hpp"
#include "conv2d.hpp"
#include "layer_concept.hpp"

namespace lamina {

namespace conv_transpose2d_detail {
/// Output extent of a transposed convolution (0 when cropping leaves nothing).
constexpr std::size_t out_extent(std::size_t in, std::size_t kernel, std::size_t stride, std::size_t pad,
                                 std::size_t output_pad) {
    const std::size_t full = (in - 1) * stride + kernel + output_pad;
    return full > 2 * pad ? full - 2 * pad : 0;
}
/// The smallest input extent with a non-empty output.
constexpr std::size_t min_extent(std::size_t kernel, std::size_t stride, std::size_t pad, std::size_t output_pad) {
    const std::size_t have = kernel + output_pad, need = 2 * pad + 1;
    return have >= need ? 1 : 1 + (need - have + stride - 1) / stride;
}
}  // namespace conv_transpose2d_detail

template <std::size_t Filters, std::size_t Kernel, std::size_t Stride = 1, std::size_t Padding = 0,
          std::size_t OutputPadding = 0, class Init = init::glorot_uniform, bool Bias = true>
struct conv_transpose2d : layer_descriptor_base {
    static_assert(Filters > 0 && Kernel > 0 && Stride > 0,
                  "lamina::conv_transpose2d needs positive filters, kernel and stride");
    static_assert(OutputPadding < Stride,
                  "lamina::conv_transpose2d: the output padding must be smaller than the stride (as in PyTorch)");

    static std::string name() {
        return "conv_transpose2d<" + std::to_string(Filters) + "," + std::to_string(Kernel) + "x" +
               std::to_string(Kernel) + conv2d_detail::suffix(Stride, Padding, 1, 1) +
               (OutputPadding != 0 ? ",op" + std::to_string(OutputPadding) : std::string()) + ">";
    }

    static constexpr std::size_t min_in = conv_transpose2d_detail::min_extent(Kernel, Stride, Padding, OutputPadding);
    template <class In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank != 3) return false;
        else return In::dims[1] >= min_in && In::dims[2] >= min_in;
    }();
    template <class In>
    using expected_input = spatial_at_least<min_in, min_in>;
    template <class In>
    using output_shape =
        shape<Filters, conv_transpose2d_detail::out_extent(chw<In>::h, Kernel, Stride, Padding, OutputPadding),
              conv_transpose2d_detail::out_extent(chw<In>::w, Kernel, Stride, Padding, OutputPadding)>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t C = In::dims[0], H = In::dims[1], W = In::dims[2];
        static constexpr std::size_t HO = conv_transpose2d_detail::out_extent(H, Kernel, Stride, Padding, OutputPadding);
        static constexpr std::size_t WO = conv_transpose2d_detail::out_extent(W, Kernel, Stride, Padding, OutputPadding);
        static constexpr std::size_t weight_count = C * Filters * Kernel * Kernel;
        static constexpr std::size_t parameter_count = weight_count + (Bias ? Filters : 0);
        // Every input cell scatters into Filters x Kernel x Kernel outputs (cropped ones included).
        static constexpr double flops_per_sample = 2.0 * C * Filters * Kernel * Kernel * H * W;

        /// The adjoint convolution: from (Filters, HO, WO) to (C, H, W).
        static conv_geometry adjoint(std::size_t batch) {
            conv_geometry g;
            g.n = batch; g.c = Filters; g.h = HO; g.w = WO; g.k = C; g.r = Kernel; g.s = Kernel;
            g.stride_h = g.stride_w = Stride; g.pad_h = g.pad_w = Padding; g.p = H; g.q = W;
            return g;
        }
        using shape_tag = conv_shape<Filters, HO, WO, C, Kernel, Kernel, Stride, Padding>;
        static_assert(!accepts<In> || (shape_tag::p == H && shape_tag::q == W),
                      "lamina::conv_transpose2d: internal error: the adjoint convolution does not map back");
        static constexpr bool tagged = conv2d_detail::takes_shape<Backend, T, shape_tag>::value;

        /// Fans as for conv2d, with this layer's input and output channels: an output reads C
        /// channels x taps, an input feeds Filters x taps. (PyTorch reads fan_in off the
        /// weight's second dimension, which for ConvTranspose2d is the output channels.)
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
            return Backend::template conv2d_workspace<T>(adjoint(batch));
        }

        void forward(const context& c, const node_io<T>& io) const {
            const conv_geometry g = adjoint(io.batch);
            if constexpr (tagged)
                Backend::conv2d_backward_data(c, g, io.x[0], static_cast<const T*>(w_), io.y, io.workspace, shape_tag{});
            else
                Backend::conv2d_backward_data(c, g, io.x[0], static_cast<const T*>(w_), io.y, io.workspace);
            if (Bias) Backend::add_channel_bias(c, io.y, static_cast<const T*>(w_ + weight_count), io.batch, Filters, plane_);
        }
        template <class Sink>
        void backward(const context& c, const node_io<T>& io, Sink& sink) {
            const conv_geometry g = adjoint(io.batch);
            if constexpr (tagged)
                Backend::conv2d_backward_weights(c, g, io.dy, io.x[0], dw_, static_cast<T*>(nullptr), io.workspace,
                                                 shape_tag{});
            else
                Backend::conv2d_backward_weights(c, g, io.dy, io.x[0], dw_, static_cast<T*>(nullptr), io.workspace);
            if (Bias) Backend::channel_bias_grad(c, io.dy, dw_ + weight_count, io.batch, Filters, plane_);
            sink.ready(static_cast<const T*>(dw_), parameter_count);
            if (!io.dx[0]) return;
            if constexpr (tagged)
                Backend::conv2d_forward(c, g, io.dy, static_cast<const T*>(w_), static_cast<const T*>(nullptr), io.dx[0],
                                        io.workspace, shape_tag{});
            else
                Backend::conv2d_forward(c, g, io.dy, static_cast<const T*>(w_), static_cast<const T*>(nullptr), io.dx[0],
                                        io.workspace);
        }

    private:
        T* w_ = nullptr;
        T* dw_ = nullptr;
        // HO * WO read at run time: with the compile-time constant inlined, g++ 12 warns
        // (-Waggressive-loop-optimizations, a false positive) on the host's bias-gradient sum.
        std::size_t plane_ = HO * WO;
    };
};

}  // namespace lamina
