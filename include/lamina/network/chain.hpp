// lamina: the runtime side of a chain of nodes (what sequential<...> becomes), and the
// mapping from descriptors to nodes.
//
// chain_of<In, Backend, T, L1, ..., Ln>::type is a nested chain_link: each link holds one node
// (a leaf, a fused leaf or a composite) and the rest of the chain, and knows the shape at its
// input. Each suffix is instantiated once and every count is a running sum, so compile time
// grows linearly with depth. A producer with an activation epilogue followed by a fusable
// activation becomes one fused_leaf_node (leaf_node.hpp) spanning two positions.
#pragma once

#include <cstddef>
#include <type_traits>
#include <vector>

#include "graph.hpp"
#include "leaf_node.hpp"
#include "shape_check.hpp"

namespace lamina {

namespace detail {

template <class D, class In, class Backend, class T, bool = is_composite<D>::value>
struct node_type {
    using type = leaf_node<D, In, Backend, T>;
};
template <class D, class In, class Backend, class T>
struct node_type<D, In, Backend, T, true> {
    using type = typename D::template node<In, Backend, T>;
};

template <class S>
struct port_count : std::integral_constant<std::size_t, 1> {};
template <class... S>
struct port_count<shapes<S...>> : std::integral_constant<std::size_t, sizeof...(S)> {};

}  // namespace detail

/// The runtime node of descriptor D on input shape In.
template <class D, class In, class Backend, class T>
using node_t = typename detail::node_type<D, In, Backend, T>::type;

/// The end of a chain: passes its input edges through.
template <class In, class Backend, class T>
class chain_end {
public:
    using input_shape = In;
    using output_shape = In;
    static constexpr std::size_t outputs = detail::port_count<In>::value;
    static constexpr std::size_t parameter_count = 0, state_count = 0, leaf_count = 0, positions = 0;
    static constexpr double flops_per_sample = 0;
    template <std::size_t I>
    using shape_at = In;

    template <class Handles>
    void wire(graph::description&, const graph::edge_id* in, graph::edge_id* out, const node_path&, std::size_t,
              Handles&) {
        for (std::size_t i = 0; i < outputs; ++i) out[i] = in[i];
    }
};

template <class In, class Head, class Tail, std::size_t Span>
class chain_link {
public:
    using input_shape = In;
    using output_shape = typename Tail::output_shape;
    static constexpr std::size_t outputs = Tail::outputs;
    static_assert(Head::outputs == 1 || Tail::positions == 0,
                  "lamina: a node with several outputs (heads<...>) must be the last node of its sequential");
    static constexpr std::size_t parameter_count = Head::parameter_count + Tail::parameter_count;
    static constexpr std::size_t state_count = Head::state_count + Tail::state_count;
    static constexpr std::size_t leaf_count = Head::leaf_count + Tail::leaf_count;
    static constexpr std::size_t positions = Span + Tail::positions;
    static constexpr double flops_per_sample = Head::flops_per_sample + Tail::flops_per_sample;

    template <class Handles>
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& parent,
              std::size_t index, Handles& h) {
        graph::edge_id mid[Head::outputs];
        head.wire(g, in, mid, parent.child(index), h);
        tail.wire(g, mid, out, parent, index + Span, h);
    }

    Head head;
    Tail tail;

private:
    template <class H, std::size_t S, class Tl>
    struct at_one {
        using type = typename Tl::template shape_at<0>;
    };
    template <class H, class Tl>
    struct at_one<H, 2, Tl> {
        using type = typename H::mid_shape;  // between a fused producer and its activation
    };
    template <std::size_t I, class Dummy = void>
    struct shape_at_impl {
        using type = typename Tail::template shape_at<I - Span>;
    };
    template <class Dummy>
    struct shape_at_impl<0, Dummy> {
        using type = In;
    };
    template <class Dummy>
    struct shape_at_impl<1, Dummy> {
        using type = typename at_one<Head, Span, Tail>::type;
    };

public:
    /// The input shape of position I of this chain (I == positions: the output).
    template <std::size_t I>
    using shape_at = typename shape_at_impl<I>::type;
};

namespace detail {

template <class In, class Backend, class T, class... Ls>
struct chain_of;

/// Do L1 (on In) and L2 fuse into one leaf? Evaluated lazily, so a layer that cannot take its
/// input reports only its own shape diagnostic.
template <class In, class Backend, class T, class L1, class L2>
struct fusable_pair {
    template <class = void>
    struct producer_fuses {
        static constexpr bool value = node_detail::fuses_activation<typename L1::template impl<In, Backend, T>>::value;
    };
    template <class = void>
    struct activation_fusable {
        static constexpr bool value = node_detail::fusable_activation<
            typename L2::template impl<checked_output_t<L1, In>, Backend, T>>::value;
    };
#if defined(LAMINA_NO_LAYER_FUSION)
    static constexpr bool value = false;
#else
    static constexpr bool value =
        std::conjunction_v<std::negation<is_composite<L1>>, std::negation<is_composite<L2>>,
                           std::bool_constant<L1::template accepts<In>>, producer_fuses<>, activation_fusable<>>;
#endif
};

template <bool Fuse, class In, class Backend, class T, class L, class... Ls>
struct chain_pick {
    using type = chain_link<In, node_t<L, In, Backend, T>,
                            typename chain_of<checked_output_t<L, In>, Backend, T, Ls...>::type, 1>;
};
template <class In, class Backend, class T, class L1, class L2, class... Ls>
struct chain_pick<true, In, Backend, T, L1, L2, Ls...> {
    using head = fused_leaf_node<L1, L2, In, Backend, T>;
    using type = chain_link<In, head, typename chain_of<typename head::out_shape, Backend, T, Ls...>::type, 2>;
};

template <class In, class Backend, class T, class... Ls>
struct fuse_first : std::false_type {};
template <class In, class Backend, class T, class L1, class L2, class... Ls>
struct fuse_first<In, Backend, T, L1, L2, Ls...> : std::bool_constant<fusable_pair<In, Backend, T, L1, L2>::value> {};

template <class In, class Backend, class T, class... Ls>
struct chain_of {
    using type = chain_end<In, Backend, T>;
};
template <class In, class Backend, class T, class L, class... Ls>
struct chain_of<In, Backend, T, L, Ls...> {
    using type = typename chain_pick<fuse_first<In, Backend, T, L, Ls...>::value, In, Backend, T, L, Ls...>::type;
};

/// The output shape of layers Ls on In (shape-checked), without building nodes.
template <class In, class... Ls>
struct chain_shape {
    using type = In;
};
template <class In, class L, class... Ls>
struct chain_shape<In, L, Ls...> {
    using type = typename chain_shape<checked_output_t<L, In>, Ls...>::type;
};

}  // namespace detail

template <class In, class Backend, class T, class... Ls>
using chain_of_t = typename detail::chain_of<In, Backend, T, Ls...>::type;

}  // namespace lamina
