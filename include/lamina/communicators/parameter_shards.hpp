// lamina: which parameter server owns which fusion bucket in the hybrid scheme
// (communicators/hybrid.hpp). No MPI here, so it is tested and reused (a simulator) alone.
//
// Parameters are sharded by whole fusion buckets (communicators/fusion_buckets.hpp): a bucket is
// the unit the group root sends, so a server receives whole buckets and steps each with its
// own per-bucket optimizer state. Balanced by bytes with the longest-processing-time rule:
// buckets largest first, each to the server holding the fewest bytes so far (ties: the lower
// server index), which keeps the largest server within 4/3 of the best possible split.
#pragma once

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <string>
#include <vector>

#include "../core/error.hpp"

namespace lamina::comm {

class shard_map {
public:
    shard_map() = default;

    /// Assigns buckets of `bucket_counts[k]` elements of `element_bytes` bytes to `servers`
    /// servers. Every server must own at least one bucket.
    static shard_map balance(const std::vector<std::size_t>& bucket_counts, std::size_t element_bytes,
                             std::size_t servers) {
        if (servers == 0) throw argument_error("lamina: parameter shards: at least one server is needed");
        if (servers > bucket_counts.size())
            throw argument_error("lamina: parameter shards: " + std::to_string(servers) +
                                 " parameter servers but only " + std::to_string(bucket_counts.size()) +
                                 " fusion buckets: every server must own a bucket (use fewer servers, or smaller "
                                 "mpi_options::bucket_bytes and first_bucket_bytes for more buckets)");
        shard_map m;
        m.owner_.assign(bucket_counts.size(), 0);
        m.bytes_.assign(servers, 0);
        m.buckets_.assign(servers, {});
        std::vector<std::size_t> order(bucket_counts.size());
        std::iota(order.begin(), order.end(), std::size_t(0));
        std::stable_sort(order.begin(), order.end(),
                         [&](std::size_t a, std::size_t b) { return bucket_counts[a] > bucket_counts[b]; });
        for (std::size_t k : order) {
            const std::size_t s = static_cast<std::size_t>(
                std::min_element(m.bytes_.begin(), m.bytes_.end()) - m.bytes_.begin());  // first of the least loaded
            m.owner_[k] = s;
            m.bytes_[s] += bucket_counts[k] * element_bytes;
            m.buckets_[s].push_back(k);
        }
        for (auto& list : m.buckets_) std::sort(list.begin(), list.end());
        return m;
    }

    std::size_t servers() const noexcept { return bytes_.size(); }
    std::size_t buckets() const noexcept { return owner_.size(); }
    /// The server that owns bucket k.
    std::size_t owner(std::size_t k) const { return owner_.at(k); }
    /// Server s's buckets, in increasing bucket order (the order of its messages' payload).
    const std::vector<std::size_t>& buckets_of(std::size_t s) const { return buckets_.at(s); }
    std::size_t bytes_of(std::size_t s) const { return bytes_.at(s); }

private:
    std::vector<std::size_t> owner_, bytes_;
    std::vector<std::vector<std::size_t>> buckets_;
};

}  // namespace lamina::comm
