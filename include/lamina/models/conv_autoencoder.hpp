// lamina: a small fully convolutional autoencoder (the "fcae" benchmark row of issue 11): strided
// 3x3 convolutions down, transposed 3x3 convolutions back up, trained with MSE against its input.
//
//   models::conv_autoencoder<>                 1x128x128, filters 32-64-128-256: 775,425 parameters
//   models::conv_autoencoder<1, 64, 64>        the same layer table on 64x64 images
//
// Layer table (C x H x W input, H and W multiples of 16):
//   encoder  4x [conv3x3 stride 2 pad 1 + bias, relu] with 32, 64, 128, 256 filters: H -> H/16
//   decoder  4x [transposed conv3x3 stride 2 pad 1 output padding 1 + bias] to 128, 64, 32, C
//            channels (each doubles H and W), relu between them, sigmoid at the end
// The sigmoid keeps reconstructions in [0, 1]: feed images scaled to [0, 1]. Glorot-uniform
// (Xavier) initialisation, zero biases. Put the images in the dataset's targets (loss::mse).
#pragma once

#include <cstddef>

#include "../layers/activations.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/conv_transpose2d.hpp"
#include "../layers/input.hpp"
#include "../network/sequential.hpp"

namespace lamina::models {

/// conv3x3, stride 2, padding 1: halves H and W (H even).
template <std::size_t F>
using autoencoder_down = sequential<conv2d<F, 3, 2, 1>, relu>;

/// transposed conv3x3, stride 2, padding 1, output padding 1: (H - 1) * 2 - 2 + 3 + 1 = 2H.
template <std::size_t F>
using autoencoder_up = conv_transpose2d<F, 3, 2, 1, 1>;

template <std::size_t Channels = 1, std::size_t H = 128, std::size_t W = 128>
struct conv_autoencoder_def {
    static_assert(Channels >= 1, "lamina::models::conv_autoencoder: at least one channel");
    static_assert(H % 16 == 0 && W % 16 == 0 && H >= 16 && W >= 16,
                  "lamina::models::conv_autoencoder: height and width must be multiples of 16 (four stride-2 "
                  "convolutions, undone exactly by four transposed ones)");
    using type = sequential<input<Channels, H, W>,
                            autoencoder_down<32>, autoencoder_down<64>, autoencoder_down<128>, autoencoder_down<256>,
                            autoencoder_up<128>, relu,
                            autoencoder_up<64>, relu,
                            autoencoder_up<32>, relu,
                            autoencoder_up<Channels>, sigmoid>;
};

/// The convolutional autoencoder on Channels x H x W images in [0, 1].
template <std::size_t Channels = 1, std::size_t H = 128, std::size_t W = 128>
using conv_autoencoder = typename conv_autoencoder_def<Channels, H, W>::type;

// Parameters at one channel, by hand (conv: Cin*Cout*9 + Cout; transposed: the same with Cin
// the layer's input): encoder 1*32*9+32 = 320, 32*64*9+64 = 18,496, 64*128*9+128 = 73,856,
// 128*256*9+256 = 295,168 (387,840); decoder 256*128*9+128 = 295,040, 128*64*9+64 = 73,792,
// 64*32*9+32 = 18,464, 32*1*9+1 = 289 (387,585); total 775,425.
static_assert(conv_autoencoder<>::output_shape::size == 128 * 128,
              "lamina::models::conv_autoencoder: the reconstruction has the input's size");

}  // namespace lamina::models
