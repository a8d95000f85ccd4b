// lamina: the multi-scale CNN (M-CNN) of Godinez et al. 2017 ("A multi-scale convolutional
// neural network for phenotyping high-content cellular images"), as trained at scale on CPUs by
// Datta et al. 2019: BBBC021 microscopy images, 1024x1280x3, 13 classes.
//
//   models::mcnn<13>                      the paper's network: 42,577,261 parameters
//   models::mcnn<13, 3, 128, 128>         the same layer table on 128x128 images
//
// Layer table (s = scale, F = filters):
//   7 branches, s = 1, 2, 4, 8, 16, 32, 64 with F = 16, 16, 16, 32, 32, 32, 64:
//     pre-pool s x s (none for s = 1), 3x [conv5x5 F, SAME, stride 1, bias + relu],
//     max-pool (64/s) x (64/s) (none for s = 64): every branch ends at H/64 x W/64
//   concat (208 channels), conv1x1 1024 + relu, max-pool 2, FC 512 + relu, FC Classes
// Softmax is in the loss (loss::softmax_cross_entropy). Xavier (Glorot uniform) initialisation,
// zero biases, no batch norm, no dropout. At 1024x1280 the branches meet at 16x20x208 and FC
// 512 reads 8x10x1024 = 81,920 values: 98.5% of the parameters are in that layer.
//
// Training recipe (Datta et al.): label smoothing 0.1, L2 5e-5, Nesterov momentum 0.9, linear
// warm-up over 5 epochs then linear decay, the linear scaling rule:
//   lamina::trainer fit{net, lamina::loss::softmax_cross_entropy{0.1},
//                       lamina::optim::sgd{lamina::schedule::linear_scaling(base, base_batch, batch), 0.9, true, 5e-5},
//                       lamina::schedule::warmup_then<lamina::schedule::polynomial>{{5, 0}, {epochs - 5, 1, 0}}};
//
// The pre-pooling kind is a parameter (PrePool: max_pool or avg_pool); the published table
// does not say which (lamina's default is max-pooling, as the post-pools).
#pragma once

#include <cstddef>

#include "../layers/activations.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/dense.hpp"
#include "../layers/flatten.hpp"
#include "../layers/input.hpp"
#include "../layers/merge.hpp"
#include "../layers/pooling.hpp"
#include "../network/composites.hpp"
#include "../network/sequential.hpp"

namespace lamina::models {

/// The factor by which every branch reduces the image: branches meet at H/64 x W/64.
inline constexpr std::size_t mcnn_reduction = 64;

/// conv5x5 with F filters, SAME padding, stride 1, bias, Glorot-uniform (Xavier).
template <std::size_t F>
using mcnn_conv = conv2d<F, 5, 1, 2>;

namespace detail {
template <std::size_t S, std::size_t F, template <std::size_t, std::size_t, std::size_t> class PrePool,
          bool = (S == 1), bool = (S == mcnn_reduction)>
struct mcnn_branch_def {  // pre-pool s, convs, post-pool 64/s
    using type = sequential<PrePool<S, S, 0>, mcnn_conv<F>, relu, mcnn_conv<F>, relu, mcnn_conv<F>, relu,
                            max_pool<mcnn_reduction / S, mcnn_reduction / S, 0>>;
};
template <std::size_t S, std::size_t F, template <std::size_t, std::size_t, std::size_t> class PrePool>
struct mcnn_branch_def<S, F, PrePool, true, false> {  // scale 1: full resolution, no pre-pool
    using type = sequential<mcnn_conv<F>, relu, mcnn_conv<F>, relu, mcnn_conv<F>, relu,
                            max_pool<mcnn_reduction, mcnn_reduction, 0>>;
};
template <std::size_t S, std::size_t F, template <std::size_t, std::size_t, std::size_t> class PrePool>
struct mcnn_branch_def<S, F, PrePool, false, true> {  // scale 64: already at the meeting size
    using type = sequential<PrePool<S, S, 0>, mcnn_conv<F>, relu, mcnn_conv<F>, relu, mcnn_conv<F>, relu>;
};
}  // namespace detail

/// One branch: the image at 1/S of its size, three conv5x5 of F filters, then pooled to 1/64.
template <std::size_t S, std::size_t F, template <std::size_t, std::size_t, std::size_t> class PrePool = max_pool>
using mcnn_branch = typename detail::mcnn_branch_def<S, F, PrePool>::type;

/// The seven branches joined by channel concatenation: 16*3 + 32*3 + 64 = 208 channels.
template <template <std::size_t, std::size_t, std::size_t> class PrePool = max_pool>
using mcnn_scales = branches<concat,
                             mcnn_branch<1, 16, PrePool>, mcnn_branch<2, 16, PrePool>, mcnn_branch<4, 16, PrePool>,
                             mcnn_branch<8, 32, PrePool>, mcnn_branch<16, 32, PrePool>, mcnn_branch<32, 32, PrePool>,
                             mcnn_branch<64, 64, PrePool>>;

template <std::size_t Classes = 13, std::size_t Channels = 3, std::size_t H = 1024, std::size_t W = 1280,
          template <std::size_t, std::size_t, std::size_t> class PrePool = max_pool>
struct mcnn_def {
    static_assert(H % mcnn_reduction == 0 && W % mcnn_reduction == 0,
                  "lamina::models::mcnn: height and width must be multiples of 64 (every branch meets at H/64 x W/64)");
    static_assert(H >= 2 * mcnn_reduction && W >= 2 * mcnn_reduction,
                  "lamina::models::mcnn: height and width must be at least 128 (the max-pool 2 after the 1x1 conv "
                  "needs a 2x2 map at 1/64)");
    static_assert(Classes >= 2, "lamina::models::mcnn: at least two classes");
    using type = sequential<input<Channels, H, W>,
                            mcnn_scales<PrePool>,
                            conv2d<1024, 1>, relu,
                            max_pool<2>,
                            flatten,
                            dense<512>, relu,
                            dense<Classes>>;
};

/// M-CNN on Channels x H x W images (H and W multiples of 64, at least 128).
template <std::size_t Classes = 13, std::size_t Channels = 3, std::size_t H = 1024, std::size_t W = 1280,
          template <std::size_t, std::size_t, std::size_t> class PrePool = max_pool>
using mcnn = typename mcnn_def<Classes, Channels, H, W, PrePool>::type;

}  // namespace lamina::models
