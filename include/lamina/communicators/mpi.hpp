// lamina: synchronous data-parallel training over MPI (any MPI-3 library).
//
//   #include <lamina/lamina.hpp>
//   #include <lamina/communicators/mpi.hpp>
//   MPI_Init(&argc, &argv);                                   // the application's job: lamina never
//   ...                                                       // calls MPI_Init or MPI_Finalize
//   lm::trainer fit{net, loss, opt, sched, lm::comm::mpi{MPI_COMM_WORLD}};
//   fit.run(data, lm::epochs{10}, lm::batch{32});             // 32 per rank, N*32 per step
//
// The same program runs on one process or thousands; every rank builds the same network and
// calls the trainer the same way. What the trainer then does (train/trainer.hpp):
//   - at construction every rank checks that all built the same architecture (a fingerprint of
//     the layer types and tensor sizes, communicators/architecture.hpp), else every rank throws
//     the same error; at the start of each run (and the first train_batch) parameters, running
//     state, optimizer state and the training position are broadcast from rank 0;
//   - each step, backward reports every parameter gradient as soon as it is final; the session
//     records it in its fusion bucket (communicators/fusion_buckets.hpp) and starts the sum of a
//     bucket over the ranks as soon as it is full (the gradient path, communicators/mpi_exchange.hpp),
//     driving MPI's progress between layers or from a communication thread (comm::progress);
//     the optimizer updates each bucket as soon as its sum has arrived
//     (communicators/bucketed_optimizer.hpp). Gradients are always dense. The average (sum / N)
//     costs nothing extra: the loss gradient is scaled by 1/N before backward, which every
//     parameter gradient inherits (only when a node adds its own loss term, e.g. a VAE's KL, is
//     each bucket scaled after its sum instead);
//   - batch norm keeps its running statistics per rank unless synchronize_batch_norm is set
//     (then it normalises with the global batch's statistics: layers/batch_statistics.hpp);
//   - the loss and metrics are averaged over the ranks, progress and files come from rank 0.
//
// A session holds two duplicates of the communicator: one carries only the gradient buckets (so
// a communication thread can use it alone), the other everything else (checks, broadcasts,
// metrics, batch statistics). mpi::split makes sub-communicators (groups of ranks) for schemes
// built of several such groups; a different gradient path is another bucket_exchange.
//
// Errors of MPI calls are returned, not fatal, on lamina's duplicates and thrown as
// lamina::error naming the call.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../layers/batch_statistics.hpp"
#include "../network/leaf_node.hpp"
#include "architecture.hpp"
#include "fusion_buckets.hpp"
#include "mpi_exchange.hpp"
#include "none.hpp"
#include "staging.hpp"

namespace lamina::comm {

/// Sees the gradient exchange happen (tests check overlap with it; tools can trace it).
class observer {
public:
    virtual ~observer() = default;
    /// Bucket `bucket` (elements [offset, offset + count) of the gradient buffer) was handed to
    /// MPI; `during_backward`: by a gradient report, before backward returned.
    virtual void bucket_started(std::size_t bucket, std::size_t offset, std::size_t count, bool during_backward) {
        (void)bucket, (void)offset, (void)count, (void)during_backward;
    }
    /// Its sum has arrived (and was copied back from host staging).
    virtual void bucket_finished(std::size_t bucket) { (void)bucket; }
};

struct mpi_options {
    /// Fusion bucket threshold (PyTorch DDP's 25 MiB). Buckets hold whole layers' gradients.
    std::size_t bucket_bytes = std::size_t(25) << 20;
    /// The first bucket's (DDP's 1 MiB): small, so the first sum starts early in backward.
    std::size_t first_bucket_bytes = std::size_t(1) << 20;
    /// false: one sum per layer's gradients (thresholds 0).
    bool fusion = true;
    /// false: every sum starts after backward (blocking MPI_Allreduce per bucket).
    bool overlap = true;
    comm::progress progress = progress::between_layers;
    /// What sums a bucket that overlaps backward (progress::between_layers): lamina's
    /// halving_doubling schedule (communicators/allreduce_schedule.hpp: point-to-point rounds
    /// driven between layers; the default) or the MPI library's MPI_Iallreduce. The default is
    /// the measured faster one: with Open MPI 4.1 at 2 ranks (bench/bench_allreduce.cpp) the
    /// schedule sums ResNet-20's buckets 5% faster than a blocking MPI_Allreduce of the same
    /// bytes, libnbc's MPI_Iallreduce 29% slower. Another MPI library or network may reverse it.
    comm::allreduce_algorithm allreduce_algorithm = allreduce_algorithm::halving_doubling;
    comm::gpu_aware gpu_aware = gpu_aware::detect;
    /// Copy buckets through host staging buffers even when MPI could address the model's
    /// memory (runs the path of a device without GPU-aware MPI on any backend: tests).
    bool stage_through_host = false;
    /// Batch norm normalises with the statistics of the global batch, and its running
    /// statistics stay equal on every rank.
    bool synchronize_batch_norm = false;
    comm::observer* observer = nullptr;
};

template <class Model>
class mpi_session;

/// The MPI communicator policy: the ranks of an MPI communicator train one model together.
class mpi {
public:
    static constexpr bool distributed = true;
    static constexpr bool is_communicator = true;
    template <class Model>
    using session = mpi_session<Model>;

