// lamina: flatten (C, H, W) to a vector, and reshape to any shape of the same size. NCHW is
// already contiguous per sample, so both are views: the model gives their output the input's
// storage, and neither runs a kernel in forward or backward.
#pragma once

#include <string>

#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

namespace detail {
/// The runtime side of every view: nothing to do, the model aliases the edge.
template <class Backend, class T>
class view_impl : public node_base<Backend, T> {
public:
    using context = typename Backend::context;
    static constexpr auto traits = graph::leaf_traits{}.as_view();
    void forward(const context&, const node_io<T>&) const {}
    void backward(const context&, const node_io<T>&) {}
};
}  // namespace detail

struct flatten : layer_descriptor_base {
    static std::string name() { return "flatten"; }
    template <class In>
    using output_shape = shape<In::size>;
    template <class In, class Backend, class T>
    using impl = detail::view_impl<Backend, T>;
};

/// reshape<Dims...>: the same values seen with another shape of the same size, e.g.
/// reshape<512, 16, 16> after a dense<131072> (the VAE decoder back to a latent map).
template <std::size_t... Dims>
struct reshape : layer_descriptor_base {
    static_assert(sizeof...(Dims) >= 1, "lamina::reshape needs at least one extent");
    static std::string name() { return "reshape<" + shape<Dims...>::str().substr(1, shape<Dims...>::str().size() - 2) + ">"; }
    template <class In>
    static constexpr bool accepts = In::size == shape<Dims...>::size;
    template <class In>
    using expected_input = any_shape_of_size<shape<Dims...>::size>;
    template <class In>
    using output_shape = shape<Dims...>;
    template <class In, class Backend, class T>
    using impl = detail::view_impl<Backend, T>;
};

/// identity: passes its input through (a residual's shortcut; a placeholder).
struct identity : layer_descriptor_base {
    static std::string name() { return "identity"; }
    template <class In, class Backend, class T>
    using impl = detail::view_impl<Backend, T>;
};

}  // namespace lamina
