// lamina: the ResNet family, written as the papers' layer tables.
//
//   models::cifar_resnet<20, 10>          He et al. 2016, section 4.2: 3 stages of n basic blocks
//                                         (16, 32, 64 channels), depth 6n + 2; option A
//                                         shortcuts by default (269,722 parameters for ResNet-20)
//   models::resnet50<1000>                ResNet-50 v1.5 (torchvision): bottlenecks 3-4-6-3, the
//                                         stride on the 3x3 conv (25,557,032 parameters)
//
// Convolutions have no bias (batch norm follows each), He-normal initialisation; batch norm
// statistics are running state. The input shape and class count are parameters, e.g.
// cifar_resnet<20, 10, 1, 32, 32> for MNIST padded to 32x32.
#pragma once

#include <cstddef>

#include "../layers/activations.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/dense.hpp"
#include "../layers/global_avg_pool.hpp"
#include "../layers/input.hpp"
#include "../layers/pooling.hpp"
#include "../network/composites.hpp"
#include "../network/sequential.hpp"

namespace lamina::models {

/// conv KxK with C filters, no bias (a batch norm follows), He-normal init.
template <std::size_t C, std::size_t K, std::size_t Stride = 1, std::size_t Pad = K / 2>
using conv_bn = conv2d<C, K, Stride, Pad, init::he_normal, false>;

// ---- CIFAR ResNets ----------------------------------------------------------------------------

/// Two 3x3 convolutions with batch norm, added to the shortcut, then relu.
template <std::size_t C, std::size_t Stride = 1, shortcut_option Shortcut = shortcut_option::zero_pad>
using basic_block = sequential<
    residual<sequential<conv_bn<C, 3, Stride>, batch_norm, relu,
                        conv_bn<C, 3>, batch_norm>,
             shortcut_for<C, Stride, Shortcut>>,
    relu>;

namespace detail {
template <std::size_t C, std::size_t N, std::size_t Stride, shortcut_option S>
struct basic_stage {
    using type = sequential<basic_block<C, Stride, S>, repeat<N - 1, basic_block<C, 1, S>>>;
};
template <std::size_t C, std::size_t Stride, shortcut_option S>
struct basic_stage<C, 1, Stride, S> {
    using type = sequential<basic_block<C, Stride, S>>;
};
}  // namespace detail

/// N basic blocks of C channels, the first with the stride (ResNet's stage).
template <std::size_t C, std::size_t N, std::size_t Stride, shortcut_option S = shortcut_option::zero_pad>
using basic_stage = typename detail::basic_stage<C, N, Stride, S>::type;

template <std::size_t Depth, std::size_t Classes = 10, std::size_t Channels = 3, std::size_t H = 32, std::size_t W = 32,
          shortcut_option Shortcut = shortcut_option::zero_pad>
struct cifar_resnet_def {
    static_assert(Depth >= 8 && (Depth - 2) % 6 == 0, "lamina::models::cifar_resnet: depth must be 6n + 2 (20, 32, 44, 56, 110)");
    static constexpr std::size_t n = (Depth - 2) / 6;
    using type = sequential<input<Channels, H, W>,
                            conv_bn<16, 3>, batch_norm, relu,
                            basic_stage<16, n, 1, Shortcut>,
                            basic_stage<32, n, 2, Shortcut>,
                            basic_stage<64, n, 2, Shortcut>,
                            global_avg_pool,
                            dense<Classes>>;
};

template <std::size_t Depth, std::size_t Classes = 10, std::size_t Channels = 3, std::size_t H = 32, std::size_t W = 32,
          shortcut_option Shortcut = shortcut_option::zero_pad>
using cifar_resnet = typename cifar_resnet_def<Depth, Classes, Channels, H, W, Shortcut>::type;

template <std::size_t Classes = 10, std::size_t Channels = 3, std::size_t H = 32, std::size_t W = 32,
          shortcut_option S = shortcut_option::zero_pad>
using resnet20 = cifar_resnet<20, Classes, Channels, H, W, S>;
template <std::size_t Classes = 10, std::size_t Channels = 3, std::size_t H = 32, std::size_t W = 32,
          shortcut_option S = shortcut_option::zero_pad>
using resnet32 = cifar_resnet<32, Classes, Channels, H, W, S>;
template <std::size_t Classes = 10, std::size_t Channels = 3, std::size_t H = 32, std::size_t W = 32,
          shortcut_option S = shortcut_option::zero_pad>
using resnet56 = cifar_resnet<56, Classes, Channels, H, W, S>;

// ---- ResNet-50 v1.5 ---------------------------------------------------------------------------

/// 1x1 (Mid), 3x3 (Mid, the stride), 1x1 (Out), each with batch norm; projection shortcut
/// where the shape changes. ZeroGamma: the last batch norm starts at gamma = 0.
template <std::size_t Mid, std::size_t Out, std::size_t Stride = 1, bool ZeroGamma = false>
using bottleneck = sequential<
    residual<sequential<conv_bn<Mid, 1>, batch_norm, relu,
                        conv_bn<Mid, 3, Stride>, batch_norm, relu,
                        conv_bn<Out, 1>, std::conditional_t<ZeroGamma, batch_norm_zero_gamma, batch_norm>>,
             shortcut_for<Out, Stride, shortcut_option::projection>>,
    relu>;

template <std::size_t Mid, std::size_t Out, std::size_t N, std::size_t Stride, bool ZeroGamma>
using bottleneck_stage = sequential<bottleneck<Mid, Out, Stride, ZeroGamma>, repeat<N - 1, bottleneck<Mid, Out, 1, ZeroGamma>>>;

template <std::size_t Classes = 1000, bool ZeroGamma = false, std::size_t H = 224, std::size_t W = 224>
using resnet50 = sequential<input<3, H, W>,
                            conv_bn<64, 7, 2, 3>, batch_norm, relu, max_pool<3, 2, 1>,
                            bottleneck_stage<64, 256, 3, 1, ZeroGamma>,
                            bottleneck_stage<128, 512, 4, 2, ZeroGamma>,
                            bottleneck_stage<256, 1024, 6, 2, ZeroGamma>,
                            bottleneck_stage<512, 2048, 3, 2, ZeroGamma>,
                            global_avg_pool,
                            dense<Classes>>;

}  // namespace lamina::models
