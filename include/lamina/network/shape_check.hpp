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
/// Any input with exactly this many elements (reshape).
template <std::size_t Size>
struct any_shape_of_size {};
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

/// Inside a composite (residual, branches, repeat), two parts that must agree do not: the
/// diagnostic shows the composite, the node whose output does not fit, its shape and the
/// shape it had to match, e.g. composite_shape_mismatch<lamina::residual<...>,
/// lamina::conv2d<32, 3>, lamina::shape<32, 6, 6>, lamina::shape<16, 8, 8>>.
template <class Composite, class Node, class Shape, class MustMatch>
struct composite_shape_mismatch {
    static_assert(sizeof(Composite) == 0,
                  "lamina: shape mismatch inside a composite (1st argument): the node (2nd argument) produces the "
                  "3rd argument, which must match the 4th");
    using type = MustMatch;
};

namespace detail {
template <class D, class = void>
struct is_composite : std::false_type {};
template <class D>
struct is_composite<D, std::enable_if_t<D::is_composite>> : std::true_type {};

/// A leaf's shape rule is `output_shape<In>`; a composite's is `output_for<In>` (so that a
/// network type can also name its own `output_shape`).
template <class Layer, class In, bool = is_composite<Layer>::value>
struct rule_output {
    using type = typename Layer::template output_shape<In>;
};
template <class Layer, class In>
struct rule_output<Layer, In, true> {
    using type = typename Layer::template output_for<In>;
};
}  // namespace detail

/// Output shape of Layer on In, after checking that Layer accepts In. On a mismatch the
/// diagnostic comes from layer_shape_mismatch and compilation carries on with In as the
/// output so that only one error is printed.
template <class Layer, class In, bool Ok = Layer::template accepts<In>>
struct checked_output {
    using type = typename detail::rule_output<Layer, In>::type;
};
template <class Layer, class In>
struct checked_output<Layer, In, false> {
    using type = typename layer_shape_mismatch<Layer, In, typename Layer::template expected_input<In>>::type;
};

template <class Layer, class In>
using checked_output_t = typename checked_output<Layer, In>::type;

}  // namespace lamina
