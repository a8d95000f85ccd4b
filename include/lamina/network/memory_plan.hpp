// lamina: the memory plan of a network for one batch size: every activation edge, every
// gradient edge, every saved-for-backward block and every accumulation temporary gets an
// offset in one arena, and blocks whose lifetimes do not overlap share memory.
//
// Time runs over the leaves: forward of leaf l at l, the loss at L, backward of leaf l at
// 2L - l. A value lives from its producer's forward to its last reader (a consumer's forward,
// a consumer's backward when it needs its input, the producer's backward when it needs its
// output, the end for network outputs); a gradient lives from its first writer's backward
// (the loss, for outputs) to its producer's backward. Aliasing, decided from the leaves' traits:
//   - views (flatten, reshape) are their input edge;
//   - an in-place leaf's output shares its input's storage when that input has no other
//     reader, is not the network input or an output, and its producer does not read it back;
//   - an elementwise or pass-through gradient shares its output gradient's storage when the
//     leaf is the only writer of that input gradient (one input per leaf, so that a shared
//     gradient buffer is a chain of leaves that each read it and then rewrite it).
// Input gradients with several writers: the first writer (in backward order) overwrites, the
// others accumulate; a leaf that cannot accumulate writes a temporary that the model adds.
// Placement is greedy, largest block first, at the lowest offset free for its lifetime.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "graph.hpp"

namespace lamina::graph {

/// Where a pointer comes from when a leaf runs.
enum space : std::uint8_t {
    space_none = 0,        // no pointer (a gradient nobody wants)
    space_arena = 1,       // the plan's arena
    space_input = 2,       // the caller's network input
    space_input_grad = 3,  // the caller's buffer for the network input's gradient
    space_output0 = 4,     // the caller's buffer for output k is space_output0 + k (inference)
};
inline constexpr std::size_t max_outputs = 8;
inline constexpr std::size_t space_count = space_output0 + max_outputs;

struct ref {
    std::uint8_t space = space_none;
    std::size_t offset = 0;  // elements from the start of that space
};

struct port_plan {
    ref x, dx;
    ref temp;                 // accumulation temporary (arena) when the leaf cannot accumulate
    bool accumulate = false;  // dx already holds another writer's contribution
    bool first_input_writer = false;  // first writer of the network input's gradient: accumulates
                                      // when the caller asks backward to add into its buffer
};

struct leaf_plan {
    std::uint32_t first_port = 0;
    ref y, dy, saved;
    bool in_place = false;  // y shares x[0]'s storage
};

struct memory_plan {
    std::size_t batch = 0;
    bool training = false;
    std::size_t arena_elements = 0;      // the arena, in elements of the model's scalar type
    std::size_t workspace_elements = 0;  // the largest leaf workspace (one buffer, reused by every leaf)
    std::size_t unshared_elements = 0;   // the arena if no block shared memory (for the summary)
    std::size_t value_elements = 0, gradient_elements = 0, saved_elements = 0, temp_elements = 0;
    std::vector<leaf_plan> leaves;
    std::vector<port_plan> ports;
    std::vector<ref> outputs, output_grads;
};

namespace detail {

struct union_find {
    std::vector<std::uint32_t> parent;
    explicit union_find(std::size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0u); }
    std::uint32_t find(std::uint32_t a) {
        while (parent[a] != a) a = parent[a] = parent[parent[a]];
        return a;
    }
    void join(std::uint32_t a, std::uint32_t b) { parent[find(b)] = find(a); }
};

struct block {
    std::size_t size = 0, start = 0, end = 0, offset = 0;
};

/// Greedy placement: largest first, each at the lowest offset not used by a block alive at
/// the same time. Returns the arena size. Without sharing every block gets its own memory.
inline std::size_t place(std::vector<block>& blocks, bool share = true) {
    if (!share) {
        std::size_t top = 0;
        for (auto& b : blocks) {
            b.offset = top;
            top += b.size;
        }
        return top;
    }
    std::vector<std::size_t> order(blocks.size());
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        if (blocks[a].size != blocks[b].size) return blocks[a].size > blocks[b].size;
        return blocks[a].start < blocks[b].start;
    });
    std::vector<std::size_t> placed;
    std::vector<std::pair<std::size_t, std::size_t>> busy;  // [offset, offset + size) of overlapping blocks
    std::size_t top = 0;
    for (std::size_t i : order) {
        block& b = blocks[i];
        busy.clear();
        for (std::size_t j : placed) {
            const block& o = blocks[j];
            if (o.start <= b.end && b.start <= o.end) busy.emplace_back(o.offset, o.offset + o.size);
        }
        std::sort(busy.begin(), busy.end());
        std::size_t at = 0;
        for (auto& [lo, hi] : busy) {
            if (lo >= at + b.size) break;
            at = std::max(at, hi);
        }
        b.offset = at;
        top = std::max(top, at + b.size);
        placed.push_back(i);
    }
    return top;
}

