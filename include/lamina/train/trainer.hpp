// lamina: the training loop. A trainer binds a model, a loss, an optimizer and a learning
// rate schedule; run() trains for epochs with shuffling and callbacks, evaluate() measures.
//
//   lamina::trainer fit{net, lamina::loss::softmax_cross_entropy{}, lamina::optim::sgd{0.05, 0.9}};
//   fit.run(train, lamina::epochs{12}, lamina::batch{64}, lamina::progress_bar{});
//
// All buffers are planned on the first step; steps 2..N allocate nothing. Every step's loss
// is checked (one scalar, already on the host): by default a NaN or infinite loss stops the
// run with a numeric_error; on_non_finite() chooses to skip such batches or to carry on.
// A network with several outputs (heads<...>) takes a loss::per_output (one weighted loss per
// output); the reported loss includes what nodes add (a VAE's KL term).
//
// The communicator is the last template argument (communicators/none.hpp): comm::none, one
// process, compiles to exactly the loop above; with comm::mpi (communicators/mpi.hpp) every
// rank runs the same program on its part of each global batch:
//
//   lm::trainer fit{net, loss, opt, sched, lm::comm::mpi{MPI_COMM_WORLD}};
//   fit.sampling(lm::distributed_sampler::reshuffle_every(1));   // the default
//   fit.scale_learning_rate({256, 5});     // linear scaling rule for the global batch, 5-epoch warm-up
//   fit.run(train, lm::epochs{90}, lm::batch{32});               // batch per rank
//
// run() and train_batch() then average gradients over the ranks (overlapped with backward),
// report losses averaged over the ranks and global images/s, and run callbacks marked
// root_only (progress_bar, csv_log, checkpoint_every) on rank 0 only; evaluate() splits the
// dataset over the ranks and returns the metrics of the whole of it on every rank. Every call
// on a distributed trainer is collective: every rank makes it, with the same arguments.
// With comm::hybrid (communicators/hybrid.hpp) groups of ranks train as above and meet through
// parameter-server ranks; the servers serve inside run(), so the program is the same on all.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../communicators/bucketed_optimizer.hpp"
#include "../communicators/none.hpp"
#include "../core/error.hpp"
#include "../core/philox.hpp"
#include "../data/dataset.hpp"
#include "../data/distributed_sampler.hpp"
#include "../layers/batch_statistics.hpp"
#include "../losses/per_output.hpp"
#include "../schedules/schedules.hpp"
#include "training_types.hpp"