    /// Uses `c` (not owned: MPI_COMM_WORLD, or a communicator of the application's). MPI must
    /// be initialised.
    explicit mpi(MPI_Comm c, mpi_options o = {}) : options_(o) {
        int init = 0;
        MPI_Initialized(&init);
        if (!init || detail::mpi_finalized())
            throw error("lamina: comm::mpi needs an initialised MPI (lamina never calls MPI_Init: call MPI_Init or "
                        "MPI_Init_thread first, and destroy trainers before MPI_Finalize)");
        if (c == MPI_COMM_NULL) throw argument_error("lamina: comm::mpi: the communicator is MPI_COMM_NULL");
        handle_ = std::make_shared<holder>(c, false);
        detail::check_mpi(MPI_Comm_rank(c, &rank_), "MPI_Comm_rank");
        detail::check_mpi(MPI_Comm_size(c, &size_), "MPI_Comm_size");
    }

    int rank() const noexcept { return rank_; }
    int size() const noexcept { return size_; }
    MPI_Comm handle() const noexcept { return handle_->comm; }
    const mpi_options& options() const noexcept { return options_; }
    mpi_options& options() noexcept { return options_; }

    /// The ranks that pass the same `color`, ordered by `key` (MPI_Comm_split; collective over
    /// this communicator): a group of ranks, e.g. for a hybrid scheme of several data-parallel
    /// groups. The new communicator is freed with the last copy of the returned policy.
    mpi split(int color, int key) const {
        MPI_Comm c = MPI_COMM_NULL;
        detail::check_mpi(MPI_Comm_split(handle(), color, key, &c), "MPI_Comm_split");
        return mpi(std::make_shared<holder>(c, true), options_);
    }
    /// A duplicate of the communicator that returns errors instead of aborting (collective).
    mpi duplicate() const {
        MPI_Comm c = MPI_COMM_NULL;
        detail::check_mpi(MPI_Comm_dup(handle(), &c), "MPI_Comm_dup");
        MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
        return mpi(std::make_shared<holder>(c, true), options_);
    }

private:
    struct holder {
        MPI_Comm comm;
        bool owned;
        holder(MPI_Comm c, bool o) : comm(c), owned(o) {}
        ~holder() {
            if (owned && comm != MPI_COMM_NULL && !detail::mpi_finalized()) MPI_Comm_free(&comm);
        }
        holder(const holder&) = delete;
        holder& operator=(const holder&) = delete;
    };
    mpi(std::shared_ptr<holder> h, mpi_options o) : handle_(std::move(h)), options_(o) {
        detail::check_mpi(MPI_Comm_rank(handle_->comm, &rank_), "MPI_Comm_rank");
        detail::check_mpi(MPI_Comm_size(handle_->comm, &size_), "MPI_Comm_size");
    }

    std::shared_ptr<holder> handle_;
    mpi_options options_;
    int rank_ = 0, size_ = 1;
};

namespace detail {
/// Waits for the backend's kernels before MPI reads memory they write (Kokkos launches
/// asynchronously; the host backend returns when its kernels are done).
template <class Backend, class = void>
struct has_context_space : std::false_type {};
template <class Backend>
struct has_context_space<Backend, std::void_t<decltype(std::declval<const typename Backend::context&>().space().fence())>>
    : std::true_type {};
template <class Backend>
void fence_backend(const typename Backend::context& c) {
    if constexpr (has_context_space<Backend>::value) c.space().fence();
    else node_detail::fence<Backend>(c);
}
}  // namespace detail

/// Checks that every rank of `comm` (`ranks` of them) passes the same values[i] (named
/// names[i]); otherwise every rank throws the same argument_error naming `who`, `where`, the
/// value and its range over the ranks (collective).
inline void agree_over(MPI_Comm comm, int ranks, const char* who, const std::uint64_t* values, const char* const* names,
                       std::size_t n, const std::string& where) {
    std::vector<std::uint64_t> lo(values, values + n), hi(values, values + n);
    detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, lo.data(), static_cast<int>(n), MPI_UINT64_T, MPI_MIN, comm),
                      "MPI_Allreduce");
    detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, hi.data(), static_cast<int>(n), MPI_UINT64_T, MPI_MAX, comm),
                      "MPI_Allreduce");
    std::string diff;
    for (std::size_t i = 0; i < n; ++i)
        if (lo[i] != hi[i])
            diff += std::string(diff.empty() ? "" : "; ") + names[i] + " ranges from " + std::to_string(lo[i]) + " to " +
                    std::to_string(hi[i]);
    if (!diff.empty())
        throw argument_error(std::string("lamina: ") + who + ": " + where + ": the " + std::to_string(ranks) +
                             " ranks must pass the same values, but " + diff);
}

