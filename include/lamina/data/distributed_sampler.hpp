// lamina: which samples each rank trains on, epoch by epoch, in data-parallel training.
// DeepGalaxy's three modes (Wang et al. 2020, distributed training with Horovod):
//
//   distributed_sampler::reshuffle_every(m)  shards drawn from a new global permutation every m
//                                            epochs (m = 1, the default: every epoch); between
//                                            redraws each rank reshuffles its own shard;
//   distributed_sampler::fixed_shards()      rank r always trains on the same contiguous part of
//                                            the dataset (a rank may hold only that part),
//                                            reshuffled within the shard every epoch;
//   distributed_sampler::all_data()          every rank sees the whole dataset every epoch, in its
//                                            own order (an epoch is then ranks x the dataset).
//
// Every rank gets the same number of samples per epoch, so every rank runs the same number of
// steps (a rank with one step more would wait forever in its gradient average): shards of
// uneven size are padded by repeating their first samples, as PyTorch's DistributedSampler
// does (at most ranks - 1 repeated samples per epoch).
//
// With m = 1 the shards interleave batch by batch: rank r's step-s batch is positions
// [s*N*B + r*b, s*N*B + (r+1)*b) of the epoch's permutation (b = B, or the last step's size).
// N ranks with batch B therefore train on exactly the global batches one process with batch
// N*B trains on, and on one rank every mode gives the trainer's own order (the permutation of
// lamina::trainer::run for that epoch and shuffle seed).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/philox.hpp"

namespace lamina {

enum class sharding {
    reshuffle,  ///< shards from a global permutation redrawn every `every` epochs
    fixed,      ///< a fixed contiguous shard per rank
    all_data,   ///< every rank sees every sample
};

class distributed_sampler {
public:
    /// Shards redrawn from a new global permutation every `m` epochs (m >= 1).
    static distributed_sampler reshuffle_every(std::size_t m = 1) {
        if (m == 0) throw argument_error("lamina: distributed_sampler::reshuffle_every needs m >= 1 epochs, got 0");
        return distributed_sampler{sharding::reshuffle, m};
    }
    static distributed_sampler fixed_shards() { return distributed_sampler{sharding::fixed, 1}; }
    static distributed_sampler all_data() { return distributed_sampler{sharding::all_data, 1}; }

    distributed_sampler() = default;
    sharding mode() const noexcept { return mode_; }
    std::size_t every() const noexcept { return every_; }
    std::string describe() const {
        switch (mode_) {
            case sharding::reshuffle:
                return every_ == 1 ? "shards reshuffled every epoch" : "shards reshuffled every " + std::to_string(every_) + " epochs";
            case sharding::fixed: return "fixed shard per rank";
            case sharding::all_data: return "every rank sees all data";
        }
        return "";
    }

    /// Samples each rank visits per epoch, for `n` samples over `ranks` ranks.
    std::size_t samples_per_rank(std::size_t n, std::size_t ranks) const {
        check(n, 0, ranks, 1);
        if (mode_ == sharding::all_data) return n;
        return n / ranks + (n % ranks ? 1 : 0);
    }

    /// Rank `rank`'s sample indices for `epoch`, in the order it visits them, in batches of
    /// `batch`: out[0 .. samples_per_rank(n, ranks)). `seed` is the trainer's shuffle seed.
    void order(std::size_t* out, std::size_t n, std::size_t epoch, std::size_t rank, std::size_t ranks,
               std::size_t batch, std::uint64_t seed) const {
        check(n, rank, ranks, batch);
        const std::size_t L = samples_per_rank(n, ranks);
        if (mode_ == sharding::all_data) {
            permutation(out, n, rank_seed(seed, rank), epoch);
            return;
        }
        if (mode_ == sharding::fixed) {
            const std::size_t lo = shard_begin(n, rank, ranks), size = shard_begin(n, rank + 1, ranks) - lo;
            for (std::size_t i = 0; i < L; ++i) out[i] = lo + i % size;  // pads by repeating its first samples
            shuffle(out, L, rank_seed(seed, rank), epoch);
            return;
        }
        // reshuffle: the global permutation of the block's first epoch, padded cyclically to
        // ranks * L, dealt out batch by batch
        const std::size_t first = epoch / every_ * every_;
        perm_.resize(n);
        permutation(perm_.data(), n, seed, first);
        const std::size_t steps = (L + batch - 1) / batch;
        std::size_t j = 0;
        for (std::size_t s = 0; s < steps; ++s) {
            const std::size_t b = std::min(batch, L - s * batch);
            const std::size_t base = s * ranks * batch + rank * b;
            for (std::size_t w = 0; w < b; ++w) out[j++] = perm_[(base + w) % n];
        }
        if (epoch != first) shuffle(out, L, rank_seed(seed, rank) ^ 0x4C4F43414CULL, epoch);
    }

    /// The trainer's permutation of epoch `epoch`: Fisher-Yates with the counter-based RNG, so
    /// it depends only on (seed, epoch) and a resumed run shuffles as an uninterrupted one.
    static void permutation(std::size_t* out, std::size_t n, std::uint64_t seed, std::size_t epoch) {
        for (std::size_t i = 0; i < n; ++i) out[i] = i;
        shuffle(out, n, seed, epoch);
    }

    /// First sample of rank r's contiguous shard (fixed_shards): shards differ by at most one.
    static std::size_t shard_begin(std::size_t n, std::size_t r, std::size_t ranks) {
        return r * (n / ranks) + std::min(r, n % ranks);
    }

private:
    distributed_sampler(sharding m, std::size_t every) : mode_(m), every_(every) {}

    static void shuffle(std::size_t* a, std::size_t n, std::uint64_t seed, std::size_t epoch) {
        random_stream s{seed, 0x5348554646ull + epoch};
        for (std::size_t i = n; i > 1; --i) std::swap(a[i - 1], a[s.below(i, i)]);
    }
    /// Rank 0 keeps the trainer's seed (one rank shuffles exactly as the plain trainer).
    static std::uint64_t rank_seed(std::uint64_t seed, std::size_t rank) {
        return seed ^ (static_cast<std::uint64_t>(rank) * 0x9E3779B97F4A7C15ull);
    }
    void check(std::size_t n, std::size_t rank, std::size_t ranks, std::size_t batch) const {
        if (ranks == 0 || rank >= ranks)
            throw argument_error("lamina: distributed_sampler: rank " + std::to_string(rank) + " of " +
                                 std::to_string(ranks) + " ranks");
        if (batch == 0) throw argument_error("lamina: distributed_sampler: batch size must be positive");
        if (mode_ != sharding::all_data && n < ranks)
            throw argument_error("lamina: distributed_sampler: " + std::to_string(n) + " samples cannot be shared by " +
                                 std::to_string(ranks) + " ranks (" + describe() + ")");
    }

    sharding mode_ = sharding::reshuffle;
    std::size_t every_ = 1;
    mutable std::vector<std::size_t> perm_;  // the global permutation (kept: no allocation per epoch)
};

}  // namespace lamina