namespace lamina {

namespace detail {
/// A single loss or a loss::per_output seen the same way: part K applies to output K, its
/// targets sit at target_offset<K> of a sample's targets.
template <class Model, class Loss>
struct loss_parts {
    static constexpr bool multi = loss::is_per_output<Loss>::value;
    static constexpr std::size_t count = [] {
        if constexpr (multi) return Loss::count;
        else return std::size_t(1);
    }();
    static_assert(count == Model::outputs,
                  "lamina::trainer: a network with several outputs needs one loss per output (loss::per_output)");
    template <std::size_t K, bool = multi>
    struct part_type {
        using type = Loss;
    };
    template <std::size_t K>
    struct part_type<K, true> {
        using type = decltype(std::get<K>(std::declval<Loss&>().parts).loss);
    };
    template <std::size_t K>
    using loss_type = typename part_type<K>::type;
    template <std::size_t K>
    static auto& loss(Loss& l) {
        if constexpr (multi) return std::get<K>(l.parts).loss;
        else return l;
    }
    template <std::size_t K>
    static double weight(const Loss& l) {
        if constexpr (multi) return std::get<K>(l.parts).weight;
        else return (void)l, 1.0;
    }
    template <std::size_t K>
    static constexpr std::size_t target_size = std::decay_t<loss_type<K>>::target_size(Model::output_sizes[K]);
    template <std::size_t... K>
    static constexpr std::size_t sum_sizes(std::index_sequence<K...>) {
        return (std::size_t(0) + ... + target_size<K>);
    }
    template <std::size_t K>
    static constexpr std::size_t target_offset = sum_sizes(std::make_index_sequence<K>{});
    static constexpr std::size_t total_target_size = target_offset<count - 1> + target_size<count - 1>;
    /// The output whose accuracy evaluate() reports: the first classification part.
    static constexpr std::size_t classifier = [] {
        if constexpr (multi) return Loss::first_classifier;
        else return Loss::classification ? std::size_t(0) : std::size_t(1);
    }();
    static constexpr bool has_classifier = classifier < count;
};

/// What the trainer holds for its communicator: nothing for comm::none, a session otherwise.
template <class Comm, class Model, bool = Comm::distributed>
struct session_of {
    using type = comm::no_session;
};
template <class Comm, class Model>
struct session_of<Comm, Model, true> {
    using type = typename Comm::template session<Model>;
};

/// Whether a session may hand the optimizer step to other ranks (comm::hybrid's parameter
/// servers, communicators/hybrid.hpp): it then also serves, finishes runs and abandons them.
template <class Session, class = void>
struct updates_remotely : std::false_type {};
template <class Session>
struct updates_remotely<Session, std::enable_if_t<Session::remote_update>> : std::true_type {};

/// A callback that writes checkpoints (io/checkpoint.hpp's checkpoint_every) has
/// `static constexpr bool writes_checkpoints = true` and `bool enabled() const`.
template <class C, class = void>
struct writes_checkpoints : std::false_type {};
template <class C>
struct writes_checkpoints<C, std::enable_if_t<C::writes_checkpoints>> : std::true_type {};

/// Calls session.abandon() when destroyed by an exception (comm::hybrid: the servers stop
/// waiting for the group); nothing for other communicators.
template <class Session, bool Remote>
struct abandon_on_error {
    explicit abandon_on_error(Session&) noexcept {}
};
template <class Session>
struct abandon_on_error<Session, true> {
    explicit abandon_on_error(Session& s) noexcept : session(&s), exceptions(std::uncaught_exceptions()) {}
    ~abandon_on_error() {
        if (std::uncaught_exceptions() > exceptions) session->abandon();
    }
    abandon_on_error(const abandon_on_error&) = delete;
    abandon_on_error& operator=(const abandon_on_error&) = delete;
    Session* session;
    int exceptions;
};

/// A callback with `static constexpr bool root_only = true` (output, files) runs on rank 0 only.
template <class C, class = void>
struct root_only_callback : std::false_type {};
template <class C>
struct root_only_callback<C, std::enable_if_t<C::root_only>> : std::true_type {};
}  // namespace detail

/// The linear scaling rule with gradual warm-up (Goyal et al. 2017), applied to the global
/// batch (batch per rank x ranks): the schedule's rate, given for `base_batch`, is multiplied
/// by k = global batch / base_batch, ramping linearly from 1 to k over `warmup_epochs`.
struct linear_scaling_rule {
    std::size_t base_batch = 256;
    double warmup_epochs = 5;
};

template <class Model, class Loss, class Optimizer, class Schedule = schedule::constant, class Comm = comm::none>
class trainer {
public:
    using backend = typename Model::backend;
    using T = typename Model::value_type;
    using communicator = Comm;
    static constexpr bool distributed = Comm::distributed;
    using session_type = typename detail::session_of<Comm, Model>::type;
    /// With a distributed communicator, optimizers that update each tensor on its own update
    /// each fusion bucket as soon as its average has arrived (communicators/bucketed_optimizer.hpp).
    static constexpr bool steps_by_bucket = distributed && comm::steps_by_segment<Optimizer>::value;
    using optimizer_state = std::conditional_t<steps_by_bucket, comm::bucketed_state<Optimizer, backend, T>,
                                               typename Optimizer::template state<backend, T>>;
    using parts = detail::loss_parts<Model, Loss>;
    /// With comm::hybrid the optimizer state that counts lives on the parameter servers.
    static constexpr bool optimizer_on_servers = detail::updates_remotely<session_type>::value;
    static_assert(!optimizer_on_servers || steps_by_bucket,
                  "lamina::trainer: comm::hybrid's servers update bucket by bucket: the optimizer must declare "
                  "steps_by_segment (communicators/bucketed_optimizer.hpp)");

    trainer(Model& net, Loss loss, Optimizer opt, Schedule sched = Schedule{}, Comm comm = Comm{})
        : net_(net), loss_(loss), opt_(opt), sched_(sched), comm_(comm), session_(make_session(comm_, net)),
          opt_state_(make_state(opt, session_, net)), shuffle_seed_(net.seed_value() ^ 0x5bd1e995u) {}
    /// trainer{net, loss, opt, lm::comm::mpi{...}}: a communicator without a schedule.
    template <class C, std::enable_if_t<std::is_same_v<C, Comm> && !std::is_same_v<C, Schedule> &&
                                            comm::is_communicator<C>::value,
                                        int> = 0>
    trainer(Model& net, Loss loss, Optimizer opt, C comm) : trainer(net, loss, opt, Schedule{}, comm) {}

    Model& model() noexcept { return net_; }
    const Loss& loss() const noexcept { return loss_; }
    const Optimizer& optimizer() const noexcept { return opt_; }
    optimizer_state& optimizer_state_ref() noexcept { return opt_state_; }
    std::size_t epoch() const noexcept { return epoch_; }
    std::uint64_t global_step() const noexcept { return step_; }
    std::uint64_t shuffle_seed() const noexcept { return shuffle_seed_; }
    void set_shuffle_seed(std::uint64_t s) noexcept { shuffle_seed_ = s; }
    /// What a non-finite loss does (default non_finite::stop).
    trainer& on_non_finite(non_finite policy) noexcept {
        non_finite_ = policy;
        return *this;
    }
    non_finite non_finite_policy() const noexcept { return non_finite_; }
    /// Batches dropped so far for a non-finite loss (non_finite::skip_batch).
    std::uint64_t skipped_steps() const noexcept { return skipped_; }
    /// Restores the position in training (used when resuming from a checkpoint). A distributed
    /// trainer broadcasts rank 0's state again before its next step.
    void set_position(std::size_t epoch, std::uint64_t step) noexcept {
        epoch_ = epoch;
        step_ = step;
        synchronized_ = false;
    }

