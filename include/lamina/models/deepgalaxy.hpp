// lamina: DeepGalaxy (Cai et al. 2020, arXiv:2010.11630), written as the paper's layer table:
// a fully convolutional autoencoder (FCAE) of galaxy-merger images, a variational autoencoder
// (VAE) on its latent map, and a classifier head on the latent map.
//
//   FCAE encoder   VGG-style groups: Convs x (conv3x3 Width + ReLU), then max-pool 2; the last
//                  group's output is the "3D latent map" (16x16x512 from 512x512 in the paper)
//   centre         2x (conv3x3 CentreWidth, batch norm, ReLU)
//   decoder        per stage: nearest upsample x2, 2x (conv3x3 Width, batch norm, ReLU); then
//                  conv3x3 to 1 channel and a sigmoid (images in [0, 1])
//   classifier     on the latent map: conv1x1 ClassifierChannels + ReLU, flatten, dense
//                  ClassifierHidden + ReLU, dense Classes (logits)
//   VAE            on the flattened latent map (D = C*H*W values): dense 256, tanh, dense 256,
//                  dense 2Z (mu and logvar, Z = 16); z = mu + exp(logvar / 2) eps with
//                  Beta * KL(q || N(0, I)) added to the loss (vae_sampling; the public code
//                  computes the KL but never adds it, and samples with exp(logvar)); the
//                  decoder mirrors the encoder: dense 256, dense 256, tanh, dense D, reshape
//
// Sizes are template parameters: config<Size, widths<...>, convs<...>, CentreWidth,
// widths<...>, Classes, ...>; the depth is the number of encoder groups (the decoder has as
// many stages, so the reconstruction has the input's size). models::deepgalaxy::paper<Classes>
// is the paper's 512x512 VGG16 configuration. Each config gives the network types
//
//   fcae             image -> reconstruction                       (loss: MAE, the paper's)
//   fcae_classifier  image -> heads<reconstruction, class logits>  (loss::per_output: MAE + CE)
//   encoder          image -> latent map                           (features for the VAE)
//   vae              latent map -> latent map, adds its KL         (loss: MSE; Beta is VaeBeta)
//   vae_encoder      latent map -> [mu, logvar]                    (z for the similarity search)
//   classifier       latent map -> class logits                    (the staged recipe's third stage)
//
// An autoencoder's targets are its inputs: put the images (or latent maps) in the dataset's
// targets, beside the class label for fcae_classifier ([image | label] per sample). The
// staged recipe trains fcae, then vae on encoder's output, then classifier;
// copy_leading_parameters moves a trained network's leading layers into a shorter network
// with the same leading layers (fcae or fcae_classifier -> encoder, vae -> vae_encoder).
// nearest_in_latent finds similar images by L2 distance in z.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <ratio>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../layers/activations.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/dense.hpp"
#include "../layers/flatten.hpp"
#include "../layers/input.hpp"
#include "../layers/pooling.hpp"
#include "../layers/upsample.hpp"
#include "../layers/vae_sampling.hpp"
#include "../network/composites.hpp"
#include "../network/sequential.hpp"