/// Every rank of `comm` learns every rank's fingerprint, parameter and state counts; all throw
/// the same message when any differs from rank 0's (`who` names the communicator policy).
template <class Model>
void check_same_architecture(MPI_Comm comm, const Model& net, const char* who) {
    int size = 1;
    detail::check_mpi(MPI_Comm_size(comm, &size), "MPI_Comm_size");
    const std::uint64_t mine[3] = {architecture_hash(net), Model::parameter_count, Model::state_count};
    std::vector<std::uint64_t> all(3 * static_cast<std::size_t>(size));
    detail::check_mpi(MPI_Allgather(mine, 3, MPI_UINT64_T, all.data(), 3, MPI_UINT64_T, comm), "MPI_Allgather");
    std::string differ;
    std::size_t count = 0, first = 0;
    for (std::size_t r = 1; r < static_cast<std::size_t>(size); ++r)
        if (all[3 * r] != all[0] || all[3 * r + 1] != all[1] || all[3 * r + 2] != all[2]) {
            if (count == 0) first = r;
            if (count < 8) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
            ++count;
        }
    if (!count) return;
    if (count > 8) differ += " and " + std::to_string(count - 8) + " more";
    auto describe = [&](std::size_t r) {
        char fp[32];
        std::snprintf(fp, sizeof fp, "%016llx", static_cast<unsigned long long>(all[3 * r]));
        return "rank " + std::to_string(r) + " has " + std::to_string(all[3 * r + 1]) + " parameters and " +
               std::to_string(all[3 * r + 2]) + " running-state values (architecture fingerprint " + fp + ")";
    };
    throw error(std::string("lamina: ") + who + ": the ranks built different networks: " + describe(0) + ", " +
                describe(first) + "; rank" + (count > 1 ? "s " : " ") + differ + " differ" + (count > 1 ? "" : "s") +
                " from rank 0. Every rank must build the same network type (layers, sizes, scalar type)");
}

/// Timings of the last step's gradient exchange.
struct exchange_stats {
    std::size_t buckets = 0;
    std::size_t started_during_backward = 0;  // buckets handed to MPI before backward returned
    std::size_t bytes = 0;
    double wait_seconds = 0;  // time the step spent waiting for sums after backward
};

/// A model's data-parallel training state over an MPI communicator: what trainer<..., comm::mpi>
/// holds. The protocol the trainer follows (a further communicator provides the same):
///   construction (collective): architecture check, fusion plan;
///   broadcast / sum / agree: blocking collectives of the control communicator;
///   per step: begin_step(metrics) -> backward(sink()) -> end_backward() -> finish_metrics()
///             -> complete(update) (or drain() to abandon the update).
template <class Model>
class mpi_session {
public:
    using backend = typename Model::backend;
    using T = typename Model::value_type;
    using context = typename backend::context;