    // ---- distribution ---------------------------------------------------------------------
    const Comm& communicator_policy() const noexcept { return comm_; }
    /// This process's rank and the number of ranks (0 and 1 for comm::none).
    int rank() const noexcept {
        if constexpr (distributed) return session_.rank();
        else return 0;
    }
    int ranks() const noexcept {
        if constexpr (distributed) return session_.size();
        else return 1;
    }
    /// Rank 0: the one that prints and writes files.
    bool is_root() const noexcept { return rank() == 0; }
    /// The communicator's session (fusion plan, last step's exchange statistics).
    session_type& session() noexcept { return session_; }
    /// How run() spreads the dataset over the ranks (data/distributed_sampler.hpp).
    trainer& sampling(distributed_sampler s) noexcept {
        sampler_ = s;
        return *this;
    }
    const distributed_sampler& sampler() const noexcept { return sampler_; }
    /// Applies the linear scaling rule to the global batch in run() (off by default).
    trainer& scale_learning_rate(linear_scaling_rule r) {
        if (r.base_batch == 0) throw argument_error("lamina: linear_scaling_rule: base_batch must be positive");
        if (!(r.warmup_epochs >= 0)) throw argument_error("lamina: linear_scaling_rule: warmup_epochs must be >= 0");
        scaling_ = r;
        scaling_on_ = true;
        return *this;
    }
    /// The factor the linear scaling rule gives after warm-up for `batch` samples per rank
    /// (1 when the rule is off).
    double learning_rate_scale(std::size_t batch) const noexcept {
        return scaling_on_ ? static_cast<double>(batch) * ranks_per_update() / static_cast<double>(scaling_.base_batch)
                           : 1.0;
    }
    /// The ranks whose batches make one update: ranks(), or with comm::hybrid a group's.
    int ranks_per_update() const noexcept {
        if constexpr (optimizer_on_servers) return session_.ranks_per_update();
        else return ranks();
    }
    /// Makes every rank hold rank 0's parameters, running state, optimizer state and position
    /// (collective). run() does it at its start and train_batch() before its first step and
    /// after set_position (a checkpoint load); call it after loading a checkpoint on some ranks only.
    void synchronize() {
        if constexpr (distributed) {
            auto& c = net_.context();
            std::vector<T> p = net_.get_parameters();
            session_.broadcast(p);
            net_.set_parameters(p);
            if constexpr (Model::state_count > 0) {
                std::vector<T> st = net_.get_state();
                session_.broadcast(st);
                net_.set_state(st);
            }
            auto opt = opt_state_.save(c);
            for (auto& entry : opt) session_.broadcast(entry.second);
            std::uint64_t pos[6] = {epoch_, step_, shuffle_seed_, net_.seed_value(), opt_state_.steps(), skipped_};
            session_.broadcast(pos, sizeof pos);
            opt_state_.load(c, opt, pos[4]);
            epoch_ = static_cast<std::size_t>(pos[0]);
            step_ = pos[1];
            shuffle_seed_ = pos[2];
            if (pos[3] != net_.seed_value()) net_.restore_seed(pos[3]);
            skipped_ = pos[5];
        }
        synchronized_ = true;
    }

    /// comm::hybrid, after run(): every rank gets the servers' optimizer state (each fusion
    /// bucket's from the server that owns it) and their step count, so that a checkpoint written
    /// now holds it (collective over the world). Nothing to do for other communicators.
    void gather_optimizer_state() {
        if constexpr (optimizer_on_servers) {
            auto& c = net_.context();
            auto st = opt_state_.save(c);
            for (auto& entry : st) session_.collect_shards(entry.second);
            const std::uint64_t steps = session_.max_over_world(opt_state_.steps());
            opt_state_.load(c, st, steps);
            state_gathered_ = true;
        }
    }
    /// Whether optimizer_state_ref() holds the state training uses (false with comm::hybrid
    /// until gather_optimizer_state(), and again after the next run()).
    bool optimizer_state_current() const noexcept { return !optimizer_on_servers || state_gathered_; }