namespace lamina::models::deepgalaxy {

/// A list of channel widths, one per encoder group or decoder stage.
template <std::size_t... W>
struct widths {
    static constexpr std::size_t count = sizeof...(W);
};
/// The number of 3x3 convolutions in each encoder group.
template <std::size_t... N>
struct convs {
    static constexpr std::size_t count = sizeof...(N);
};

/// conv3x3 with padding 1 (shape-preserving), He-uniform initialisation.
template <std::size_t C, bool Bias>
using conv3x3 = conv2d<C, 3, 1, 1, init::he_uniform, Bias>;
/// conv3x3 (no bias: a batch norm follows), batch norm, ReLU.
template <std::size_t C>
using conv_bn_relu = sequential<conv3x3<C, false>, batch_norm, relu>;

namespace detail {
template <std::size_t Width, std::size_t Convs>
struct vgg_group {
    static_assert(Convs >= 1, "lamina::models::deepgalaxy: an encoder group needs at least one convolution");
    using type = sequential<conv3x3<Width, true>, relu, repeat<Convs - 1, sequential<conv3x3<Width, true>, relu>>, max_pool<2>>;
};
template <std::size_t Width>
struct vgg_group<Width, 1> {
    using type = sequential<conv3x3<Width, true>, relu, max_pool<2>>;
};

template <class Widths, class Convs>
struct encoder_def;
template <std::size_t... W, std::size_t... N>
struct encoder_def<widths<W...>, convs<N...>> {
    static_assert(sizeof...(W) == sizeof...(N),
                  "lamina::models::deepgalaxy: the encoder needs one convolution count per group width");
    static_assert(sizeof...(W) >= 1, "lamina::models::deepgalaxy: the encoder needs at least one group");
    using type = sequential<typename vgg_group<W, N>::type...>;
};

template <class Widths>
struct decoder_def;
template <std::size_t... W>
struct decoder_def<widths<W...>> {
    using type = sequential<sequential<upsample_nearest<2>, conv_bn_relu<W>, conv_bn_relu<W>>...,
                            conv3x3<1, true>, sigmoid>;
};

template <class S>
struct input_for;
template <std::size_t... D>
struct input_for<shape<D...>> {
    using type = input<D...>;
};
template <class S>
struct reshape_for;
template <std::size_t... D>
struct reshape_for<shape<D...>> {
    using type = reshape<D...>;
};
}  // namespace detail

/// One VGG encoder group: Convs x (conv3x3 Width + ReLU), max-pool 2.
template <std::size_t Width, std::size_t Convs>
using vgg_group = typename detail::vgg_group<Width, Convs>::type;

template <std::size_t Size, class EncoderWidths, class EncoderConvs, std::size_t CentreWidth, class DecoderWidths,
          std::size_t Classes, std::size_t Latent = 16, std::size_t VaeHidden = 256, std::size_t ClassifierChannels = 32,
          std::size_t ClassifierHidden = 256, class VaeBeta = std::ratio<1>>
struct config {
    static constexpr std::size_t depth = EncoderWidths::count;
    static_assert(DecoderWidths::count == depth,
                  "lamina::models::deepgalaxy: the decoder needs one stage per encoder group (the reconstruction "
                  "then has the input's size)");
    static_assert(depth < 20 && Size % (std::size_t(1) << depth) == 0,
                  "lamina::models::deepgalaxy: the image size must divide by 2^depth (one max-pool per group)");
    static_assert(Classes >= 2 && Latent >= 1, "lamina::models::deepgalaxy: need at least 2 classes and 1 latent");
    static constexpr std::size_t image_size = Size;
    static constexpr std::size_t classes = Classes;
    static constexpr std::size_t latent = Latent;  // Z, the VAE's code size

    using image_input = input<1, Size, Size>;
    using encoder_layers = typename detail::encoder_def<EncoderWidths, EncoderConvs>::type;
    using latent_shape = checked_output_t<encoder_layers, shape<1, Size, Size>>;  // (C, H, W) of the latent map
    static constexpr std::size_t latent_map_size = latent_shape::size;            // D
    using latent_input = typename detail::input_for<latent_shape>::type;

    using centre_layers = sequential<conv_bn_relu<CentreWidth>, conv_bn_relu<CentreWidth>>;
    using decoder_layers = typename detail::decoder_def<DecoderWidths>::type;
    using reconstruction_head = sequential<centre_layers, decoder_layers>;
    using classifier_head = sequential<conv2d<ClassifierChannels, 1, 1, 0, init::he_uniform, true>, relu, flatten,
                                       dense<ClassifierHidden, init::he_uniform>, relu, dense<Classes>>;
    using vae_encoder_layers = sequential<dense<VaeHidden>, tanh, dense<VaeHidden>, dense<2 * Latent>>;
    using vae_decoder_layers = sequential<dense<VaeHidden>, dense<VaeHidden>, tanh, dense<latent_map_size>>;

