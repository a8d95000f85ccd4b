// lamina: learning-rate schedules. A schedule maps the optimizer's base rate and the
// training clock to the rate of this step. Durations are in epochs (fractional epochs are
// fine: the clock is step / steps_per_epoch), as the papers' recipes state them.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>

#include "../core/error.hpp"

namespace lamina::schedule {

/// Where training stands: the global step (0-based, the step about to run) and the number
/// of steps per epoch.
struct clock {
    std::uint64_t step = 0;
    std::uint64_t steps_per_epoch = 1;
    double epoch() const { return static_cast<double>(step) / static_cast<double>(steps_per_epoch ? steps_per_epoch : 1); }
};

/// lr = base.
struct constant {
    double operator()(double base, const clock&) const { return base; }
};

/// Linear warm-up from `start_lr` to base over `epochs`, then base:
/// lr = (t * base + (W - t) * start) / W for t < W (Goyal et al.; Codreanu et al.).
struct linear_warmup {
    double epochs = 5;
    double start_lr = 0;
    double operator()(double base, const clock& c) const {
        double t = c.epoch();
        return t < epochs ? (t * base + (epochs - t) * start_lr) / epochs : base;
    }
};

/// lr = base * gamma^floor(epoch / every).
struct step_decay {
    double every = 30;
    double gamma = 0.1;
    double operator()(double base, const clock& c) const {
        detail::require(every > 0, "step_decay: 'every' must be positive");
        return base * std::pow(gamma, std::floor(c.epoch() / every));
    }
};

/// Cosine annealing from base to min_lr over `epochs`, then min_lr.
struct cosine {
    double epochs = 10;
    double min_lr = 0;
    double operator()(double base, const clock& c) const {
        detail::require(epochs > 0, "cosine: 'epochs' must be positive");
        double t = std::min(c.epoch() / epochs, 1.0);
        return min_lr + (base - min_lr) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t));
    }
};

/// Polynomial decay: lr = (base - end_lr) * (1 - epoch/epochs)^power + end_lr, then end_lr.
struct polynomial {
    double epochs = 90;
    double power = 2;
    double end_lr = 0;
    double operator()(double base, const clock& c) const {
        detail::require(epochs > 0, "polynomial: 'epochs' must be positive");
        double t = std::min(c.epoch() / epochs, 1.0);
        return (base - end_lr) * std::pow(1.0 - t, power) + end_lr;
    }
};

/// Linear warm-up, then `After` evaluated on the clock shifted by the warm-up (so a cosine
/// or polynomial decay starts where the warm-up ends).
template <class After>
struct warmup_then {
    linear_warmup warmup;
    After after;
    double operator()(double base, const clock& c) const {
        if (c.epoch() < warmup.epochs) return warmup(base, c);
        clock shifted = c;
        auto warm_steps = static_cast<std::uint64_t>(std::ceil(warmup.epochs * static_cast<double>(c.steps_per_epoch)));  // first step past the warm-up
        shifted.step = c.step >= warm_steps ? c.step - warm_steps : 0;
        return after(base, shifted);
    }
};
template <class After>
warmup_then(linear_warmup, After) -> warmup_then<After>;

/// The linear scaling rule (Goyal et al. 2017): the learning rate grows with the global
/// batch, lr = base_lr * global_batch / base_batch.
inline double linear_scaling(double base_lr, std::size_t base_batch, std::size_t global_batch) {
    detail::require(base_batch > 0, "linear_scaling: base batch must be positive");
    return base_lr * static_cast<double>(global_batch) / static_cast<double>(base_batch);
}

/// Type-erased schedule, for code that picks one at run time.
using any = std::function<double(double, const clock&)>;

}  // namespace lamina::schedule