    /// Trains `e.count` more epochs on `data` in batches of `b.size` samples (the last batch
    /// of an epoch may be smaller), shuffling every epoch.
    template <class... Callbacks>
    void run(dataset_view<T> data, epochs e, batch b, Callbacks&&... callbacks) {
        check_data(data, "run");
        check_targets(data, nullptr, data.size(), "run");
        if (b.size == 0) throw argument_error("lamina: batch size must be positive");
        std::size_t samples = data.size();  // this rank's samples per epoch
        if constexpr (distributed) {
            const std::uint64_t v[5] = {data.size(), b.size, e.count, static_cast<std::uint64_t>(sampler_.mode()),
                                        sampler_.every()};
            const char* names[5] = {"the dataset size", "the batch size", "the number of epochs", "the sampling mode",
                                    "the sampler's reshuffle period"};
            session_.agree(v, names, 5, "run()");
            if constexpr (optimizer_on_servers) {
                const char* which = nullptr;
                (refuse_checkpoints(callbacks, which), ...);
                if (which) throw argument_error(which);
                // Later runs keep the servers' optimizer state (world rank 0's is not stepped).
                state_gathered_ = false;
                if (!synchronized_) synchronize();
                if (session_.is_server()) {
                    net_.plan(1);  // the gradient buffer the groups' gradients are received into
                    auto& c = net_.context();
                    T* w = net_.parameters();
                    const T* g = net_.gradients();
                    session_.serve([&](std::size_t k, double lr) { opt_state_.step_bucket(k, c, w, g, lr); });
                    epoch_ += e.count;
                    return;
                }
            } else {
                synchronize();
            }
            samples = sampler_.samples_per_rank(data.size(), static_cast<std::size_t>(ranks()));
        }
        std::size_t bs = std::min(b.size, samples);
        std::size_t steps_per_epoch = (samples + bs - 1) / bs;
        steps_per_epoch_ = steps_per_epoch;
        prepare(bs, data.size());  // order_ holds data.size() >= samples indices (step_on must not grow it)
        std::size_t last = epoch_ + e.count;
        auto run_start = std::chrono::steady_clock::now();
        std::size_t steps_this_run = 0, total_run_steps = e.count * steps_per_epoch;
        // comm::hybrid: an error leaving the epochs tells the servers to stop waiting for this group.
        [[maybe_unused]] const detail::abandon_on_error<session_type, optimizer_on_servers> abandon{session_};
        for (; epoch_ < last;) {
            if constexpr (distributed)
                sampler_.order(order_.data(), data.size(), epoch_, static_cast<std::size_t>(rank()),
                               static_cast<std::size_t>(ranks()), bs, shuffle_seed_);
            else
                shuffle(data.size(), epoch_);
            (call_epoch_begin(callbacks), ...);
            auto t0 = std::chrono::steady_clock::now();
            double loss_sum = 0;
            std::size_t seen = 0;
            step_info info;
            info.epoch = epoch_;
            info.epochs_total = last;
            info.steps_per_epoch = steps_per_epoch;
            // A run resumed from a mid-epoch checkpoint skips the batches already done.
            std::size_t first = 0;
            if (step_ > epoch_ * steps_per_epoch && step_ < (epoch_ + 1) * steps_per_epoch)
                first = static_cast<std::size_t>(step_ - epoch_ * steps_per_epoch);
            for (std::size_t s = first; s < steps_per_epoch; ++s) {
                std::size_t lo = s * bs, hi = std::min(samples, lo + bs);
                const schedule::clock clk{step_, steps_per_epoch};
                double lr = sched_(opt_.lr, clk);
                if (scaling_on_) lr *= scaling_factor(clk, bs);
                step_in_epoch_ = s + 1;
                double l = step_on(data, order_.data() + lo, hi - lo, lr);
                if (std::isfinite(l) || non_finite_ == non_finite::keep_going) {
                    loss_sum += l * static_cast<double>(hi - lo);
                    seen += hi - lo;
                }
                ++steps_this_run;
                double el = seconds_since(t0);
                info.step_in_epoch = s + 1;
                info.global_step = step_;
                info.loss = l;
                info.epoch_loss = seen ? loss_sum / static_cast<double>(seen) : l;
                info.skipped_steps = skipped_;
                info.learning_rate = lr;
                info.elapsed_seconds = el;
                info.images_per_second = el > 0 ? static_cast<double>(seen) * ranks() / el : 0;  // global
                double run_el = seconds_since(run_start);
                info.eta_seconds = run_el / static_cast<double>(steps_this_run) *
                                   static_cast<double>(total_run_steps - steps_this_run);
                (call_step_end(callbacks, info), ...);
            }
            step_in_epoch_ = 0;
            ++epoch_;
            (call_epoch_end(callbacks, info), ...);
        }
        if constexpr (optimizer_on_servers) session_.finish_run();
    }

    /// One optimisation step on `count` samples of `data` picked by `indices` (host array).
    /// Returns the batch's mean loss. Checks the data's shapes, the indices and the batch's
    /// targets as run() and evaluate() do, and applies the non-finite policy.
    double train_batch(dataset_view<T> data, const std::size_t* indices, std::size_t count, double lr) {
        check_data(data, "train_batch");
        if (count == 0) throw argument_error("lamina: train_batch: the batch is empty (count 0)");
        if (!indices) throw argument_error("lamina: train_batch: null index array");
        for (std::size_t i = 0; i < count; ++i)
            if (indices[i] >= data.size())
                throw argument_error("lamina: train_batch: index " + std::to_string(indices[i]) + " (batch position " +
                                     std::to_string(i) + ") is outside the " + std::to_string(data.size()) + " samples");
        check_targets(data, indices, count, "train_batch");
        if constexpr (optimizer_on_servers)
            throw argument_error("lamina: train_batch: comm::hybrid trains with run() only (its servers serve inside run())");
        step_in_epoch_ = 0;
        if constexpr (distributed)
            if (!synchronized_) synchronize();
        return step_on(data, indices, count, lr);
    }

