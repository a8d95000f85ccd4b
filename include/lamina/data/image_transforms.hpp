// lamina: transforms of image datasets kept as rows of (C, H, W) values.
//
//   auto padded = lamina::data::pad_images(mnist.train, 1, 28, 28, 2);   // 28x28 -> 32x32, zeros
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "dataset.hpp"

namespace lamina::data {

/// A copy of `d` whose images (channels x height x width per sample) get `pad` rows and
/// columns of `value` on every side; targets are copied unchanged.
template <class T>
dataset<T> pad_images(dataset_view<T> d, std::size_t channels, std::size_t height, std::size_t width, std::size_t pad,
                      T value = T(0)) {
    if (channels == 0 || height == 0 || width == 0 || d.sample_size != channels * height * width)
        throw shape_error("lamina: pad_images: samples hold " + std::to_string(d.sample_size) + " values, not " +
                          std::to_string(channels) + " x " + std::to_string(height) + " x " + std::to_string(width));
    const std::size_t H = height + 2 * pad, W = width + 2 * pad, out = channels * H * W;
    std::vector<T> in(d.count * out, value);
    for (std::size_t i = 0; i < d.count; ++i)
        for (std::size_t c = 0; c < channels; ++c)
            for (std::size_t y = 0; y < height; ++y) {
                const T* src = d.sample(i) + (c * height + y) * width;
                T* dst = in.data() + i * out + (c * H + y + pad) * W + pad;
                for (std::size_t x = 0; x < width; ++x) dst[x] = src[x];
            }
    std::vector<T> t(d.targets, d.targets + d.count * d.target_size);
    return dataset<T>(std::move(in), std::move(t), out, d.target_size);
}

}  // namespace lamina::data
