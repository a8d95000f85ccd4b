// lamina: the parameter server of the hybrid scheme (communicators/hybrid.hpp, after Kurth et al.
// 2017): a rank that owns a shard of the parameters (whole fusion buckets,
// communicators/parameter_shards.hpp) and their optimizer state, and turns each group's averaged
// gradient into fresh weights for that group. The groups' side is communicators/parameter_client.hpp.
//
// Point-to-point MPI, not one-sided: the server must run an optimizer step when a gradient
// arrives (Adam, LARS... are not an MPI_Accumulate of the gradient), and answer the sending group
// with the weights that step produced; two-sided messages carry exactly that (the message is the
// event). One-sided MPI would need a second notification per step and passive-target progress,
// which Open MPI gives only from inside MPI calls anyway, and SimGrid SMPI (which may drive
// these classes to simulate large runs) supports Isend/Irecv/Waitany fully. There is no
// communication thread: under SMPI threads cannot call MPI, and the loop below needs none.
//
// The server posts one receive per group and serves them with MPI_Waitany, so groups are answered
// in the order their gradients arrive and a slow group never blocks another; a group's gradient
// may be up to (groups - 1) updates stale (no explicit bound, as in Kurth et al.).
//
// Classes over raw flat buffers with an update callback (no trainer, no model), so a simulator
// can drive them; train/trainer.hpp drives them through comm::hybrid.
#pragma once

#include <mpi.h>

#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "fusion_buckets.hpp"
#include "mpi_exchange.hpp"

namespace lamina::comm {

/// The messages between group roots and servers: a header, then the payload (the server's
/// buckets concatenated in increasing bucket order).
namespace wire {
enum class kind : std::uint64_t {
    gradients = 1,      ///< root -> server: a group's averaged gradient for the server's buckets
    done = 2,           ///< root -> server: the group has finished (no payload)
    failed = 3,         ///< root -> server: the group stopped on an error (no payload, no final weights)
    weights = 4,        ///< server -> root: the weights after that group's update
    final_weights = 5,  ///< server -> root: the weights after every group is done
};
struct header {
    std::uint64_t what = 0;   // a kind
    std::uint64_t group = 0;  // the sending group (root -> server) or the server (server -> root)
    std::uint64_t step = 0;   // the group's step (root -> server); updates applied so far (server -> root)
    double learning_rate = 0;
};
/// Tags on the communicator the server and the roots share (a duplicate of lamina's own).
constexpr int to_server_tag = 7301;
constexpr int to_root_tag = 7302;

/// A message buffer: header then payload, as bytes (memcpy in and out: no aliasing concerns).
template <class T>
class message {
public:
    void allocate(std::size_t elements) { bytes_.assign(sizeof(header) + elements * sizeof(T), 0); }
    std::size_t capacity_bytes() const noexcept { return bytes_.size(); }
    unsigned char* data() noexcept { return bytes_.data(); }
    void set_header(const header& h) { std::memcpy(bytes_.data(), &h, sizeof h); }
    header get_header() const {
        header h;
        std::memcpy(&h, bytes_.data(), sizeof h);
        return h;
    }
    /// Payload elements [at, at + n) from / to `p`.
    void put(std::size_t at, const T* p, std::size_t n) { std::memcpy(bytes_.data() + sizeof(header) + at * sizeof(T), p, n * sizeof(T)); }
    void get(std::size_t at, T* p, std::size_t n) const { std::memcpy(p, bytes_.data() + sizeof(header) + at * sizeof(T), n * sizeof(T)); }
    static int bytes_for(std::size_t elements) {
        const std::size_t b = sizeof(header) + elements * sizeof(T);
        if (b > static_cast<std::size_t>(INT_MAX))
            throw error("lamina: parameter server: a shard of " + std::to_string(elements) +
                        " values exceeds one MPI message (2 GiB): use more servers");
        return static_cast<int>(b);
    }

private:
    std::vector<unsigned char> bytes_;
};
}  // namespace wire

/// What the server did, in arrival order (tests and traces read it).
struct server_event {
    std::uint32_t group = 0;
    std::uint64_t group_step = 0;  // that group's step counter
    double seconds = 0;            // since serve() began
};

template <class T>
class parameter_server {
public:
    /// `comm`: the communicator shared with the group roots; roots[g]: group g's root there;
    /// `buckets`: every fusion bucket of the flat parameter layout; `owned`: the buckets this
    /// server keeps (increasing). The timeline keeps the first `timeline_capacity` events
    /// (reserved here: serving allocates nothing).
    parameter_server(MPI_Comm comm, std::vector<int> roots, const std::vector<bucket_range>& buckets,
                     std::vector<std::size_t> owned, std::size_t timeline_capacity = 1 << 16)
        : comm_(comm), roots_(std::move(roots)), owned_(std::move(owned)) {
        if (roots_.empty()) throw argument_error("lamina: parameter server: no groups to serve");
        for (std::size_t k : owned_) {
            if (k >= buckets.size())
                throw argument_error("lamina: parameter server: owns bucket " + std::to_string(k) + " of " +
                                     std::to_string(buckets.size()));
            ranges_.push_back(buckets[k]);
            elements_ += buckets[k].count;
        }
        message_bytes_ = wire::message<T>::bytes_for(elements_);
        const std::size_t g = roots_.size();
        in_.resize(g);
        out_.resize(g);
        for (std::size_t i = 0; i < g; ++i) {
            in_[i].allocate(elements_);
            out_[i].allocate(elements_);
        }
        receives_.assign(g, MPI_REQUEST_NULL);
        sends_.assign(g, MPI_REQUEST_NULL);
        updates_.assign(g, 0);
        finished_.assign(g, state::serving);
        timeline_.reserve(timeline_capacity);
        capacity_ = timeline_capacity;
    }
    parameter_server(const parameter_server&) = delete;
    parameter_server& operator=(const parameter_server&) = delete;