    /// Mean loss and (for classification) accuracy on `data`, in inference mode. Distributed:
    /// every rank passes the same dataset, evaluates its contiguous part of it, and gets the
    /// metrics of the whole dataset.
    evaluation evaluate(dataset_view<T> data, batch b = batch{256}) {
        check_data(data, "evaluate");
        check_targets(data, nullptr, data.size(), "evaluate");
        evaluation ev;
        std::size_t first = 0, end = data.size();
        if constexpr (optimizer_on_servers)
            if (session_.is_server()) return ev;  // evaluation is the workers' (communicators/hybrid.hpp)
        if constexpr (distributed) {
            const auto r = static_cast<std::size_t>(rank()), n = static_cast<std::size_t>(ranks());
            first = distributed_sampler::shard_begin(data.size(), r, n);
            end = distributed_sampler::shard_begin(data.size(), r + 1, n);
        } else if (data.size() == 0) {
            return ev;
        }
        double loss_sum = 0;
        std::size_t correct = 0;
        if (end > first) evaluate_range(data, first, end, b, loss_sum, correct);
        double totals[3] = {loss_sum, static_cast<double>(correct), static_cast<double>(end - first)};
        if constexpr (distributed) session_.sum(totals, 3);
        if (totals[2] == 0) return ev;
        ev.samples = data.size();
        ev.loss = totals[0] / totals[2];
        ev.accuracy = parts::has_classifier ? totals[1] / totals[2] : 0.0;
        return ev;
    }

    std::size_t steps_per_epoch() const noexcept { return steps_per_epoch_; }

private:
    /// Sums of the loss and correct predictions over samples [first, end).
    void evaluate_range(const dataset_view<T>& data, std::size_t first, std::size_t end, batch b, double& loss_sum,
                        std::size_t& correct) {
        std::size_t bs = std::min(b.size ? b.size : 256, end - first);
        prepare(bs, data.size(), false);
        std::vector<std::size_t> idx(bs);
        std::vector<std::int32_t> predicted(bs);
        auto& c = net_.context();
        for (std::size_t lo = first; lo < end; lo += bs) {
            std::size_t n = std::min(bs, end - lo);
            for (std::size_t i = 0; i < n; ++i) idx[i] = lo + i;
            gather(data, idx.data(), n);
            net_.forward_infer(x_dev(), n);
            loss_sum += apply_losses(n, false) * static_cast<double>(n);
            if constexpr (parts::has_classifier) {
                constexpr std::size_t K = parts::classifier;
                backend::argmax_rows(c, net_.infer_output(K), argmax_dev_.data(), n, Model::output_sizes[K]);
                backend::download(c, predicted.data(), static_cast<const std::int32_t*>(argmax_dev_.data()), n);
                for (std::size_t i = 0; i < n; ++i)
                    if (predicted[i] == static_cast<std::int32_t>(data.target(lo + i)[parts::template target_offset<K>]))
                        ++correct;
            }
        }
    }

    /// The step itself, on data already validated.
    double step_on(const dataset_view<T>& data, const std::size_t* indices, std::size_t count, double lr) {
        prepare(count, data.size());
        gather(data, indices, count);
        if constexpr (distributed) return distributed_step(count, lr);
        auto& c = net_.context();
        net_.forward_train(x_dev(), count, step_);
        const double l = apply_losses(count, true) + net_.added_loss();
        if (!std::isfinite(l)) {
            if (non_finite_ == non_finite::stop) throw diverged(l);
            if (non_finite_ == non_finite::skip_batch) {
                ++skipped_;
                ++step_;
                return l;
            }
        } else {
            last_finite_loss_ = l;
            last_finite_step_ = step_;
            has_finite_loss_ = true;
        }
        net_.backward();
        opt_state_.step(c, net_.parameters(), net_.gradients(), net_.parameter_segments(), lr);
        ++step_;
        return l;
    }

