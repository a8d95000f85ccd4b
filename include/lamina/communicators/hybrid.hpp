// lamina: the hybrid scheme of Kurth et al. 2017: synchronous groups that meet through parameter
// servers.
//
//   lm::trainer fit{net, loss, opt, sched, lm::comm::hybrid{MPI_COMM_WORLD, lm::comm::groups{2}, lm::comm::servers{1}}};
//   fit.run(data, lm::epochs{10}, lm::batch{32});   // every rank, servers included: no branching
//
// Who is who: the world's N ranks hold G groups of m = (N - S) / G ranks and S servers. Ranks
// 0..N-S-1 are the workers, group g being ranks [g*m, (g+1)*m) with root g*m; ranks N-S..N-1 are
// servers 0..S-1. World rank 0 is group 0's root: it prints, writes files and owns the initial
// state. A world size that is not G*m + S, G = 0, or G > 1 without servers throws the same
// argument_error on every rank, before any communication.
//
// One step of a group: forward and backward on its ranks, with the gradient summed over the
// group's sub-communicator by the fusion buckets and overlapped allreduce of comm::mpi
// (communicators/mpi.hpp: a whole mpi_session runs inside each group). The root then sends each
// averaged bucket to the server owning it (parameter shards balanced by bytes,
// communicators/parameter_shards.hpp) with the learning rate its own schedule gives for this
// step, and waits for the weights; the server steps its buckets with its own optimizer state
// (the per-bucket state of communicators/bucketed_optimizer.hpp, any of the seven optimizers)
// and answers (communicators/parameter_server.hpp, the root's side
// communicators/parameter_client.hpp); the root broadcasts the weights in its group before the
// next forward. Servers answer in arrival order, so a group's gradient may be up to G - 1
// updates stale and a slow group never blocks another. G = 1 with S = 0 is comm::mpi exactly
// (the group updates locally); G = 1 with servers gives the same parameters (no staleness).
//
// What the trainer does with it (train/trainer.hpp):
//   - construction (collective over the world): the architecture check over every rank;
//   - run() on every rank: the arguments must agree over the world; the first run broadcasts
//     world rank 0's parameters, running state, optimizer state and position to every rank
//     (servers included: their initial weights and optimizer state); a server then serves until
//     every group has finished and returns (callbacks do not run on servers); a group trains
//     its epochs (the data split over all N - S workers, as comm::mpi splits it over its ranks)
//     and, at the end, sends done and receives the final weights once every group is done:
//     every worker ends with the same parameters, the servers' (each server's model holds the
//     final values of its shard only). Later runs keep the servers' optimizer state;
//   - the loss of a step is its group's mean (averaging over every worker each step would
//     synchronise the groups); the linear scaling rule scales by the group's batch (the batch of
//     one update); progress and files come from world rank 0;
//   - evaluate() is collective over the workers (the dataset split over them, metrics of the
//     whole of it on every worker); on a server it returns at once an empty evaluation
//     (samples 0): a server may be serving while the workers evaluate from a callback;
//   - a non-finite loss: the group decides together (its mean loss); with
//     non_finite::skip_batch it drops the step and sends nothing (the server sees nothing of
//     it); with non_finite::stop (or any error in a group) the root tells the servers "failed"
//     before the error leaves run(), so the servers and the other groups finish (no hang) and
//     the failed group gets no final weights;
//   - checkpoints: the optimizer state lives on the servers, sharded. After run(), every rank
//     calls trainer::gather_optimizer_state() (collective: each bucket's state from the server
//     that owns it, to every rank); world rank 0 can then save_checkpoint a complete file (the
//     final parameters, the servers' optimizer state and step count, the position), which
//     resumes with comm::mpi, one process or comm::hybrid. Without the gather save_checkpoint
//     throws (nothing written), and run() refuses a checkpoint_every callback with a file
//     prefix (on every rank, before training: mid-run the state is on servers busy serving).
//     A checkpoint can start a hybrid run: load it on world rank 0 (or everywhere) before run().
//   - train_batch() is refused (a server serves inside run() only).
// Memory: every rank builds the whole model, and the trainer keeps a whole bucketed optimizer
// state; only servers step it, and only for their buckets (a shard-sized state is left for later).
// The backend's memory must be addressable by MPI (host, Kokkos host spaces).
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <memory>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "fusion_buckets.hpp"
#include "mpi.hpp"
#include "parameter_client.hpp"
#include "parameter_server.hpp"
#include "parameter_shards.hpp"
#include "staging.hpp"

