// lamina: composite nodes. Each is a descriptor like a layer (accepts, output shape, a node
// type), so composites nest in sequential<...> and in each other, and each is checked while
// compiling: a mismatch inside is one diagnostic naming the composite, the node and both
// shapes (composite_shape_mismatch, network/shape_check.hpp).
//
//   residual<Main, Shortcut = identity>   y = Main(x) + Shortcut(x)            (ResNet blocks)
//   branches<Merge, Paths...>             y = Merge(Path1(x), Path2(x), ...)   (Merge: concat or add)
//   repeat<N, Block>                      Block applied N times; one instantiated type
//   heads<Heads...>                       several outputs from one input; the last node of a network
//   shortcut_for<Cout, Stride, Option>    a residual's shortcut: identity, or option A or B
//
// Composites only wire: their children's leaves run in wiring order (main path, shortcut,
// join), backward in reverse, and the model plans every edge (network/memory_plan.hpp).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>

#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/flatten.hpp"
#include "../layers/merge.hpp"
#include "../layers/shortcut.hpp"
#include "chain.hpp"
#include "sequential.hpp"
#include "shape_check.hpp"

namespace lamina {

namespace detail {

/// The shape `Got` must equal `Want`; else the composite's diagnostic (and carry on with Want).
template <class Composite, class Node, class Got, class Want, bool = std::is_same_v<Got, Want>>
struct require_same_shape {
    using type = Want;
};
template <class Composite, class Node, class Got, class Want>
struct require_same_shape<Composite, Node, Got, Want, false> {
    using type = typename composite_shape_mismatch<Composite, Node, Got, Want>::type;
};

template <class Composite, class Node, class Got, class First, bool = same_spatial<Got, First>::value>
struct require_concatenable {
    using type = Got;
};
template <class Composite, class Node, class Got, class First>
struct require_concatenable<Composite, Node, Got, First, false> {
    using type = typename composite_shape_mismatch<Composite, Node, Got, First>::type;
};

template <class D, class In>
struct accepts_of : std::bool_constant<D::template accepts<In>> {};

}  // namespace detail

// ---- residual ---------------------------------------------------------------------------------

template <class Main, class Shortcut, class In, class Backend, class T>
class residual_node;

template <class Main, class Shortcut = identity>
struct residual {
    static constexpr bool is_composite = true;
    static std::string name() { return "residual<" + Main::name() + ", " + Shortcut::name() + ">"; }
    template <class In>
    static constexpr bool accepts = Main::template accepts<In> && Shortcut::template accepts<In>;
    template <class In>
    using expected_input = std::conditional_t<Main::template accepts<In>, typename Shortcut::template expected_input<In>,
                                              typename Main::template expected_input<In>>;
    template <class In>
    using output_for =
        typename detail::require_same_shape<residual, Shortcut, checked_output_t<Shortcut, In>,
                                            checked_output_t<Main, In>>::type;
    template <class In, class Backend, class T>
    using node = residual_node<Main, Shortcut, In, Backend, T>;
};

template <class Main, class Shortcut, class In, class Backend, class T>
class residual_node {
public:
    using desc = residual<Main, Shortcut>;
    using output_shape = typename desc::template output_for<In>;
    using main_type = node_t<Main, In, Backend, T>;
    using shortcut_type = node_t<Shortcut, In, Backend, T>;
    using join_type = leaf_node<add, shapes<output_shape, output_shape>, Backend, T>;
    static constexpr std::size_t outputs = 1;
    static constexpr std::size_t parameter_count = main_type::parameter_count + shortcut_type::parameter_count;
    static constexpr std::size_t state_count = main_type::state_count + shortcut_type::state_count;
    static constexpr std::size_t leaf_count = main_type::leaf_count + shortcut_type::leaf_count + 1;
    static constexpr double flops_per_sample =
        main_type::flops_per_sample + shortcut_type::flops_per_sample + join_type::flops_per_sample;

    template <class Handles>
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& p, Handles& h) {
        g.begin_composite(desc::name());
        graph::edge_id joined[2];
        main_.wire(g, in, &joined[0], p.child(0), h);
        shortcut_.wire(g, in, &joined[1], p.child(1), h);
        join_.wire(g, joined, out, p.child(2), h);
        g.end_composite();
    }
    main_type& main() noexcept { return main_; }
    shortcut_type& shortcut() noexcept { return shortcut_; }

private:
    main_type main_;
    shortcut_type shortcut_;
    join_type join_;
};

// ---- branches ---------------------------------------------------------------------------------

template <class Merge, class In, class Backend, class T, class... Paths>
class branches_node;