    /// A data-parallel step: backward hands each gradient to the session as it is final, the
    /// session sums the buckets over the ranks, and the optimizer updates each bucket when its
    /// sum has arrived. The loss deciding the non-finite policy is the mean over the ranks, so
    /// every rank decides the same.
    double distributed_step(std::size_t count, double lr) {
        auto& c = net_.context();
        {
            batch_statistics_scope sync_bn{session_.statistics_reducer()};
            net_.forward_train(x_dev(), count, step_);
            const double l = apply_losses(count, true) + net_.added_loss();
            const double scale = session_.loss_gradient_scale();
            if (scale != 1.0)
                for (std::size_t k = 0; k < Model::outputs; ++k)
                    backend::scale(c, count * Model::output_sizes[k], static_cast<T>(scale), net_.output_gradient(k));
            metrics_[0] = l * static_cast<double>(count);
            metrics_[1] = static_cast<double>(count);
            session_.begin_step(metrics_, 2);
            net_.backward(session_.sink());
        }
        session_.end_backward();
        session_.finish_metrics();
        const double l = metrics_[0] / metrics_[1];
        if (!std::isfinite(l)) {
            if (non_finite_ != non_finite::keep_going) {
                session_.drain();
                if (non_finite_ == non_finite::stop) throw diverged(l);
                ++skipped_;
                ++step_;
                return l;
            }
        } else {
            last_finite_loss_ = l;
            last_finite_step_ = step_;
            has_finite_loss_ = true;
        }
        T* w = net_.parameters();
        const T* g = net_.gradients();
        if constexpr (optimizer_on_servers) {
            if (session_.updates_on_servers()) {
                session_.complete_remote(step_, lr);
                ++step_;
                return l;
            }
        }
        if constexpr (steps_by_bucket) {
            session_.complete([&](std::size_t k) { opt_state_.step_bucket(k, c, w, g, lr); });
        } else {
            session_.complete([](std::size_t) {});
            opt_state_.step(c, w, g, net_.parameter_segments(), lr);
        }
        ++step_;
        return l;
    }

    double scaling_factor(const schedule::clock& clk, std::size_t bs) const {
        const double k = learning_rate_scale(bs);
        const double t = clk.epoch();
        if (scaling_.warmup_epochs <= 0 || t >= scaling_.warmup_epochs) return k;
        return 1.0 + (k - 1.0) * t / scaling_.warmup_epochs;
    }

    static session_type make_session(const Comm& comm, Model& net) {
        if constexpr (distributed) return session_type(comm, net);
        else return (void)comm, (void)net, session_type{};
    }
    static optimizer_state make_state(const Optimizer& opt, const session_type& session, const Model& net) {
        if constexpr (steps_by_bucket) return optimizer_state(opt, session.plan(), net.parameter_segments());
        else return (void)session, (void)net, optimizer_state(opt, Model::parameter_count);
    }

    /// The weighted sum of the losses on the last forward (training or inference); each loss
    /// writes its weighted gradient into its output's gradient buffer.
    double apply_losses(std::size_t count, bool training) {
        return apply_losses(count, training, std::make_index_sequence<parts::count>{});
    }
    template <std::size_t... K>
    double apply_losses(std::size_t count, bool training, std::index_sequence<K...>) {
        return (0.0 + ... + apply_loss<K>(count, training));
    }
    template <std::size_t K>
    double apply_loss(std::size_t count, bool training) {
        auto& c = net_.context();
        const std::size_t out = Model::output_sizes[K];
        const T* y = training ? net_.output(K) : net_.infer_output(K);
        std::size_t before = 0;
        for (std::size_t j = 0; j != K; ++j) before += Model::output_sizes[j];  // != : nvcc warns on j < 0
        T* grad = training ? net_.output_gradient(K) : eval_grad_.data() + before * capacity_;
        const T* t = t_dev() + parts::template target_offset<K> * capacity_;
        const double l = static_cast<double>(
            parts::template loss<K>(loss_).template operator()<backend, T>(c, y, t, grad, loss_rows_.data(), count, out));
        const double w = parts::template weight<K>(loss_);
        if (w != 1.0) backend::scale(c, count * out, static_cast<T>(w), grad);
        return w * l;
    }

    numeric_error diverged(double l) const {
        std::string where = "global step " + std::to_string(step_);
        if (step_in_epoch_)
            where = "epoch " + std::to_string(epoch_ + 1) + ", step " + std::to_string(step_in_epoch_) + " of " +
                    std::to_string(steps_per_epoch_) + " (" + where + ")";
        std::string last = has_finite_loss_ ? "the last finite loss was " + std::to_string(last_finite_loss_) +
                                                  " at global step " + std::to_string(last_finite_step_)
                                            : "no step had a finite loss yet";
        return numeric_error("lamina: training diverged: the loss is " + std::to_string(l) + " at " + where + "; " +
                             last + ". The parameters were not updated by this step. Lower the learning rate, check "
                             "the inputs for NaN/Inf, or choose trainer::on_non_finite(non_finite::skip_batch)");
    }

    static double seconds_since(std::chrono::steady_clock::time_point t0) {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }

    void check_data(const dataset_view<T>& d, const char* where) const {
        if (d.size() && d.sample_size != Model::input_size)
            throw shape_error(std::string("lamina: ") + where + ": samples have " + std::to_string(d.sample_size) +
                              " values, the network input " + Model::input_shape::str() + " takes " +
                              std::to_string(Model::input_size));
        std::size_t want = parts::total_target_size;
        if (d.size() && d.target_size != want)
            throw shape_error(std::string("lamina: ") + where + ": targets have " + std::to_string(d.target_size) +
                              " values per sample, loss " + Loss::name() + " on output " + Model::output_shape::str() +
                              " needs " + std::to_string(want));
    }
    /// Class labels must be whole numbers in 0..outputs-1 (a NaN, 2.5, -1 or 10 of 10 classes is
    /// rejected before any kernel sees it); regression targets must be finite. `idx` selects
    /// the samples (null: samples 0..n-1).
    void check_targets(const dataset_view<T>& d, const std::size_t* idx, std::size_t n, const char* where) const {
        check_targets(d, idx, n, where, std::make_index_sequence<parts::count>{});
    }
    template <std::size_t... K>
    void check_targets(const dataset_view<T>& d, const std::size_t* idx, std::size_t n, const char* where,
                       std::index_sequence<K...>) const {
        (check_part_targets<K>(d, idx, n, where), ...);
    }
    template <std::size_t K>
    void check_part_targets(const dataset_view<T>& d, const std::size_t* idx, std::size_t n, const char* where) const {
        constexpr std::size_t off = parts::template target_offset<K>, size = parts::template target_size<K>;
        constexpr std::size_t classes = Model::output_sizes[K];
        auto head = [] { return parts::count > 1 ? " (output " + std::to_string(K) + ")" : std::string(); };
        for (std::size_t k = 0; k < n; ++k) {
            const std::size_t i = idx ? idx[k] : k;
            if constexpr (std::decay_t<typename parts::template loss_type<K>>::classification) {
                T t = d.target(i)[off];
                if (!(t >= T(0)) || t >= static_cast<T>(classes) || t != std::floor(t))
                    throw shape_error(std::string("lamina: ") + where + ": sample " + std::to_string(i) +
                                      " has class label " + std::to_string(static_cast<double>(t)) + head() +
                                      ", not a whole number in 0.." + std::to_string(classes - 1));
            } else {
                for (std::size_t j = 0; j < size; ++j)
                    if (!std::isfinite(static_cast<double>(d.target(i)[off + j])))
                        throw shape_error(std::string("lamina: ") + where + ": sample " + std::to_string(i) +
                                          " has a non-finite target value " +
                                          std::to_string(static_cast<double>(d.target(i)[off + j])) + head() +
                                          " at position " + std::to_string(off + j));
            }
        }
    }

    /// Plans every buffer for batches of up to `bs` samples (once): the model's training
    /// buffers, or for evaluation only its inference buffers.
    void prepare(std::size_t bs, std::size_t n, bool training = true) {
        if (training) net_.plan(bs);
        else net_.plan_inference(bs);
        if (bs > capacity_) {
            std::size_t ts = parts::total_target_size;
            stage_x_.assign(bs * Model::input_size, T(0));
            stage_t_.assign(bs * ts, T(0));
            if constexpr (!backend::host_accessible) {
                x_buf_.allocate(bs * Model::input_size);
                t_buf_.allocate(bs * ts);
            }
            loss_rows_.allocate(bs);
            argmax_dev_.allocate(bs);
            std::size_t outs = 0;
            for (std::size_t s : Model::output_sizes) outs += s;
            eval_grad_.allocate(bs * outs);  // evaluation's loss gradients (not used)
            capacity_ = bs;
        }
        if (order_.size() < n) order_.resize(n);
    }
    T* x_dev() {
        if constexpr (backend::host_accessible) return stage_x_.data();
        else return x_buf_.data();
    }
    T* t_dev() {
        if constexpr (backend::host_accessible) return stage_t_.data();
        else return t_buf_.data();
    }
    /// Copies the chosen samples into the staging buffers (and to the device at the edge).
    /// Targets are staged output by output: part K's rows start at target_offset<K> * capacity.
    void gather(const dataset_view<T>& d, const std::size_t* idx, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i)
            std::copy(d.sample(idx[i]), d.sample(idx[i]) + d.sample_size, stage_x_.data() + i * d.sample_size);
        gather_targets(d, idx, n, std::make_index_sequence<parts::count>{});
        if constexpr (!backend::host_accessible) {
            backend::upload(net_.context(), x_buf_.data(), stage_x_.data(), n * d.sample_size);
            backend::upload(net_.context(), t_buf_.data(), stage_t_.data(), capacity_ * parts::total_target_size);
        }
    }
    template <std::size_t... K>
    void gather_targets(const dataset_view<T>& d, const std::size_t* idx, std::size_t n, std::index_sequence<K...>) {
        (gather_part<K>(d, idx, n), ...);
    }
    template <std::size_t K>
    void gather_part(const dataset_view<T>& d, const std::size_t* idx, std::size_t n) {
        constexpr std::size_t off = parts::template target_offset<K>, ts = parts::template target_size<K>;
        T* to = stage_t_.data() + off * capacity_;
        for (std::size_t i = 0; i < n; ++i) std::copy(d.target(idx[i]) + off, d.target(idx[i]) + off + ts, to + i * ts);
    }
    /// Fisher-Yates with the counter-based RNG: the permutation of epoch e depends only on
    /// (shuffle seed, e), so a resumed run shuffles exactly like an uninterrupted one.
    void shuffle(std::size_t n, std::size_t epoch) {
        distributed_sampler::permutation(order_.data(), n, shuffle_seed_, epoch);
    }