namespace lamina::comm {

/// The number of synchronous groups of a hybrid layout.
struct groups {
    std::size_t count = 1;
    explicit groups(std::size_t n) : count(n) {}
};
/// The number of parameter-server ranks of a hybrid layout.
struct servers {
    std::size_t count = 0;
    explicit servers(std::size_t n) : count(n) {}
};

template <class Model>
class hybrid_session;

/// The hybrid communicator policy over the ranks of an MPI communicator.
class hybrid {
public:
    static constexpr bool distributed = true;
    static constexpr bool is_communicator = true;
    template <class Model>
    using session = hybrid_session<Model>;

    /// `o` configures the groups' gradient exchange as for comm::mpi (fusion, overlap, ...).
    hybrid(MPI_Comm world, comm::groups g, comm::servers s, mpi_options o = {}) : world_(world, o) {
        groups_ = g.count;
        servers_ = s.count;
        const std::size_t n = static_cast<std::size_t>(world_.size());
        const std::string layout = "comm::hybrid{" + std::to_string(n) + " ranks, groups{" + std::to_string(groups_) +
                                   "}, servers{" + std::to_string(servers_) + "}}";
        if (groups_ == 0) throw argument_error("lamina: " + layout + ": needs at least one group");
        if (servers_ >= n || (n - servers_) % groups_ != 0)
            throw argument_error("lamina: " + layout + ": the world size must be groups x ranks per group + servers, " +
                                 "but " + std::to_string(n) + " - " + std::to_string(servers_) +
                                 " servers leaves " + (servers_ >= n ? std::string("no workers")
                                                                     : std::to_string(n - servers_) + " workers, not a multiple of " +
                                                                           std::to_string(groups_) + " groups"));
        if (groups_ > 1 && servers_ == 0)
            throw argument_error("lamina: " + layout + ": several groups exchange weights through parameter servers; "
                                 "give at least servers{1} (groups{1} with servers{0} is plain synchronous training)");
        group_size_ = (n - servers_) / groups_;
    }

    const mpi& world() const noexcept { return world_; }
    const mpi_options& options() const noexcept { return world_.options(); }
    int rank() const noexcept { return world_.rank(); }
    int size() const noexcept { return world_.size(); }
    std::size_t group_count() const noexcept { return groups_; }
    std::size_t server_count() const noexcept { return servers_; }
    std::size_t group_size() const noexcept { return group_size_; }
    std::size_t workers() const noexcept { return groups_ * group_size_; }
    bool is_server() const noexcept { return static_cast<std::size_t>(rank()) >= workers(); }
    /// This rank's group (workers) or server index (servers).
    std::size_t group() const noexcept { return static_cast<std::size_t>(rank()) / group_size_; }
    std::size_t server() const noexcept { return static_cast<std::size_t>(rank()) - workers(); }
    int group_root(std::size_t g) const noexcept { return static_cast<int>(g * group_size_); }
    int server_rank(std::size_t s) const noexcept { return static_cast<int>(workers() + s); }

private:
    mpi world_;
    std::size_t groups_ = 1, servers_ = 0, group_size_ = 1;
};

/// A model's state in the hybrid scheme: what trainer<..., comm::hybrid> holds. The protocol of
/// mpi_session (communicators/mpi.hpp) on the workers, plus what the servers and the roots do:
/// is_server(), serve(update), updates_on_servers(), complete_remote(step, lr), finish_run(),
/// abandon().
template <class Model>
class hybrid_session {
public:
    using backend = typename Model::backend;
    using T = typename Model::value_type;
    /// Tells the trainer that updates may happen on servers (train/trainer.hpp).
    static constexpr bool remote_update = true;