    /// Serves until every group has sent done (or failed), then sends the final weights to every
    /// group that finished. `weights` and `gradients`: flat buffers of the whole layout in memory
    /// MPI and the host can address; only the owned buckets are read and written. For each
    /// gradient message the server writes the owned buckets' gradients into `gradients`, calls
    /// update(k, learning_rate) for each owned bucket k (which must update bucket k of
    /// `weights` from bucket k of `gradients`), and answers with the weights.
    template <class Update>
    void serve(T* weights, T* gradients, Update&& update) {
        const auto t0 = std::chrono::steady_clock::now();
        const int groups = static_cast<int>(roots_.size());
        for (int g = 0; g < groups; ++g) {
            finished_[g] = state::serving;
            post_receive(g);
        }
        int serving = groups;
        while (serving > 0) {
            int g = MPI_UNDEFINED;
            MPI_Status st;
            detail::check_mpi(MPI_Waitany(groups, receives_.data(), &g, &st), "MPI_Waitany");
            if (g == MPI_UNDEFINED) break;
            const wire::header h = in_[g].get_header();
            int got = 0;
            MPI_Get_count(&st, MPI_BYTE, &got);
            if (h.what == static_cast<std::uint64_t>(wire::kind::done) ||
                h.what == static_cast<std::uint64_t>(wire::kind::failed)) {
                finished_[g] = h.what == static_cast<std::uint64_t>(wire::kind::done) ? state::done : state::failed;
                --serving;
                continue;
            }
            if (h.what != static_cast<std::uint64_t>(wire::kind::gradients) || got != message_bytes_)
                throw error("lamina: parameter server: group " + std::to_string(g) + " sent a message of kind " +
                            std::to_string(h.what) + " and " + std::to_string(got) + " bytes, expected gradients of " +
                            std::to_string(message_bytes_) + " bytes (did every rank build the same network?)");
            std::size_t at = 0;
            for (const bucket_range& b : ranges_) {
                in_[g].get(at, gradients + b.offset, b.count);
                at += b.count;
            }
            post_receive(g);  // the gradient is copied out: the group may send its next one
            for (std::size_t j = 0; j < owned_.size(); ++j) update(owned_[j], h.learning_rate);
            ++updates_[g];
            ++total_updates_;
            if (timeline_.size() < capacity_)
                timeline_.push_back({static_cast<std::uint32_t>(g), h.step,
                                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()});
            send_weights(g, weights, wire::kind::weights);
        }
        for (int g = 0; g < groups; ++g)
            if (finished_[g] == state::done) send_weights(g, weights, wire::kind::final_weights);
        detail::check_mpi(MPI_Waitall(groups, sends_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    }

    /// Updates applied for each group, and in all.
    const std::vector<std::uint64_t>& updates_per_group() const noexcept { return updates_; }
    std::uint64_t updates() const noexcept { return total_updates_; }
    const std::vector<server_event>& timeline() const noexcept { return timeline_; }
    const std::vector<std::size_t>& owned_buckets() const noexcept { return owned_; }
    std::size_t shard_elements() const noexcept { return elements_; }
    /// Whether group g ended with a done message (false: failed, or not served yet).
    bool finished(std::size_t g) const { return finished_.at(g) == state::done; }

private:
    enum class state { serving, done, failed };
    void post_receive(int g) {
        detail::check_mpi(MPI_Irecv(in_[g].data(), message_bytes_, MPI_BYTE, roots_[g], wire::to_server_tag, comm_,
                                    &receives_[g]),
                          "MPI_Irecv");
    }
    void send_weights(int g, const T* weights, wire::kind what) {
        // The previous answer to this group has been received by now (the group waited for it
        // before sending again), so this completes at once and the buffer is free.
        detail::check_mpi(MPI_Wait(&sends_[g], MPI_STATUS_IGNORE), "MPI_Wait");
        wire::header h;
        h.what = static_cast<std::uint64_t>(what);
        h.step = total_updates_;
        out_[g].set_header(h);
        std::size_t at = 0;
        for (const bucket_range& b : ranges_) {
            out_[g].put(at, weights + b.offset, b.count);
            at += b.count;
        }
        detail::check_mpi(MPI_Isend(out_[g].data(), message_bytes_, MPI_BYTE, roots_[g], wire::to_root_tag, comm_, &sends_[g]),
                          "MPI_Isend");
    }

    MPI_Comm comm_;
    std::vector<int> roots_;
    std::vector<std::size_t> owned_;
    std::vector<bucket_range> ranges_;
    std::size_t elements_ = 0;
    int message_bytes_ = 0;
    std::vector<wire::message<T>> in_, out_;
    std::vector<MPI_Request> receives_, sends_;
    std::vector<std::uint64_t> updates_;
    std::vector<state> finished_;
    std::uint64_t total_updates_ = 0;
    std::vector<server_event> timeline_;
    std::size_t capacity_ = 0;
};

}  // namespace lamina::comm
