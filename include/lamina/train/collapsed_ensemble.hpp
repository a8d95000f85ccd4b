// lamina: the Collapsed Ensemble (Codreanu et al. 2017, ResNet-50 at scale). One training run
// in cycles of a cyclic polynomial schedule (schedules/cyclic.hpp: linear re-warm-up, then
// power-2 decay to zero); the last `collapse_epochs` of every cycle are its "collapse": the
// rate decays to zero while the weight decay is doubled (scaled by collapse_weight_decay_scale).
// Where a cycle ends, the collapsed model (parameters and running state) is kept; at inference
// the kept snapshots average their softmax outputs (train/snapshot_ensemble.hpp; the paper's
// averaging detail is not published, averaged softmax is the usual choice). The paper's light
// augmentation during the collapse is left to the data pipeline.
//
//   lm::schedule::cyclic_polynomial cyc;  cyc.cycle_epochs = 3; cyc.warmup_epochs = 0.5; cyc.cycles = 4;
//   lm::collapsed_ensemble<decltype(net)> ce{cyc, 1.0};          // 1-epoch collapses
//   lm::trainer fit{net, loss, lm::optim::sgd{0.1, 0.9, false, 5e-4}, ce.schedule()};
//   fit.run(train, lm::epochs{12}, lm::batch{64}, ce);          // ce is the callback
//   auto r = ce.ensemble().evaluate(test);                      // r.ensemble, r.snapshots[k]
//
// The callback sets the optimizer's weight-decay scale before every step from the training
// clock alone (on_epoch_begin and on_step_end), so a run resumed from a checkpoint collapses
// where an uninterrupted one does. Snapshots live in memory and are not part of a checkpoint:
// a resumed run holds only those taken after it resumed (snapshots() gives the host arrays to
// keep elsewhere). The trainer must run the same schedule (ce.schedule()), and its optimizer
// state must have set_weight_decay_scale (every lamina optimizer does).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "../core/error.hpp"
#include "../core/thread_pool.hpp"
#include "../schedules/cyclic.hpp"
#include "snapshot_ensemble.hpp"
#include "training_types.hpp"

namespace lamina {

namespace detail {
template <class S, class = void>
struct has_weight_decay_scale : std::false_type {};
template <class S>
struct has_weight_decay_scale<S, std::void_t<decltype(std::declval<S&>().set_weight_decay_scale(1.0))>>
    : std::true_type {};
}  // namespace detail

template <class Model>
class collapsed_ensemble {
public:
    /// `collapse_epochs`: how long each cycle's collapse lasts (its last epochs, after the
    /// warm-up); `collapse_weight_decay_scale`: the weight decay's factor meanwhile (2: doubled).
    collapsed_ensemble(schedule::cyclic_polynomial s, double collapse_epochs, double collapse_weight_decay_scale = 2.0,
                       threads t = threads{})
        : sched_(s), collapse_(collapse_epochs), scale_(collapse_weight_decay_scale), ens_(t) {
        sched_.validate();
        const double shortest = std::min(sched_.first_length(), sched_.cycle_epochs);
        if (!(collapse_ > 0) || !(collapse_ <= shortest - sched_.warmup_epochs))
            throw argument_error("lamina: collapsed_ensemble: collapse_epochs must be positive and fit in every cycle "
                                 "after its warm-up (at most " +
                                 std::to_string(shortest - sched_.warmup_epochs) + " epochs), got " +
                                 std::to_string(collapse_));
        if (!(scale_ >= 0) || !std::isfinite(scale_))
            throw argument_error("lamina: collapsed_ensemble: collapse_weight_decay_scale must be finite and >= 0, got " +
                                 std::to_string(scale_));
    }

    /// The schedule the trainer must run.
    const schedule::cyclic_polynomial& schedule() const noexcept { return sched_; }
    snapshot_ensemble<Model>& ensemble() noexcept { return ens_; }
    const snapshot_ensemble<Model>& ensemble() const noexcept { return ens_; }
    double collapse_epochs() const noexcept { return collapse_; }
    double collapse_weight_decay_scale() const noexcept { return scale_; }

    /// Whether the step at clock c belongs to a collapse (the last collapse_epochs of a cycle).
    bool collapsing(const schedule::clock& c) const {
        const auto p = sched_.at(c);
        return !p.finished && p.into >= p.length - collapse_ - 1e-9 * p.length;
    }
    /// The weight-decay scale of the step at clock c.
    double weight_decay_scale(const schedule::clock& c) const { return collapsing(c) ? scale_ : 1.0; }

    // ---- trainer callback -------------------------------------------------------------------
    template <class Trainer>
    void on_epoch_begin(Trainer& t) {
        check_trainer<Trainer>();
        apply(t, t.global_step(), t.steps_per_epoch());
    }
    template <class Trainer>
    void on_step_end(Trainer& t, const step_info& info) {
        check_trainer<Trainer>();
        const std::uint64_t done = info.global_step, spe = info.steps_per_epoch;
        if (done > 0) {
            const auto last = sched_.at(schedule::clock{done - 1, spe});
            const auto next = sched_.at(schedule::clock{done, spe});
            if (!last.finished && next.cycle != last.cycle) ens_.add(t.model(), last.cycle, done);  // a collapse ended
        }
        apply(t, done, spe);
    }

private:
    template <class Trainer>
    static void check_trainer() {
        static_assert(std::is_same_v<std::decay_t<decltype(std::declval<Trainer&>().model())>, Model>,
                      "lamina::collapsed_ensemble<Model>: the trainer trains another model type");
        static_assert(detail::has_weight_decay_scale<std::decay_t<decltype(std::declval<Trainer&>().optimizer_state_ref())>>::value,
                      "lamina::collapsed_ensemble: the optimizer state has no set_weight_decay_scale(double)");
    }
    template <class Trainer>
    void apply(Trainer& t, std::uint64_t step, std::uint64_t spe) {
        t.optimizer_state_ref().set_weight_decay_scale(weight_decay_scale(schedule::clock{step, spe ? spe : 1}));
    }

    schedule::cyclic_polynomial sched_;
    double collapse_, scale_;
    snapshot_ensemble<Model> ens_;
};

}  // namespace lamina