    hybrid_session(const hybrid& h, Model& net)
        : net_(&net), layout_(h), control_(h.world().duplicate()), messages_(h.world().duplicate()) {
        if constexpr (!detail::host_addressable<backend>())
            throw error("lamina: comm::hybrid needs a backend whose memory MPI addresses directly (the host backend, "
                        "Kokkos host spaces); use comm::mpi on this backend");
        check_same_architecture(control_.handle(), net, "comm::hybrid");
        const mpi_options& o = h.options();
        plan_ = fusion_plan::build(net.parameter_segments(), sizeof(T), o.fusion ? o.first_bucket_bytes : 0,
                                   o.fusion ? o.bucket_bytes : 0);  // the same plan as each group's mpi_session
        // Collective over the world: workers (color 0) and servers (color 1); then the workers by group.
        side_ = std::make_unique<mpi>(control_.split(layout_.is_server() ? 1 : 0, layout_.rank()));
        if (!layout_.is_server()) {
            group_comm_ = std::make_unique<mpi>(side_->split(static_cast<int>(layout_.group()), layout_.rank()));
            group_ = std::make_unique<mpi_session<Model>>(*group_comm_, net);
        }
        if (layout_.server_count() == 0) return;
        std::vector<std::size_t> counts;
        for (const auto& b : plan_.buckets()) counts.push_back(b.count);
        shards_ = shard_map::balance(counts, sizeof(T), layout_.server_count());  // same error on every rank
        if (layout_.is_server()) {
            std::vector<int> roots;
            for (std::size_t g = 0; g < layout_.group_count(); ++g) roots.push_back(layout_.group_root(g));
            server_ = std::make_unique<parameter_server<T>>(messages_.handle(), roots, plan_.buckets(),
                                                            shards_.buckets_of(layout_.server()));
        } else if (is_root()) {
            std::vector<int> ranks;
            for (std::size_t s = 0; s < layout_.server_count(); ++s) ranks.push_back(layout_.server_rank(s));
            client_ = std::make_unique<parameter_client<T>>(messages_.handle(), ranks, plan_.buckets(), shards_,
                                                            layout_.group());
        }
    }
    hybrid_session(const hybrid_session&) = delete;
    hybrid_session& operator=(const hybrid_session&) = delete;

    /// The world rank; size(): the number of workers, over which the data is split (servers'
    /// ranks are >= size()).
    int rank() const noexcept { return layout_.rank(); }
    int size() const noexcept { return static_cast<int>(layout_.workers()); }
    const hybrid& layout() const noexcept { return layout_; }
    bool is_server() const noexcept { return layout_.is_server(); }
    bool is_root() const noexcept { return !is_server() && layout_.rank() == layout_.group_root(layout_.group()); }
    /// Ranks whose batches make one update (the group's).
    int ranks_per_update() const noexcept { return static_cast<int>(layout_.group_size()); }
    /// Whether the servers update the parameters (false: one group without servers updates itself).
    bool updates_on_servers() const noexcept { return layout_.server_count() > 0; }
    const fusion_plan& plan() const noexcept { return plan_; }
    const shard_map& shards() const noexcept { return shards_; }
    /// The group's data-parallel session (null on servers).
    mpi_session<Model>* group_session() noexcept { return group_.get(); }
    /// The server of this rank (null on workers): its update counts and timeline.
    const parameter_server<T>* server() const noexcept { return server_.get(); }
    /// The root's client (null elsewhere).
    const parameter_client<T>* client() const noexcept { return client_.get(); }

