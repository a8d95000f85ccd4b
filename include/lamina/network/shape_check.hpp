// lamina: compile-time shape checks with diagnostics that name the layer and both shapes.
//
// When a layer cannot take its input, the compiler instantiates
//   lamina::layer_shape_mismatch<Layer, GivenShape, ExpectedShape>
// and fails the static_assert inside it; g++ and clang print that instantiation, so the
// error shows e.g. `layer_shape_mismatch<lamina::dense<10>, lamina::shape<1, 28, 28>,
// lamina::any_shape_of_rank<1>>` right next to the message.
#pragma once

#include <cstddef>
#include <type_traits>

#include "../core/shape.hpp"

namespace lamina {

/// Expected-shape descriptions used in diagnostics.
template <std::size_t Rank>
struct any_shape_of_rank {};
/// A rank-3 (C, H, W) input whose H and W are at least the given extents.
template <std::size_t MinH, std::size_t MinW>
struct spatial_at_least {};
/// A rank-3 input whose H and W are divisible by the given window (pooling without padding).
template <std::size_t DivH, std::size_t DivW>
struct spatial_divisible_by {};

template <class Layer, class Given, class Expected>
struct layer_shape_mismatch {
    static_assert(sizeof(Layer) == 0,
                  "lamina: layer shape mismatch: the layer (1st argument of layer_shape_mismatch) cannot "
                  "take the given input shape (2nd argument); it expects the 3rd argument");
    using type = Given;
};

/// Output shape of Layer on In, after checking that Layer accepts In. On a mismatch the
/// diagnostic comes from layer_shape_mismatch and compilation carries on with In as the
/// output so that only one error is printed.
template <class Layer, class In, bool Ok = Layer::template accepts<In>>
struct checked_output {
    using type = typename Layer::template output_shape<In>;
};
template <class Layer, class In>
struct checked_output<Layer, In, false> {
    using type = typename layer_shape_mismatch<Layer, In, typename Layer::template expected_input<In>>::type;
};

template <class Layer, class In>
using checked_output_t = typename checked_output<Layer, In>::type;

}  // namespace lamina