    /// Sets `which` to the reason when `cb` would write checkpoints of a trainer whose optimizer
    /// state lives on servers.
    template <class C>
    static void refuse_checkpoints(const C& cb, const char*& which) {
        if constexpr (detail::writes_checkpoints<std::decay_t<C>>::value)
            if (cb.enabled())
                which = "lamina: run(): comm::hybrid cannot write checkpoints during a run: the optimizer state lives "
                        "sharded on the parameter servers (communicators/hybrid.hpp); pass checkpoint_every an empty "
                        "prefix, and after run() call gather_optimizer_state() on every rank and save_checkpoint on rank 0";
    }
    template <class C>
    bool runs_here() const noexcept {
        if constexpr (detail::root_only_callback<std::decay_t<C>>::value) return is_root();
        else return true;
    }
    template <class C>
    void call_epoch_begin(C& cb) {
        if constexpr (has_epoch_begin<C>::value)
            if (runs_here<C>()) cb.on_epoch_begin(*this);
    }
    template <class C>
    void call_step_end(C& cb, const step_info& info) {
        if constexpr (has_step_end<C>::value)
            if (runs_here<C>()) cb.on_step_end(*this, info);
    }
    template <class C>
    void call_epoch_end(C& cb, const step_info& info) {
        if constexpr (has_epoch_end<C>::value)
            if (runs_here<C>()) cb.on_epoch_end(*this, info);
    }
    template <class C, class = void>
    struct has_epoch_begin : std::false_type {};
    template <class C>
    struct has_epoch_begin<C, std::void_t<decltype(std::declval<C&>().on_epoch_begin(std::declval<trainer&>()))>>
        : std::true_type {};
    template <class C, class = void>
    struct has_step_end : std::false_type {};
    template <class C>
    struct has_step_end<C, std::void_t<decltype(std::declval<C&>().on_step_end(std::declval<trainer&>(),
                                                                                std::declval<const step_info&>()))>>
        : std::true_type {};
    template <class C, class = void>
    struct has_epoch_end : std::false_type {};
    template <class C>
    struct has_epoch_end<C, std::void_t<decltype(std::declval<C&>().on_epoch_end(std::declval<trainer&>(),
                                                                                  std::declval<const step_info&>()))>>
        : std::true_type {};

    Model& net_;
    Loss loss_;
    Optimizer opt_;
    Schedule sched_;
    Comm comm_;
    session_type session_;  // before opt_state_: a bucketed state is built from its fusion plan
    optimizer_state opt_state_;
    std::uint64_t shuffle_seed_;
    std::size_t epoch_ = 0;
    std::uint64_t step_ = 0;
    std::size_t steps_per_epoch_ = 0;
    std::size_t capacity_ = 0;
    std::size_t step_in_epoch_ = 0;  // 1-based inside run(), 0 outside (for messages)
    non_finite non_finite_ = non_finite::stop;
    std::uint64_t skipped_ = 0;
    double last_finite_loss_ = 0;
    std::uint64_t last_finite_step_ = 0;
    bool has_finite_loss_ = false;
    bool synchronized_ = false;
    bool state_gathered_ = false;  // comm::hybrid: optimizer state gathered from the servers
    distributed_sampler sampler_;
    linear_scaling_rule scaling_;
    bool scaling_on_ = false;
    double metrics_[2] = {0, 0};
    std::vector<T> stage_x_, stage_t_;
    std::vector<std::size_t> order_;
    typename backend::template buffer<T> x_buf_, t_buf_, loss_rows_, eval_grad_;
    typename backend::template buffer<std::int32_t> argmax_dev_;
};

template <class Model, class Loss, class Optimizer>
trainer(Model&, Loss, Optimizer) -> trainer<Model, Loss, Optimizer>;
template <class Model, class Loss, class Optimizer, class Schedule,
          std::enable_if_t<!comm::is_communicator<Schedule>::value, int> = 0>
trainer(Model&, Loss, Optimizer, Schedule) -> trainer<Model, Loss, Optimizer, Schedule>;
template <class Model, class Loss, class Optimizer, class Comm,
          std::enable_if_t<comm::is_communicator<Comm>::value, int> = 0>
trainer(Model&, Loss, Optimizer, Comm) -> trainer<Model, Loss, Optimizer, schedule::constant, Comm>;
template <class Model, class Loss, class Optimizer, class Schedule, class Comm>
trainer(Model&, Loss, Optimizer, Schedule, Comm) -> trainer<Model, Loss, Optimizer, Schedule, Comm>;

}  // namespace lamina