template <class Merge, class... Paths>
struct branches {
    static_assert(sizeof...(Paths) >= 2, "lamina::branches needs at least two paths");
    static_assert(std::is_same_v<Merge, concat> || std::is_same_v<Merge, add>,
                  "lamina::branches joins its paths with lamina::concat or lamina::add");
    static constexpr bool is_composite = true;
    static std::string name() {
        std::string s = "branches<" + Merge::name();
        ((s += ", " + Paths::name()), ...);
        return s + ">";
    }
    template <class In>
    static constexpr bool accepts = (Paths::template accepts<In> && ...);
    template <class In>
    using expected_input = In;

private:
    using first = std::tuple_element_t<0, std::tuple<Paths...>>;
    template <class In>
    using first_out = checked_output_t<first, In>;
    // every path's output checked against the first path's (the diagnostic names the path)
    template <class In, class P>
    using checked_path = typename std::conditional_t<
        std::is_same_v<Merge, add>, detail::require_same_shape<branches, P, checked_output_t<P, In>, first_out<In>>,
        detail::require_concatenable<branches, P, checked_output_t<P, In>, first_out<In>>>::type;  // only one instantiated

public:
    template <class In>
    using path_outputs = shapes<checked_path<In, Paths>...>;
    template <class In>
    using output_for = typename Merge::template output_shape<path_outputs<In>>;
    template <class In, class Backend, class T>
    using node = branches_node<Merge, In, Backend, T, Paths...>;
};

template <class Merge, class In, class Backend, class T, class... Paths>
class branches_node {
public:
    using desc = branches<Merge, Paths...>;
    using output_shape = typename desc::template output_for<In>;
    using paths_type = std::tuple<node_t<Paths, In, Backend, T>...>;
    using join_type = leaf_node<Merge, typename desc::template path_outputs<In>, Backend, T>;
    static constexpr std::size_t count = sizeof...(Paths);
    static constexpr std::size_t outputs = 1;
    static constexpr std::size_t parameter_count = (node_t<Paths, In, Backend, T>::parameter_count + ... + 0);
    static constexpr std::size_t state_count = (node_t<Paths, In, Backend, T>::state_count + ... + 0);
    static constexpr std::size_t leaf_count = (node_t<Paths, In, Backend, T>::leaf_count + ... + 1);
    static constexpr double flops_per_sample =
        (node_t<Paths, In, Backend, T>::flops_per_sample + ... + join_type::flops_per_sample);

    template <class Handles>
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& p, Handles& h) {
        g.begin_composite(desc::name());
        graph::edge_id joined[count];
        wire_paths(g, in, joined, p, h, std::make_index_sequence<count>{});
        join_.wire(g, joined, out, p.child(count), h);
        g.end_composite();
    }
    template <std::size_t I>
    auto& path() noexcept {
        return std::get<I>(paths_);
    }

private:
    template <class Handles, std::size_t... I>
    void wire_paths(graph::description& g, const graph::edge_id* in, graph::edge_id* joined, const node_path& p,
                    Handles& h, std::index_sequence<I...>) {
        (std::get<I>(paths_).wire(g, in, &joined[I], p.child(I), h), ...);
    }
    paths_type paths_;
    join_type join_;
};

// ---- repeat -----------------------------------------------------------------------------------

template <std::size_t N, class Block, class In, class Backend, class T>
class repeat_node;

template <std::size_t N, class Block>
struct repeat {
    static_assert(N >= 1, "lamina::repeat needs N >= 1");
    static constexpr bool is_composite = true;
    static std::string name() { return "repeat<" + std::to_string(N) + ", " + Block::name() + ">"; }
    template <class In>
    static constexpr bool accepts = Block::template accepts<In>;
    template <class In>
    using expected_input = typename Block::template expected_input<In>;
    /// The block must keep its input shape (so one instantiation serves every repetition).
    template <class In>
    using output_for = typename detail::require_same_shape<repeat, Block, checked_output_t<Block, In>, In>::type;
    template <class In, class Backend, class T>
    using node = repeat_node<N, Block, In, Backend, T>;
};

template <std::size_t N, class Block, class In, class Backend, class T>
class repeat_node {
public:
    using desc = repeat<N, Block>;
    using output_shape = typename desc::template output_for<In>;
    using block_type = node_t<Block, In, Backend, T>;
    static constexpr std::size_t outputs = 1;
    static constexpr std::size_t parameter_count = N * block_type::parameter_count;
    static constexpr std::size_t state_count = N * block_type::state_count;
    static constexpr std::size_t leaf_count = N * block_type::leaf_count;
    static constexpr double flops_per_sample = double(N) * block_type::flops_per_sample;