class planner {
public:
    planner(const description& d, std::size_t batch, std::size_t element_bytes, bool share)
        : d_(d), batch_(batch), align_(std::max<std::size_t>(1, 64 / element_bytes)), element_bytes_(element_bytes),
          L_(d.leaves().size()), share_(share) {}

    memory_plan training(bool input_gradient) {
        const auto& leaves = d_.leaves();
        const auto& edges = d_.edges();
        const std::size_t E = edges.size();
        memory_plan p = skeleton(true);
        union_find val(E), grad(E);
        std::vector<bool> in_place(L_, false);

        for (std::size_t l = 0; l < L_; ++l) {
            const leaf& lf = leaves[l];
            if (lf.traits.view) continue;
            if (!share_) continue;
            if (lf.traits.in_place_forward && can_alias_value(lf.inputs[0], lf.output, /*training=*/true)) {
                val.join(lf.inputs[0], lf.output);
                in_place[l] = true;
            }
            // At most one input gradient per leaf joins the output gradient's storage: each
            // shared gradient buffer is then a path read and rewritten by one leaf after another
            // in backward order (two paths sharing it would overwrite each other's dy).
            for (std::size_t i = 0; i < lf.inputs.size(); ++i) {
                const bool elementwise = lf.traits.in_place_backward && i == 0;
                if ((lf.traits.gradient_passthrough || elementwise) && sole_writer(lf.inputs[i], lf.output)) {
                    grad.join(lf.output, lf.inputs[i]);
                    break;
                }
            }
        }

        // lifetimes, per storage group
        std::vector<std::size_t> vstart(E, npos), vend(E, 0), gstart(E, npos), gend(E, 0);
        for (std::size_t e = 1; e < E; ++e) {
            const edge& ed = edges[e];
            if (ed.producer < 0) continue;
            const auto p_ = static_cast<std::size_t>(ed.producer);
            std::size_t s = fwd(p_), t = fwd(p_);
            for (std::uint32_t c : ed.consumers) {
                t = std::max(t, fwd(c));
                if (leaves[c].traits.needs_input && !(in_place[c] && leaves[c].inputs[0] == e)) t = std::max(t, bwd(c));
            }
            if (leaves[p_].traits.needs_output) t = std::max(t, bwd(p_));
            if (ed.output >= 0) t = end_time();
            if (ed.consumers.empty() && ed.output < 0)
                throw error("lamina: internal error: edge " + std::to_string(e) + " (output of '" + leaves[p_].name +
                            "') is never read");
            widen(vstart, vend, val.find(static_cast<std::uint32_t>(e)), s, t);
            // gradient: from the first writer to the producer's backward
            std::size_t gs = ed.output >= 0 ? loss_time() : npos;
            for (std::uint32_t c : ed.consumers) gs = std::min(gs, bwd(c));
            widen(gstart, gend, grad.find(static_cast<std::uint32_t>(e)), gs, bwd(p_));
        }

        std::vector<block> blocks;
        std::vector<std::size_t> vblock(E, npos), gblock(E, npos);
        for (std::size_t e = 1; e < E; ++e) {
            if (edges[e].producer < 0) continue;
            add_group_block(blocks, vblock, val.find(static_cast<std::uint32_t>(e)), vstart, vend, edges[e].size,
                            p.value_elements);
            add_group_block(blocks, gblock, grad.find(static_cast<std::uint32_t>(e)), gstart, gend, edges[e].size,
                            p.gradient_elements);
        }
        // saved-for-backward blocks
        std::vector<std::size_t> sblock(L_, npos);
        for (std::size_t l = 0; l < L_; ++l) {
            const leaf& lf = leaves[l];
            if (lf.traits.view || !lf.sizes) continue;
            std::size_t bytes = lf.sizes->saved_bytes(batch_);
            if (!bytes) continue;
            std::size_t n = round((bytes + element_bytes_ - 1) / element_bytes_);
            sblock[l] = blocks.size();
            blocks.push_back({n, fwd(l), bwd(l), 0});
            p.saved_elements += n;
        }
        // accumulation: in backward order the first writer of a gradient overwrites
        std::vector<std::size_t> tblock(p.ports.size(), npos);
        for (std::size_t e = 0; e < E; ++e) {
            const edge& ed = edges[e];
            std::vector<std::pair<std::size_t, std::size_t>> writers;  // (bwd time, port index)
            for (std::size_t l = 0; l < L_; ++l) {
                const leaf& lf = leaves[l];
                if (lf.traits.view) continue;
                for (std::size_t i = 0; i < lf.inputs.size(); ++i)
                    if (lf.inputs[i] == e) writers.emplace_back(bwd(l), p.leaves[l].first_port + i);
            }
            std::sort(writers.begin(), writers.end());
            // a network output that is also read inside the network: the loss writes first
            const bool loss_writes = ed.output >= 0;
            for (std::size_t k = 0; k < writers.size(); ++k)
                p.ports[writers[k].second].accumulate = k > 0 || loss_writes;
            if (e == 0 && !writers.empty()) p.ports[writers[0].second].first_input_writer = true;
        }
        for (std::size_t l = 0; l < L_; ++l) {
            const leaf& lf = leaves[l];
            if (lf.traits.view || lf.traits.accumulates) continue;
            for (std::size_t i = 0; i < lf.inputs.size(); ++i) {
                const std::size_t port = p.leaves[l].first_port + i;
                const edge_id e = lf.inputs[i];
                const bool may_accumulate = p.ports[port].accumulate || p.ports[port].first_input_writer;
                if (!may_accumulate || (e == 0 && !input_gradient)) continue;
                std::size_t n = round(edges[e].size * batch_);
                tblock[port] = blocks.size();
                blocks.push_back({n, bwd(l), bwd(l), 0});
                p.temp_elements += n;
            }
        }

        p.unshared_elements = 0;
        for (auto& b : blocks) p.unshared_elements += b.size;
        p.arena_elements = place(blocks, share_);

        auto vref = [&](edge_id e) -> ref {
            if (e == 0) return {space_input, 0};
            return {space_arena, blocks[vblock[val.find(e)]].offset};
        };
        auto gref = [&](edge_id e) -> ref {
            if (e == 0) return input_gradient ? ref{space_input_grad, 0} : ref{};
            return {space_arena, blocks[gblock[grad.find(e)]].offset};
        };
        for (std::size_t l = 0; l < L_; ++l) {
            const leaf& lf = leaves[l];
            leaf_plan& lp = p.leaves[l];
            lp.y = vref(lf.output);
            lp.dy = gref(lf.output);
            lp.in_place = in_place[l];
            if (sblock[l] != npos) lp.saved = {space_arena, blocks[sblock[l]].offset};
            for (std::size_t i = 0; i < lf.inputs.size(); ++i) {
                port_plan& pp = p.ports[lp.first_port + i];
                pp.x = vref(lf.inputs[i]);
                pp.dx = gref(lf.inputs[i]);
                if (!pp.dx.space) pp.accumulate = false;
                if (tblock[lp.first_port + i] != npos) pp.temp = {space_arena, blocks[tblock[lp.first_port + i]].offset};
            }
        }
        for (std::size_t k = 0; k < d_.outputs().size(); ++k) {
            p.outputs[k] = vref(d_.outputs()[k]);
            p.output_grads[k] = gref(d_.outputs()[k]);
        }
        return p;
    }

