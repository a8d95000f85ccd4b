// lamina: the HEP CNN of Kurth et al., "Deep Learning at 15PF" (SC17): signal (RPV SUSY) against
// background (QCD multi-jet) events, from calorimeter images of 3 channels (energy, EM
// fraction, track count).
//
//   models::hep_cnn<>                          224x224x3, 128 filters, 2 classes: 594,178 parameters
//   models::hep_cnn<2, 3, 64, 64, 32, 10>      64x64 images, 32 filters, dropout 10%
//
// Layer table (the public benchmark code, NERSC/hep_cnn_benchmark on GitHub, "scaling
// improvements" variant):
//   4x [conv3x3 F, SAME, bias + relu, max-pool 2, dropout]
//   conv3x3 F, SAME, bias + relu, global average pool, FC Classes
// Softmax is in the loss (loss::softmax_cross_entropy). That code initialises with He's rule
// and sets the dropout probability to 0.5 in its configurations; both are the defaults here.
// 224 -> 112 -> 56 -> 28 -> 14: the last conv runs at 14x14 and the global average pool makes
// the classifier independent of the input size.
#pragma once

#include <cstddef>

#include "../layers/activations.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/dense.hpp"
#include "../layers/dropout.hpp"
#include "../layers/global_avg_pool.hpp"
#include "../layers/input.hpp"
#include "../layers/pooling.hpp"
#include "../network/sequential.hpp"

namespace lamina::models {

/// conv3x3 with F filters (SAME, bias, He-normal).
template <std::size_t F>
using hep_cnn_conv = conv2d<F, 3, 1, 1, init::he_normal>;

/// One of the four downsampling blocks: conv3x3 + relu, max-pool 2, dropout.
template <std::size_t F, int DropoutPercent>
using hep_cnn_block = sequential<hep_cnn_conv<F>, relu, max_pool<2>, dropout_p<DropoutPercent>>;

template <std::size_t Classes = 2, std::size_t Channels = 3, std::size_t H = 224, std::size_t W = 224,
          std::size_t Filters = 128, int DropoutPercent = 50>
struct hep_cnn_def {
    static_assert(H >= 16 && W >= 16, "lamina::models::hep_cnn: four max-pools of 2 need images of at least 16x16");
    static_assert(DropoutPercent >= 0 && DropoutPercent < 100,
                  "lamina::models::hep_cnn: the dropout percentage must be in [0, 100)");
    static_assert(Classes >= 2 && Filters >= 1, "lamina::models::hep_cnn: at least two classes and one filter");
    using type = sequential<input<Channels, H, W>,
                            hep_cnn_block<Filters, DropoutPercent>,
                            hep_cnn_block<Filters, DropoutPercent>,
                            hep_cnn_block<Filters, DropoutPercent>,
                            hep_cnn_block<Filters, DropoutPercent>,
                            hep_cnn_conv<Filters>, relu,
                            global_avg_pool,
                            dense<Classes, init::he_normal>>;
};

/// The HEP CNN on Channels x H x W images: Filters per conv, DropoutPercent after each pool.
template <std::size_t Classes = 2, std::size_t Channels = 3, std::size_t H = 224, std::size_t W = 224,
          std::size_t Filters = 128, int DropoutPercent = 50>
using hep_cnn = typename hep_cnn_def<Classes, Channels, H, W, Filters, DropoutPercent>::type;

}  // namespace lamina::models
