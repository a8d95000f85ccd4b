// lamina: a network as the model sees it at run time: leaves (the nodes that compute) joined
// by edges (activation tensors). Composites only wire; what runs is the leaves, in the order
// they were wired, forward in that order and backward in reverse.
//
// The description is built once per model (`wire`), from the nested composite types. The
// memory planner (network/memory_plan.hpp) turns it into one arena per batch size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace lamina::graph {

using edge_id = std::uint32_t;
inline constexpr edge_id no_edge = 0xFFFFFFFFu;

/// How a leaf uses memory; the planner relies on these to alias and free buffers.
struct leaf_traits {
    bool view = false;                  // y is x reinterpreted (flatten, reshape, identity): no storage, no work
    bool in_place_forward = false;      // y may overwrite x[0]; backward then reads y where it would read x[0]
    bool in_place_backward = false;     // dx[0] may overwrite dy (an elementwise gradient)
    bool gradient_passthrough = false;  // dx[i] equals dy for every input (a sum): may alias; the leaf skips dx[i] == dy
    bool needs_input = true;            // backward reads x
    bool needs_output = false;          // backward reads y
    bool accumulates = false;           // honours node_io::accumulate itself (else the model adds through a temporary)

    // A layer states its traits in one line, e.g.
    //   static constexpr auto traits = graph::leaf_traits{}.no_input().accumulating();
    constexpr leaf_traits as_view() const { return with(&leaf_traits::view).no_input(); }
    constexpr leaf_traits in_place() const { return with(&leaf_traits::in_place_forward); }
    constexpr leaf_traits in_place_gradient() const { return with(&leaf_traits::in_place_backward); }
    constexpr leaf_traits passthrough() const { return with(&leaf_traits::gradient_passthrough); }
    constexpr leaf_traits no_input() const { return with(&leaf_traits::needs_input, false); }
    constexpr leaf_traits reads_output() const { return with(&leaf_traits::needs_output); }
    constexpr leaf_traits accumulating() const { return with(&leaf_traits::accumulates); }

private:
    constexpr leaf_traits with(bool leaf_traits::*flag, bool value = true) const {
        leaf_traits t = *this;
        t.*flag = value;
        return t;
    }
};

/// Sizes a leaf needs per batch size, asked when a plan is made (never on the hot path).
class leaf_sizes {
public:
    virtual ~leaf_sizes() = default;
    virtual std::size_t saved_bytes(std::size_t batch) const = 0;
    virtual std::size_t workspace_elements(std::size_t batch) const = 0;
};

struct leaf {
    std::string name;                // as in the summary, e.g. "conv2d<16,3x3,p1>"
    std::string path;                // position in the nested node lists, e.g. "4.0.1"
    std::string output_shape;        // e.g. "(16,32,32)"
    unsigned depth = 0;              // nesting depth inside composites (for the summary)
    std::vector<edge_id> inputs;
    edge_id output = no_edge;
    leaf_traits traits;
    const leaf_sizes* sizes = nullptr;
    double flops_per_sample = 0;     // forward FLOPs of one sample
    std::size_t parameters = 0;      // trainable scalars
    std::size_t parameter_offset = 0;  // first trainable scalar in the flat buffer
    std::size_t state = 0;           // running-state scalars
};

struct edge {
    std::size_t size = 0;                 // elements per sample
    std::int64_t producer = -1;           // leaf index; -1: the network input
    std::vector<std::uint32_t> consumers;  // leaf index per consuming port (a leaf reading it twice is listed twice)
    std::int32_t output = -1;             // which network output this edge is, -1 if none
};

/// A summary row: a leaf, or the heading of a composite.
struct row {
    bool is_leaf = true;
    std::uint32_t leaf = 0;  // when is_leaf
    std::string heading;     // when not
    unsigned depth = 0;
};

class description {
public:
    edge_id add_input(std::size_t per_sample) {
        if (!edges_.empty()) throw error("lamina: internal error: a network has one input edge");
        edges_.push_back(edge{per_sample, -1, {}, -1});
        return 0;
    }

    /// Registers the next leaf in execution order; returns its index. Its output edge is a new
    /// edge of `out_size` elements per sample, or, for a view, its input edge.
    std::uint32_t add_leaf(leaf l, std::size_t out_size) {
        const auto id = static_cast<std::uint32_t>(leaves_.size());
        for (edge_id e : l.inputs) {
            if (e >= edges_.size()) throw error("lamina: internal error: leaf '" + l.name + "' reads an unknown edge");
            if (!l.traits.view) edges_[e].consumers.push_back(id);  // a view's readers read the edge itself
        }
        if (l.traits.view) {
            if (l.inputs.size() != 1 || edges_[l.inputs[0]].size != out_size)
                throw error("lamina: internal error: view '" + l.name + "' must keep its input's size");
            l.output = l.inputs[0];
        } else {
            l.output = static_cast<edge_id>(edges_.size());
            edges_.push_back(edge{out_size, static_cast<std::int64_t>(id), {}, -1});
        }
        rows_.push_back(row{true, id, {}, depth_});
        leaves_.push_back(std::move(l));
        return id;
    }

    void mark_output(edge_id e, std::int32_t index) {
        if (edges_.at(e).output >= 0)
            throw error("lamina: internal error: an edge is already network output " +
                        std::to_string(edges_[e].output));
        edges_[e].output = index;
        if (static_cast<std::size_t>(index) >= outputs_.size()) outputs_.resize(static_cast<std::size_t>(index) + 1, no_edge);
        outputs_[static_cast<std::size_t>(index)] = e;
    }

    /// Composites open and close a level of the summary.
    void begin_composite(std::string heading) {
        rows_.push_back(row{false, 0, std::move(heading), depth_});
        ++depth_;
    }
    void end_composite() { --depth_; }
    unsigned depth() const noexcept { return depth_; }

    const std::vector<leaf>& leaves() const noexcept { return leaves_; }
    std::vector<leaf>& leaves() noexcept { return leaves_; }
    const std::vector<edge>& edges() const noexcept { return edges_; }
    const std::vector<edge_id>& outputs() const noexcept { return outputs_; }
    const std::vector<row>& rows() const noexcept { return rows_; }
    std::size_t input_size() const noexcept { return edges_.empty() ? 0 : edges_[0].size; }

private:
    std::vector<leaf> leaves_;
    std::vector<edge> edges_;
    std::vector<edge_id> outputs_;
    std::vector<row> rows_;
    unsigned depth_ = 0;
};

}  // namespace lamina::graph