    mpi_session(const mpi& c, Model& net)
        : net_(&net), control_(c.duplicate()), gradients_(c.duplicate()), options_(c.options()),
          rank_(c.rank()), size_(c.size()), sink_(this), reducer_(this) {
        if (options_.progress == progress::thread && options_.overlap) {
            int level = MPI_THREAD_SINGLE;
            MPI_Query_thread(&level);
            if (level < MPI_THREAD_MULTIPLE)
                throw error("lamina: comm::mpi: progress::thread runs MPI calls on a communication thread and needs "
                            "MPI initialised with MPI_Init_thread(..., MPI_THREAD_MULTIPLE, ...); this process has thread "
                            "level " + std::to_string(level) + " (use progress::between_layers)");
        }
        check_same_architecture(control_.handle(), net, "comm::mpi");
        const std::size_t first = options_.fusion ? options_.first_bucket_bytes : 0;
        const std::size_t rest = options_.fusion ? options_.bucket_bytes : 0;
        plan_ = fusion_plan::build(net.parameter_segments(), sizeof(T), first, rest);
        fill_ = bucket_fill(&plan_);
        std::vector<std::size_t> counts;
        for (const auto& b : plan_.buckets()) counts.push_back(b.count);
        exchange_ = std::make_unique<allreduce_exchange<T>>(gradients_.handle(), counts, options_.overlap,
                                                            options_.progress, options_.allreduce_algorithm);
        direct_ = !options_.stage_through_host &&
                  (detail::host_addressable<backend>() || options_.gpu_aware == gpu_aware::yes ||
                   (options_.gpu_aware == gpu_aware::detect && detail::library_gpu_aware()));
        if (!direct_) staging_.allocate(plan_.total());
        // The average can ride on the loss gradient unless a node adds a loss term of its own
        // inside backward (it would not be scaled).
        for (const auto* h : net.leaves())
            if (h->adds_loss()) scale_after_ = true;
    }
    mpi_session(const mpi_session&) = delete;
    mpi_session& operator=(const mpi_session&) = delete;

    int rank() const noexcept { return rank_; }
    int size() const noexcept { return size_; }
    const fusion_plan& plan() const noexcept { return plan_; }
    const mpi_options& options() const noexcept { return options_; }
    /// Whether the buckets go to MPI in place (else through host staging buffers).
    bool direct() const noexcept { return direct_; }
    const exchange_stats& last_step() const noexcept { return stats_; }
    /// The communicator the gradient buckets travel on (a duplicate of the policy's).
    MPI_Comm gradient_communicator() const noexcept { return gradients_.handle(); }
    /// Bucket sizes in elements, in the order buckets start.
    std::vector<std::size_t> bucket_counts() const {
        std::vector<std::size_t> counts;
        for (const auto& b : plan_.buckets()) counts.push_back(b.count);
        return counts;
    }
    /// Replaces the gradient path (default: allreduce_exchange, the sum over the ranks), e.g.
    /// by one that reduces to a group root and trades with parameter servers. Between steps only.
    void set_exchange(std::unique_ptr<bucket_exchange<T>> e) {
        if (!e) throw argument_error("lamina: comm::mpi: set_exchange needs an exchange (got null)");
        if (exchange_ && exchange_->busy())
            throw error("lamina: comm::mpi: set_exchange while buckets are being exchanged (call it between steps)");
        exchange_ = std::move(e);
    }

    // ---- blocking collectives on the control communicator ------------------------------------
    /// bytes at `data` from rank 0 to every rank.
    void broadcast(void* data, std::size_t bytes) {
        detail::in_int_pieces(bytes, [&](std::size_t off, int n) {
            detail::check_mpi(MPI_Bcast(static_cast<char*>(data) + off, n, MPI_BYTE, 0, control_.handle()), "MPI_Bcast");
        });
    }
    template <class U>
    void broadcast(std::vector<U>& v) {
        static_assert(std::is_trivially_copyable_v<U>, "lamina: comm::mpi broadcasts plain values");
        broadcast(v.data(), v.size() * sizeof(U));
    }
    /// v[0..n) becomes the sum over the ranks.
    void sum(double* v, std::size_t n) {
        detail::in_int_pieces(n, [&](std::size_t off, int k) {
            detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, v + off, k, MPI_DOUBLE, MPI_SUM, control_.handle()),
                              "MPI_Allreduce");
        });
    }
    /// Checks that every rank passes the same values[i] (named names[i]); otherwise every rank
    /// throws the same argument_error naming `where`, the value and its range over the ranks.
    void agree(const std::uint64_t* values, const char* const* names, std::size_t n, const std::string& where) {
        agree_over(control_.handle(), size_, "comm::mpi", values, names, n, where);
    }
    /// Batch norm's reducer when synchronize_batch_norm is set (else null).
    batch_statistics_reducer* statistics_reducer() noexcept {
        return options_.synchronize_batch_norm && size_ > 1 ? &reducer_ : nullptr;
    }
    /// The factor the trainer applies to the loss gradient before backward (1/N, or 1 when
    /// the buckets are scaled after their sums instead).
    double loss_gradient_scale() const noexcept { return scale_after_ ? 1.0 : 1.0 / double(size_); }

    // ---- one step -----------------------------------------------------------------------------
    /// Arms the buckets for a backward pass and starts summing `metrics[0..n)` (host doubles:
    /// the loss and what else the trainer averages) over the ranks.
    void begin_step(double* metrics, std::size_t n) {
        grads_ = net_->gradients();
        fill_.reset();
        launched_ = 0;
        stats_ = exchange_stats{};
        stats_.buckets = plan_.size();
        stats_.bytes = plan_.total() * sizeof(T);
        detail::check_mpi(MPI_Iallreduce(MPI_IN_PLACE, metrics, static_cast<int>(n), MPI_DOUBLE, MPI_SUM,
                                         control_.handle(), &metrics_request_),
                          "MPI_Iallreduce");
    }
    /// What backward reports to: null without overlap (every bucket then starts at end_backward).
    gradient_sink<T>* sink() noexcept { return options_.overlap ? &sink_ : nullptr; }
    /// Backward has returned: starts the buckets not started yet (all of them without overlap).
    void end_backward() {
        fill_.complete_all();
        launch_ready(false);
    }
    /// Waits for the metrics' sum (begin_step's array then holds it).
    void finish_metrics() {
        detail::check_mpi(MPI_Wait(&metrics_request_, MPI_STATUS_IGNORE), "MPI_Wait");
    }
    /// For each bucket in order: waits for its sum and calls update(k) (the optimizer's update of
    /// that bucket), driving the other buckets' progress in between.
    template <class Update>
    void complete(Update&& update) {
        const auto t0 = std::chrono::steady_clock::now();
        double updating = 0;
        for (std::size_t k = 0; k < plan_.size(); ++k) {
            finish(k);
            const auto u0 = std::chrono::steady_clock::now();
            update(k);
            updating += std::chrono::duration<double>(std::chrono::steady_clock::now() - u0).count();
            exchange_->progress();
        }
        stats_.wait_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - updating;
    }
    /// Waits for every bucket without updating (the step is dropped: a non-finite loss).
    void drain() {
        for (std::size_t k = 0; k < plan_.size(); ++k) finish(k);
    }

