// lamina: tensor fusion buckets over a model's flat gradient buffer, and the per-step record of
// which bucket is complete. No MPI here: communicators/mpi.hpp starts one collective per bucket.
//
// The model keeps every parameter gradient in one flat buffer, each leaf's gradients contiguous,
// leaves in forward order (network/parameter_segment.hpp), and backward reports each leaf's
// gradients once, last leaf first. A bucket is therefore a contiguous range of that buffer made
// of whole leaves taken in report order: "packing" a gradient into its bucket costs nothing, and
// a bucket is handed to MPI in place (as PyTorch DDP's gradient views into its buckets).
//
// Buckets close when they reach their byte threshold: the first bucket at `first_bucket_bytes`
// (small, so the first collective starts early in backward; DDP uses 1 MiB), the others at
// `bucket_bytes` (DDP 25 MiB, Horovod 64-128 MiB). A leaf larger than the threshold is a bucket
// of its own; a threshold of 0 gives one bucket per leaf (no fusion).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../network/parameter_segment.hpp"

namespace lamina::comm {

/// One fusion bucket: elements [offset, offset + count) of the flat gradient buffer.
struct bucket_range {
    std::size_t offset = 0;
    std::size_t count = 0;
    std::size_t first_segment = 0;  // its parameter segments: [first_segment, first_segment + segments)
    std::size_t segments = 0;
};

/// The buckets of one model, in the order backward fills them (bucket 0 holds the last layers).
class fusion_plan {
public:
    fusion_plan() = default;

    /// Groups `segments` (in forward order, as the model lists them) into the leaves that
    /// report them (equal `layer`) and the leaves into buckets in reverse order.
    /// `element_bytes` is sizeof the gradient's scalar type.
    static fusion_plan build(const std::vector<parameter_segment>& segments, std::size_t element_bytes,
                             std::size_t first_bucket_bytes, std::size_t bucket_bytes) {
        fusion_plan p;
        // leaves: runs of segments with the same layer; they must tile [0, total)
        struct leaf {
            std::size_t offset, count, first_segment, segments;
        };
        std::vector<leaf> leaves;
        std::size_t expect = 0;
        for (std::size_t s = 0; s < segments.size(); ++s) {
            const parameter_segment& seg = segments[s];
            if (seg.offset != expect)
                throw error("lamina: fusion buckets: parameter segment '" + seg.name + "' starts at " +
                            std::to_string(seg.offset) + ", expected " + std::to_string(expect) +
                            " (segments must tile the flat gradient buffer in order)");
            if (!leaves.empty() && segments[leaves.back().first_segment].layer == seg.layer) {
                leaves.back().count += seg.count;
                ++leaves.back().segments;
            } else {
                leaves.push_back({seg.offset, seg.count, s, 1});
            }
            expect += seg.count;
        }
        p.total_ = expect;
        bucket_range cur;
        std::size_t bytes = 0;
        bool open = false;
        auto close = [&] {
            p.buckets_.push_back(cur);
            open = false;
            bytes = 0;
        };
        for (auto it = leaves.rbegin(); it != leaves.rend(); ++it) {
            if (it->count == 0) continue;
            if (!open) {
                cur = bucket_range{it->offset, it->count, it->first_segment, it->segments};
                open = true;
            } else {  // the next leaf in report order sits just below the bucket
                cur.offset = it->offset;
                cur.count += it->count;
                cur.first_segment = it->first_segment;
                cur.segments += it->segments;
            }
            bytes += it->count * element_bytes;
            const std::size_t threshold = p.buckets_.empty() ? first_bucket_bytes : bucket_bytes;
            if (bytes >= threshold) close();
        }
        if (open) close();
        // lookup table: bucket starts in increasing offset order
        p.by_offset_.resize(p.buckets_.size());
        for (std::size_t k = 0; k < p.buckets_.size(); ++k) p.by_offset_[k] = p.buckets_.size() - 1 - k;
        return p;
    }

    const std::vector<bucket_range>& buckets() const noexcept { return buckets_; }
    std::size_t size() const noexcept { return buckets_.size(); }
    const bucket_range& operator[](std::size_t k) const { return buckets_[k]; }
    /// Elements covered (the model's parameter count).
    std::size_t total() const noexcept { return total_; }
    std::size_t largest() const noexcept {
        std::size_t m = 0;
        for (const auto& b : buckets_) m = std::max(m, b.count);
        return m;
    }

    /// The bucket holding element `offset` (offset < total()).
    std::size_t bucket_of(std::size_t offset) const {
        // by_offset_ lists buckets by increasing offset: the last one starting at or before `offset`
        std::size_t lo = 0, hi = by_offset_.size();
        while (hi - lo > 1) {
            const std::size_t mid = (lo + hi) / 2;
            if (buckets_[by_offset_[mid]].offset <= offset) lo = mid;
            else hi = mid;
        }
        return by_offset_[lo];
    }

private:
    std::vector<bucket_range> buckets_;
    std::vector<std::size_t> by_offset_;
    std::size_t total_ = 0;
};

/// Which buckets one backward pass has filled. report() takes each gradient as backward hands
/// it over; ready_prefix() is how many buckets, counted from bucket 0, are complete, which is
/// the order collectives must start in (the same on every rank). Allocation-free after reset's
/// first call.
class bucket_fill {
public:
    explicit bucket_fill(const fusion_plan* plan = nullptr) : plan_(plan) {}
    void reset() {
        remaining_.resize(plan_->size());
        for (std::size_t k = 0; k < plan_->size(); ++k) remaining_[k] = (*plan_)[k].count;
        prefix_ = 0;
        advance();
    }
    /// Elements [offset, offset + count) of the gradient buffer are final. Throws when they lie
    /// outside the buffer or were reported already (a bucket could then be sent incomplete).
    void report(std::size_t offset, std::size_t count) {
        if (count > plan_->total() || offset > plan_->total() - count)
            throw error("lamina: fusion buckets: a gradient of " + std::to_string(count) + " values at offset " +
                        std::to_string(offset) + " lies outside the model's " + std::to_string(plan_->total()) +
                        " parameters");
        while (count) {
            const std::size_t k = plan_->bucket_of(offset);
            const bucket_range& b = (*plan_)[k];
            const std::size_t take = std::min(count, b.offset + b.count - offset);
            if (take > remaining_[k])
                throw error("lamina: fusion buckets: bucket " + std::to_string(k) + " got " + std::to_string(take) +
                            " more gradient values than it holds (a layer reported its gradients twice)");
            remaining_[k] -= take;
            offset += take;
            count -= take;
        }
        advance();
    }
    /// Treats every bucket as complete (after backward: a layer that never reported keeps the
    /// gradient it has).
    void complete_all() {
        for (auto& r : remaining_) r = 0;
        prefix_ = remaining_.size();
    }
    std::size_t ready_prefix() const noexcept { return prefix_; }
    bool complete(std::size_t k) const { return remaining_[k] == 0; }

private:
    void advance() {
        while (prefix_ < remaining_.size() && remaining_[prefix_] == 0) ++prefix_;
    }
    const fusion_plan* plan_;
    std::vector<std::size_t> remaining_;
    std::size_t prefix_ = 0;
};

}  // namespace lamina::comm