    memory_plan inference(bool external_outputs) {
        const auto& leaves = d_.leaves();
        const auto& edges = d_.edges();
        const std::size_t E = edges.size();
        memory_plan p = skeleton(false);
        union_find val(E);
        std::vector<bool> in_place(L_, false);
        for (std::size_t l = 0; l < L_; ++l) {
            const leaf& lf = leaves[l];
            if (share_ && !lf.traits.view && lf.traits.in_place_forward && can_alias_value(lf.inputs[0], lf.output, false)) {
                val.join(lf.inputs[0], lf.output);
                in_place[l] = true;
            }
        }
        std::vector<std::size_t> vstart(E, npos), vend(E, 0);
        std::vector<std::int32_t> group_output(E, -1);
        for (std::size_t e = 1; e < E; ++e) {
            const edge& ed = edges[e];
            if (ed.producer < 0) continue;
            std::size_t s = fwd(static_cast<std::size_t>(ed.producer)), t = s;
            for (std::uint32_t c : ed.consumers) t = std::max(t, fwd(c));
            if (ed.output >= 0) {
                t = end_time();
                group_output[val.find(static_cast<std::uint32_t>(e))] = ed.output;
            }
            widen(vstart, vend, val.find(static_cast<std::uint32_t>(e)), s, t);
        }
        std::vector<block> blocks;
        std::vector<std::size_t> vblock(E, npos);
        for (std::size_t e = 1; e < E; ++e) {
            if (edges[e].producer < 0) continue;
            const std::uint32_t g = val.find(static_cast<std::uint32_t>(e));
            if (external_outputs && group_output[g] >= 0) continue;
            add_group_block(blocks, vblock, g, vstart, vend, edges[e].size, p.value_elements);
        }
        p.unshared_elements = 0;
        for (auto& b : blocks) p.unshared_elements += b.size;
        p.arena_elements = place(blocks, share_);
        auto vref = [&](edge_id e) -> ref {
            if (e == 0) return {space_input, 0};
            const std::uint32_t g = val.find(e);
            if (external_outputs && group_output[g] >= 0)
                return {static_cast<std::uint8_t>(space_output0 + group_output[g]), 0};
            return {space_arena, blocks[vblock[g]].offset};
        };
        for (std::size_t l = 0; l < L_; ++l) {
            const leaf& lf = leaves[l];
            leaf_plan& lp = p.leaves[l];
            lp.y = vref(lf.output);
            lp.in_place = in_place[l];
            for (std::size_t i = 0; i < lf.inputs.size(); ++i) p.ports[lp.first_port + i].x = vref(lf.inputs[i]);
        }
        for (std::size_t k = 0; k < d_.outputs().size(); ++k) p.outputs[k] = vref(d_.outputs()[k]);
        return p;
    }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);
    std::size_t fwd(std::size_t l) const { return l; }
    std::size_t loss_time() const { return L_; }
    std::size_t bwd(std::size_t l) const { return 2 * L_ - l; }
    std::size_t end_time() const { return 2 * L_ + 1; }
    std::size_t round(std::size_t n) const { return (n + align_ - 1) / align_ * align_; }

    memory_plan skeleton(bool training) const {
        memory_plan p;
        p.batch = batch_;
        p.training = training;
        p.leaves.resize(L_);
        std::uint32_t port = 0;
        for (std::size_t l = 0; l < L_; ++l) {
            p.leaves[l].first_port = port;
            port += static_cast<std::uint32_t>(d_.leaves()[l].inputs.size());
            if (const leaf_sizes* s = d_.leaves()[l].sizes)
                p.workspace_elements = std::max(p.workspace_elements, s->workspace_elements(batch_));
        }
        p.ports.resize(port);
        if (d_.outputs().size() > max_outputs)
            throw error("lamina: a network has at most " + std::to_string(max_outputs) + " outputs");
        p.outputs.resize(d_.outputs().size());
        p.output_grads.resize(d_.outputs().size());
        return p;
    }

    /// May leaf output `o` take over the storage of its input `e`?
    bool can_alias_value(edge_id e, edge_id o, bool training) const {
        const edge& ed = d_.edges()[e];
        if (ed.producer < 0 || ed.output >= 0 || ed.consumers.size() != 1) return false;
        if (ed.size != d_.edges()[o].size) return false;
        if (training && d_.leaves()[static_cast<std::size_t>(ed.producer)].traits.needs_output) return false;
        return true;
    }
    /// Is the leaf producing `o` the only writer of e's gradient (so it may alias it)?
    bool sole_writer(edge_id e, edge_id o) const {
        const edge& ed = d_.edges()[e];
        return ed.producer >= 0 && ed.output < 0 && ed.consumers.size() == 1 && ed.size == d_.edges()[o].size;
    }

    void widen(std::vector<std::size_t>& s, std::vector<std::size_t>& t, std::uint32_t g, std::size_t a,
               std::size_t b) const {
        s[g] = std::min(s[g], a);
        t[g] = std::max(t[g], b);
    }
    void add_group_block(std::vector<block>& blocks, std::vector<std::size_t>& of_group, std::uint32_t g,
                         const std::vector<std::size_t>& s, const std::vector<std::size_t>& t, std::size_t per_sample,
                         std::size_t& tally) const {
        if (of_group[g] != npos) {
            // in-place groups hold edges of one size; keep the largest to be safe
            blocks[of_group[g]].size = std::max(blocks[of_group[g]].size, round(per_sample * batch_));
            return;
        }
        of_group[g] = blocks.size();
        const std::size_t n = round(per_sample * batch_);
        blocks.push_back({n, s[g], t[g], 0});
        tally += n;
    }

    const description& d_;
    std::size_t batch_, align_, element_bytes_, L_;
    bool share_;
};

}  // namespace detail

/// The plan of a training step (forward_train, loss, backward) at `batch` samples.
/// `input_gradient`: the caller wants the network input's gradient (backward(dx)).
/// `share`: false gives every block its own memory and runs nothing in place (a check of
/// the planner: results must be bit-identical either way).
inline memory_plan plan_training(const description& d, std::size_t batch, std::size_t element_bytes,
                                 bool input_gradient, bool share = true) {
    return detail::planner(d, batch, element_bytes, share).training(input_gradient);
}

/// The plan of an inference forward at `batch` samples; with `external_outputs` the outputs
/// are written straight into the caller's buffers (host-accessible backends).
inline memory_plan plan_inference(const description& d, std::size_t batch, std::size_t element_bytes,
                                  bool external_outputs, bool share = true) {
    return detail::planner(d, batch, element_bytes, share).inference(external_outputs);
}

}  // namespace lamina::graph