private:
    class bucket_sink final : public gradient_sink<T> {
    public:
        explicit bucket_sink(mpi_session* s) : s_(s) {}
        void ready(const T* g, std::size_t n) override { s_->report(g, n); }

    private:
        mpi_session* s_;
    };
    class sum_reducer final : public batch_statistics_reducer {
    public:
        explicit sum_reducer(mpi_session* s) : s_(s) {}
        void sum(double* values, std::size_t n) override { s_->sum(values, n); }

    private:
        mpi_session* s_;
    };

    void report(const T* g, std::size_t n) {
        if (g < grads_ || g >= grads_ + plan_.total())
            throw error("lamina: comm::mpi: backward reported a gradient outside the model's gradient buffer");
        fill_.report(static_cast<std::size_t>(g - grads_), n);
        launch_ready(true);
        exchange_->progress();
    }
    void launch_ready(bool during_backward) {
        if (launched_ < fill_.ready_prefix() && direct_) detail::fence_backend<backend>(net_->context());
        for (; launched_ < fill_.ready_prefix(); ++launched_) {
            const bucket_range& b = plan_[launched_];
            T* data = grads_ + b.offset;
            if (!direct_) {
                backend::download(net_->context(), staging_.data() + b.offset, static_cast<const T*>(data), b.count);
                data = staging_.data() + b.offset;
            }
            if (options_.observer) options_.observer->bucket_started(launched_, b.offset, b.count, during_backward);
            if (during_backward) ++stats_.started_during_backward;
            exchange_->start(launched_, data, b.count);
        }
    }
    void finish(std::size_t k) {
        exchange_->wait(k);
        const bucket_range& b = plan_[k];
        if (!direct_) backend::upload(net_->context(), grads_ + b.offset, static_cast<const T*>(staging_.data() + b.offset), b.count);
        if (scale_after_) backend::scale(net_->context(), b.count, static_cast<T>(1.0 / double(size_)), grads_ + b.offset);
        if (options_.observer) options_.observer->bucket_finished(k);
    }

    Model* net_;
    mpi control_, gradients_;
    mpi_options options_;
    int rank_, size_;
    fusion_plan plan_;
    bucket_fill fill_;
    std::unique_ptr<bucket_exchange<T>> exchange_;
    bool direct_ = true, scale_after_ = false;
    detail::staging_buffer<T> staging_;
    T* grads_ = nullptr;
    std::size_t launched_ = 0;
    MPI_Request metrics_request_ = MPI_REQUEST_NULL;
    exchange_stats stats_;
    bucket_sink sink_;
    sum_reducer reducer_;
};

}  // namespace lamina::comm
