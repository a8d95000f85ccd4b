// lamina: a group root's side of the hybrid scheme (communicators/hybrid.hpp): it sends the
// group's averaged gradient to the parameter servers, bucket by bucket as the group's sums
// arrive (each server's message leaves as soon as its last bucket is in), and receives the
// fresh weights; the servers are communicators/parameter_server.hpp, the wire format is there.
//
// Over raw flat buffers (no trainer, no model), so a simulator can drive it. Per step:
//   begin(step, lr) -> gradient_ready(k, g) for every bucket k -> finish(weights);
// at the end done(weights) (the final weights, once every group has finished) or failed().
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "fusion_buckets.hpp"
#include "mpi_exchange.hpp"
#include "parameter_server.hpp"
#include "parameter_shards.hpp"

namespace lamina::comm {

template <class T>
class parameter_client {
public:
    /// `comm`: shared with the servers; servers[s]: server s's rank there; `buckets`: every
    /// fusion bucket of the flat layout; `shards`: which server owns which; `group`: this
    /// root's group (named in its messages).
    parameter_client(MPI_Comm comm, std::vector<int> servers, const std::vector<bucket_range>& buckets,
                     const shard_map& shards, std::size_t group)
        : comm_(comm), servers_(std::move(servers)), buckets_(buckets), shards_(shards), group_(group) {
        if (servers_.size() != shards_.servers() || buckets_.size() != shards_.buckets())
            throw argument_error("lamina: parameter client: " + std::to_string(servers_.size()) + " servers and " +
                                 std::to_string(buckets_.size()) + " buckets, but the shard map has " +
                                 std::to_string(shards_.servers()) + " and " + std::to_string(shards_.buckets()));
        const std::size_t n = servers_.size();
        slot_.assign(buckets_.size(), 0);
        to_.resize(n);
        from_.resize(n);
        bytes_.resize(n);
        pending_.assign(n, 0);
        sent_.assign(n, false);
        for (std::size_t s = 0; s < n; ++s) {
            std::size_t at = 0;
            for (std::size_t k : shards_.buckets_of(s)) {
                slot_[k] = at;
                at += buckets_[k].count;
            }
            to_[s].allocate(at);
            from_[s].allocate(at);
            bytes_[s] = wire::message<T>::bytes_for(at);
        }
        sends_.assign(n, MPI_REQUEST_NULL);
        receives_.assign(n, MPI_REQUEST_NULL);
        statuses_.resize(n);
    }
    parameter_client(const parameter_client&) = delete;
    parameter_client& operator=(const parameter_client&) = delete;

    /// Starts a step: posts the receives for the weights and labels the gradient messages.
    void begin(std::uint64_t step, double learning_rate) {
        wire::header h;
        h.what = static_cast<std::uint64_t>(wire::kind::gradients);
        h.group = group_;
        h.step = step;
        h.learning_rate = learning_rate;
        for (std::size_t s = 0; s < servers_.size(); ++s) {
            to_[s].set_header(h);
            pending_[s] = shards_.buckets_of(s).size();
            sent_[s] = false;
            receive(s);
        }
        in_step_ = true;
    }
    /// Bucket k's averaged gradient (its `count` values at g, host memory) is final.
    void gradient_ready(std::size_t k, const T* g) {
        const std::size_t s = shards_.owner(k);
        to_[s].put(slot_[k], g, buckets_[k].count);
        if (--pending_[s] == 0) send(s);
    }
    /// Waits for every server's weights and writes them into `weights` (the flat layout).
    void finish(T* weights) {
        for (std::size_t s = 0; s < servers_.size(); ++s)
            if (!sent_[s])
                throw error("lamina: parameter client: finish() before every bucket of server " + std::to_string(s) +
                            " was handed over");
        collect(weights, wire::kind::weights);
        in_step_ = false;
    }
    /// The group has finished: tells every server, then waits for the final weights (sent when
    /// every group has finished) and writes them into `weights`.
    void done(T* weights) {
        notify(wire::kind::done);
        for (std::size_t s = 0; s < servers_.size(); ++s) receive(s);
        collect(weights, wire::kind::final_weights);
    }
    /// The group stops on an error: completes what the servers must still answer (weights for
    /// gradients already sent), cancels the rest, and tells every server not to wait for it.
    void failed() {
        if (in_step_)
            for (std::size_t s = 0; s < servers_.size(); ++s) {
                if (sent_[s]) {
                    MPI_Wait(&receives_[s], MPI_STATUS_IGNORE);
                } else if (receives_[s] != MPI_REQUEST_NULL) {
                    MPI_Cancel(&receives_[s]);
                    MPI_Wait(&receives_[s], MPI_STATUS_IGNORE);
                }
            }
        in_step_ = false;
        MPI_Waitall(static_cast<int>(sends_.size()), sends_.data(), MPI_STATUSES_IGNORE);
        notify(wire::kind::failed);
    }

