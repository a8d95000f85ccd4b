// lamina: sequential networks as types.
//
//   using lenet5 = lamina::sequential<lamina::input<1, 28, 28>, lamina::conv2d<6, 5>, lamina::relu, ...>;
//   lenet5::model<lamina::host> net{lamina::seed{42}};
//
// Every node's input and output shape is deduced while compiling; a node that cannot take
// its input fails to compile with a diagnostic naming it and both shapes. A sequential that
// starts with input<...> is a network (it has ::model); one without is a chain to nest in
// composites (residual<sequential<conv2d<...>, batch_norm, relu>, ...>). The batch size is a
// runtime value: buffers are planned once per batch size (network/model.hpp).
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>

#include "../core/backend_fwd.hpp"
#include "../layers/input.hpp"
#include "chain.hpp"
#include "shape_check.hpp"

namespace lamina {

template <class... Ts>
struct type_list {};

template <class Net, class Backend, class T>
class network_model;

namespace detail {

template <class... Ls>
struct seq_split {
    using input_shape = void;
    using layers = type_list<Ls...>;
};
template <std::size_t... D, class... Ls>
struct seq_split<input<D...>, Ls...> {
    using input_shape = shape<D...>;
    using layers = type_list<Ls...>;
};

template <class In, class Backend, class T, class List>
struct chain_from;
template <class In, class Backend, class T, class... Ls>
struct chain_from<In, Backend, T, type_list<Ls...>> {
    using type = chain_of_t<In, Backend, T, Ls...>;
};
template <class In, class List>
struct shape_from;
template <class In, class... Ls>
struct shape_from<In, type_list<Ls...>> {
    using type = typename chain_shape<In, Ls...>::type;
};
template <class List>
struct names_of;
template <class... Ls>
struct names_of<type_list<Ls...>> {
    static std::string get() {
        std::string s;
        ((s += (s.empty() ? "" : ", ") + Ls::name()), ...);
        return s;
    }
    static constexpr std::size_t count = sizeof...(Ls);
};

template <bool IsNetwork, class Parts>
struct network_output {
    using type = void;
};
template <class Parts>
struct network_output<true, Parts> {
    using type = typename shape_from<typename Parts::input_shape, typename Parts::layers>::type;
};

}  // namespace detail

/// The runtime node of a nested sequential: its chain, under its own heading in the summary.
template <class Desc, class In, class Backend, class T>
class sequential_node {
public:
    using chain = typename detail::chain_from<In, Backend, T, typename Desc::parts::layers>::type;
    using output_shape = typename chain::output_shape;
    static constexpr std::size_t outputs = chain::outputs;
    static constexpr std::size_t parameter_count = chain::parameter_count;
    static constexpr std::size_t state_count = chain::state_count;
    static constexpr std::size_t leaf_count = chain::leaf_count;
    static constexpr double flops_per_sample = chain::flops_per_sample;

    template <class Handles>
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& p, Handles& h) {
        g.begin_composite(Desc::name());
        chain_.wire(g, in, out, p, 0, h);
        g.end_composite();
    }
    /// The top of a network: no heading, positions numbered from 0 (as in lamina 0.1).
    template <class Handles>
    void wire_top(graph::description& g, const graph::edge_id* in, graph::edge_id* out, Handles& h) {
        chain_.wire(g, in, out, node_path{}, 0, h);
    }
    chain& nodes() noexcept { return chain_; }
    const chain& nodes() const noexcept { return chain_; }

private:
    chain chain_;
};

template <class... Ls>
struct sequential {
    using parts = detail::seq_split<Ls...>;
    static constexpr bool is_composite = true;
    static constexpr bool is_network = !std::is_void_v<typename parts::input_shape>;
    static_assert(detail::names_of<typename parts::layers>::count >= 1,
                  "lamina::sequential needs at least one node (after its input<...>)");

    static std::string name() { return "sequential<" + detail::names_of<typename parts::layers>::get() + ">"; }
    /// The node names, comma separated (checkpoints store them as the architecture).
    static std::string layer_names() { return detail::names_of<typename parts::layers>::get(); }
    /// Number of nodes in the list (input<...> not counted).
    static constexpr std::size_t length = detail::names_of<typename parts::layers>::count;

    // descriptor protocol (as a node inside a composite)
    template <class In>
    static constexpr bool accepts = !is_network || std::is_same_v<In, typename parts::input_shape>;
    template <class In>
    using expected_input = std::conditional_t<is_network, typename parts::input_shape, In>;
    template <class In>
    using output_for = typename detail::shape_from<In, typename parts::layers>::type;
    template <class In, class Backend, class T>
    using node = sequential_node<sequential, In, Backend, T>;

    // as a network
    using input_shape = typename parts::input_shape;
    using output_shape = typename detail::network_output<is_network, parts>::type;  // void for a bare chain
    template <class Backend = host, class T = float>
    using model = network_model<sequential, Backend, T>;
};

}  // namespace lamina

#include "model.hpp"