    // ---- the networks ------------------------------------------------------------------------
    using fcae = sequential<image_input, encoder_layers, reconstruction_head>;
    using fcae_classifier = sequential<image_input, encoder_layers, heads<reconstruction_head, classifier_head>>;
    using encoder = sequential<image_input, encoder_layers>;
    using vae = sequential<latent_input, flatten, vae_encoder_layers, vae_sampling<VaeBeta>, vae_decoder_layers,
                           typename detail::reshape_for<latent_shape>::type>;
    using vae_encoder = sequential<latent_input, flatten, vae_encoder_layers>;
    using classifier = sequential<latent_input, classifier_head>;
};

/// The paper's configuration: 512x512 images, the VGG16 encoder (13 convolutions in 5 groups,
/// 64-128-256-512-512) to a 16x16x512 latent map, centre 512, decoder 256-128-64-32-16, Z = 16.
/// (The paper's classifier is a separate network, unverified in form; this head is lamina's.)
template <std::size_t Classes, class VaeBeta = std::ratio<1>>
using paper = config<512, widths<64, 128, 256, 512, 512>, convs<2, 2, 3, 3, 3>, 512, widths<256, 128, 64, 32, 16>, Classes,
                     16, 256, 32, 256, VaeBeta>;

/// Copies the parameters and running state of `to`'s layers from the same leading layers of
/// `from` (a trained fcae_classifier into an encoder, a vae into a vae_encoder). Checks that
/// every tensor of `to` has the name (position and layer) and size of `from`'s at that place.
template <class From, class To>
void copy_leading_parameters(const From& from, To& to) {
    auto check = [](const auto& fs, const auto& ts, const char* what) {
        if (ts.size() > fs.size())
            throw shape_error(std::string("lamina: copy_leading_parameters: the target has more ") + what + " tensors (" +
                              std::to_string(ts.size()) + ") than the source (" + std::to_string(fs.size()) + ")");
        for (std::size_t i = 0; i < ts.size(); ++i)
            if (ts[i].name != fs[i].name || ts[i].count != fs[i].count || ts[i].offset != fs[i].offset)
                throw shape_error(std::string("lamina: copy_leading_parameters: ") + what + " tensor " + std::to_string(i) +
                                  " is '" + ts[i].name + "' (" + std::to_string(ts[i].count) + " values) in the target but '" +
                                  fs[i].name + "' (" + std::to_string(fs[i].count) + ") in the source");
    };
    check(from.parameter_segments(), to.parameter_segments(), "parameter");
    check(from.state_segments(), to.state_segments(), "running-state");
    if (To::parameter_count) {
        auto p = from.get_parameters();
        p.resize(To::parameter_count);
        to.set_parameters(p);
    }
    if (To::state_count) {
        auto s = from.get_state();
        s.resize(To::state_count);
        to.set_state(s);
    }
}

/// Indices of the k codes nearest to `query` by L2 distance (ascending; ties by index) among
/// `count` codes of `size` values (row-major), skipping index `exclude` (the query itself
/// when it is one of them; pass count or more to skip nothing). Returns (index, distance).
template <class T>
std::vector<std::pair<std::size_t, double>> nearest_in_latent(const T* codes, std::size_t count, std::size_t size,
                                                              const T* query, std::size_t k,
                                                              std::size_t exclude = static_cast<std::size_t>(-1)) {
    if (size == 0) throw argument_error("lamina: nearest_in_latent: codes of size 0");
    if (count && (!codes || !query)) throw argument_error("lamina: nearest_in_latent: null pointer");
    std::vector<std::pair<std::size_t, double>> all;
    all.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        if (i == exclude) continue;
        double d = 0;
        for (std::size_t j = 0; j < size; ++j) {
            const double e = static_cast<double>(codes[i * size + j]) - static_cast<double>(query[j]);
            d += e * e;
        }
        all.emplace_back(i, std::sqrt(d));
    }
    const std::size_t n = std::min(k, all.size());
    std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(), [](const auto& a, const auto& b) {
        return a.second < b.second || (a.second == b.second && a.first < b.first);
    });
    all.resize(n);
    return all;
}

}  // namespace lamina::models::deepgalaxy