    // ---- collectives ---------------------------------------------------------------------------
    /// From world rank 0 to every rank, servers included.
    void broadcast(void* data, std::size_t bytes) {
        detail::in_int_pieces(bytes, [&](std::size_t off, int n) {
            detail::check_mpi(MPI_Bcast(static_cast<char*>(data) + off, n, MPI_BYTE, 0, control_.handle()), "MPI_Bcast");
        });
    }
    template <class U>
    void broadcast(std::vector<U>& v) {
        broadcast(v.data(), v.size() * sizeof(U));
    }
    /// Sum over the workers (evaluate(); servers never call it).
    void sum(double* v, std::size_t n) {
        if (is_server()) throw error("lamina: comm::hybrid: a server rank cannot take part in a sum over the workers");
        detail::in_int_pieces(n, [&](std::size_t off, int k) {
            detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, v + off, k, MPI_DOUBLE, MPI_SUM, side_->handle()),
                              "MPI_Allreduce");
        });
    }
    /// Every rank of the world must pass the same values (as mpi_session::agree).
    void agree(const std::uint64_t* values, const char* const* names, std::size_t n, const std::string& where) {
        agree_over(control_.handle(), layout_.size(), "comm::hybrid", values, names, n, where);
    }

    /// Makes `state` (a whole-model optimizer state tensor, the flat layout) hold on every rank
    /// the values of the servers that own each bucket (collective over the world).
    template <class U>
    void collect_shards(std::vector<U>& state) {
        static_assert(std::is_same_v<U, float> || std::is_same_v<U, double>, "lamina: comm::hybrid: float or double state");
        if (!updates_on_servers()) return;  // one group updating itself: every rank holds it all
        if (state.size() != plan_.total())
            throw error("lamina: comm::hybrid: an optimizer state tensor of " + std::to_string(state.size()) +
                        " values for " + std::to_string(plan_.total()) + " parameters");
        // Each value is owned by exactly one server: the others contribute zeros, so the sum is
        // the owner's value exactly.
        for (std::size_t k = 0; k < plan_.size(); ++k)
            if (!is_server() || shards_.owner(k) != layout_.server())
                std::fill(state.begin() + static_cast<std::ptrdiff_t>(plan_[k].offset),
                          state.begin() + static_cast<std::ptrdiff_t>(plan_[k].offset + plan_[k].count), U(0));
        detail::in_int_pieces(state.size(), [&](std::size_t off, int n) {
            detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, state.data() + off, n, detail::mpi_type<U>(), MPI_SUM,
                                            control_.handle()),
                              "MPI_Allreduce");
        });
    }
    /// The largest value over the world.
    std::uint64_t max_over_world(std::uint64_t v) {
        detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_UINT64_T, MPI_MAX, control_.handle()), "MPI_Allreduce");
        return v;
    }

    // ---- one step of a group (workers) ----------------------------------------------------------
    batch_statistics_reducer* statistics_reducer() noexcept { return group_->statistics_reducer(); }
    double loss_gradient_scale() const noexcept { return group_->loss_gradient_scale(); }
    void begin_step(double* metrics, std::size_t n) { group_->begin_step(metrics, n); }
    gradient_sink<T>* sink() noexcept { return group_->sink(); }
    void end_backward() { group_->end_backward(); }
    void finish_metrics() { group_->finish_metrics(); }
    void drain() { group_->drain(); }
    /// Without servers: the group updates itself (comm::mpi's step).
    template <class Update>
    void complete(Update&& update) {
        group_->complete(std::forward<Update>(update));
    }
    /// With servers: the root sends each averaged bucket as its sum arrives, receives the
    /// weights after the servers' update at `learning_rate` and broadcasts them in the group.
    void complete_remote(std::uint64_t step, double learning_rate) {
        T* w = net_->parameters();
        if (client_) {
            const T* g = net_->gradients();
            client_->begin(step, learning_rate);
            group_->complete([&](std::size_t k) { client_->gradient_ready(k, g + plan_[k].offset); });
            client_->finish(w);
        } else {
            group_->complete([](std::size_t) {});
        }
        group_->broadcast(w, plan_.total() * sizeof(T));  // from the group's rank 0, its root
    }
    /// The group has finished its run: the root sends done and receives the final weights (once
    /// every group is done), which the group then shares.
    void finish_run() {
        if (!updates_on_servers()) return;
        T* w = net_->parameters();
        if (client_) client_->done(w);
        group_->broadcast(w, plan_.total() * sizeof(T));
    }
    /// The group stops on an error: the servers stop waiting for it.
    void abandon() noexcept {
        if (!client_) return;
        try {
            client_->failed();
        } catch (...) {
        }
    }

    // ---- servers --------------------------------------------------------------------------------
    /// Serves every group until all have finished. update(k, lr) steps bucket k of the model's
    /// parameters from bucket k of its gradients.
    template <class Update>
    void serve(Update&& update) {
        server_->serve(net_->parameters(), net_->gradients(), std::forward<Update>(update));
    }

private:
    Model* net_;
    hybrid layout_;
    mpi control_, messages_;  // broadcasts, checks; the servers' messages
    std::unique_ptr<mpi> side_, group_comm_;
    fusion_plan plan_;
    shard_map shards_;
    std::unique_ptr<mpi_session<Model>> group_;
    std::unique_ptr<parameter_server<T>> server_;
    std::unique_ptr<parameter_client<T>> client_;
};

}  // namespace lamina::comm