    /// Updates the last answering server had applied in all (a staleness measure).
    std::uint64_t last_server_updates() const noexcept { return last_server_updates_; }

private:
    void receive(std::size_t s) {
        detail::check_mpi(MPI_Irecv(from_[s].data(), bytes_[s], MPI_BYTE, servers_[s], wire::to_root_tag, comm_,
                                    &receives_[s]),
                          "MPI_Irecv");
    }
    void send(std::size_t s) {
        detail::check_mpi(MPI_Isend(to_[s].data(), bytes_[s], MPI_BYTE, servers_[s], wire::to_server_tag, comm_, &sends_[s]),
                          "MPI_Isend");
        sent_[s] = true;
    }
    void notify(wire::kind what) {
        wire::header h;
        h.what = static_cast<std::uint64_t>(what);
        h.group = group_;
        for (std::size_t s = 0; s < servers_.size(); ++s) {
            to_[s].set_header(h);
            detail::check_mpi(MPI_Isend(to_[s].data(), static_cast<int>(sizeof(wire::header)), MPI_BYTE, servers_[s],
                                        wire::to_server_tag, comm_, &sends_[s]),
                              "MPI_Isend");
        }
        detail::check_mpi(MPI_Waitall(static_cast<int>(sends_.size()), sends_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    }
    void collect(T* weights, wire::kind expect) {
        std::vector<MPI_Status>& st = statuses_;
        detail::check_mpi(MPI_Waitall(static_cast<int>(receives_.size()), receives_.data(), st.data()), "MPI_Waitall");
        detail::check_mpi(MPI_Waitall(static_cast<int>(sends_.size()), sends_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
        for (std::size_t s = 0; s < servers_.size(); ++s) {
            const wire::header h = from_[s].get_header();
            int got = 0;
            MPI_Get_count(&st[s], MPI_BYTE, &got);
            if (h.what != static_cast<std::uint64_t>(expect) || got != bytes_[s])
                throw error("lamina: parameter client: server " + std::to_string(s) + " answered with kind " +
                            std::to_string(h.what) + " and " + std::to_string(got) + " bytes, expected kind " +
                            std::to_string(static_cast<std::uint64_t>(expect)) + " and " + std::to_string(bytes_[s]));
            last_server_updates_ = h.step;
            for (std::size_t k : shards_.buckets_of(s)) from_[s].get(slot_[k], weights + buckets_[k].offset, buckets_[k].count);
        }
    }

    MPI_Comm comm_;
    std::vector<int> servers_;
    std::vector<bucket_range> buckets_;
    shard_map shards_;
    std::size_t group_;
    std::vector<std::size_t> slot_;  // bucket k's first element in its server's payload
    std::vector<wire::message<T>> to_, from_;
    std::vector<int> bytes_;
    std::vector<std::size_t> pending_;
    std::vector<bool> sent_;
    std::vector<MPI_Request> sends_, receives_;
    std::vector<MPI_Status> statuses_;
    bool in_step_ = false;
    std::uint64_t last_server_updates_ = 0;
};

}  // namespace lamina::comm
