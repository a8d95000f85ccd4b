// lamina: the first element of every network: the shape of one sample.
#pragma once

#include <cstddef>

#include "../core/shape.hpp"

namespace lamina {

/// input<1, 28, 28> for a (C, H, W) image, input<784> for a vector.
template <std::size_t... Dims>
struct input {
    using shape_type = shape<Dims...>;
    static_assert(sizeof...(Dims) == 1 || sizeof...(Dims) == 3,
                  "lamina::input takes one extent (a vector) or three (channels, height, width)");
};

template <class T>
struct is_input : std::false_type {};
template <std::size_t... D>
struct is_input<input<D...>> : std::true_type {};

}  // namespace lamina