    template <class Handles>
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& p, Handles& h) {
        g.begin_composite(desc::name());
        graph::edge_id e = in[0];
        for (std::size_t i = 0; i < N; ++i) {
            graph::edge_id next;
            blocks_[i].wire(g, &e, &next, p.child(i), h);
            e = next;
        }
        out[0] = e;
        g.end_composite();
    }
    block_type& block(std::size_t i) noexcept { return blocks_[i]; }

private:
    std::array<block_type, N> blocks_;
};

// ---- shortcuts --------------------------------------------------------------------------------

/// shortcut_for<Cout, Stride, Option>: a residual block's shortcut, picked from its input
/// shape: identity when the block keeps it, else He et al.'s option A, subsample_pad
/// (shortcut_option::zero_pad, parameter-free) or option B, a strided 1x1 projection conv
/// and batch norm (shortcut_option::projection).
enum class shortcut_option { zero_pad, projection };


/// Folded: the projection's batch norm folded into its conv (network/fold_batch_norm.hpp).
template <std::size_t Cout, std::size_t Stride = 1, shortcut_option Option = shortcut_option::zero_pad,
          bool Folded = false>
struct shortcut_for {
    static constexpr bool is_composite = true;
    template <class In>
    static constexpr bool keeps = Stride == 1 && chw<In>::c == Cout;
    template <class In>
    using chosen = std::conditional_t<
        keeps<In>, identity,
        std::conditional_t<Option == shortcut_option::zero_pad, subsample_pad<Cout, Stride>,
                           std::conditional_t<Folded, sequential<conv2d<Cout, 1, Stride, 0, init::he_normal, true>>,
                                              sequential<conv2d<Cout, 1, Stride, 0, init::he_normal, false>, batch_norm>>>>;
    static std::string name() {
        return "shortcut_for<" + std::to_string(Cout) + ",s" + std::to_string(Stride) +
               (Option == shortcut_option::zero_pad ? ",A>" : ",B>");
    }
    template <class In>
    static constexpr bool accepts = In::rank == 3;
    template <class In>
    using expected_input = any_shape_of_rank<3>;
    template <class In>
    using output_for = checked_output_t<chosen<In>, In>;
    template <class In, class Backend, class T>
    using node = node_t<chosen<In>, In, Backend, T>;
};


// ---- heads ------------------------------------------------------------------------------------

template <class In, class Backend, class T, class... Heads>
class heads_node;

/// Several outputs from one input (a trunk feeding a decoder and a classifier): the last node
/// of a network; the model then has one output per head (predict_all, one loss per head).
template <class... Heads>
struct heads {
    static_assert(sizeof...(Heads) >= 2, "lamina::heads needs at least two heads");
    static constexpr bool is_composite = true;
    static std::string name() {
        std::string s = "heads<";
        std::size_t i = 0;
        ((s += (i++ ? ", " : "") + Heads::name()), ...);
        return s + ">";
    }
    template <class In>
    static constexpr bool accepts = (Heads::template accepts<In> && ...);
    template <class In>
    using expected_input = In;
    template <class In>
    using output_for = shapes<checked_output_t<Heads, In>...>;
    template <class In, class Backend, class T>
    using node = heads_node<In, Backend, T, Heads...>;
};

template <class In, class Backend, class T, class... Heads>
class heads_node {
public:
    using desc = heads<Heads...>;
    using output_shape = typename desc::template output_for<In>;
    static constexpr std::size_t outputs = sizeof...(Heads);
    static constexpr std::size_t parameter_count = (node_t<Heads, In, Backend, T>::parameter_count + ... + 0);
    static constexpr std::size_t state_count = (node_t<Heads, In, Backend, T>::state_count + ... + 0);
    static constexpr std::size_t leaf_count = (node_t<Heads, In, Backend, T>::leaf_count + ... + 0);
    static constexpr double flops_per_sample = (node_t<Heads, In, Backend, T>::flops_per_sample + ... + 0.0);

    template <class Handles>
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& p, Handles& h) {
        g.begin_composite(desc::name());
        wire_heads(g, in, out, p, h, std::make_index_sequence<outputs>{});
        g.end_composite();
    }
    template <std::size_t I>
    auto& head() noexcept {
        return std::get<I>(heads_);
    }

private:
    template <class Handles, std::size_t... I>
    void wire_heads(graph::description& g, const graph::edge_id* in, graph::edge_id* out, const node_path& p,
                    Handles& h, std::index_sequence<I...>) {
        (std::get<I>(heads_).wire(g, in, &out[I], p.child(I), h), ...);
    }
    std::tuple<node_t<Heads, In, Backend, T>...> heads_;
};

}  // namespace lamina
