// lamina: the cyclic polynomial schedule with re-warm-up of the Collapsed Ensemble (Codreanu et
// al. 2017, ResNet-50 at scale): training runs in cycles; each cycle warms up linearly from
// start_lr to the base rate, lr = (t * base + (W - t) * start) / W for t < W epochs into the
// cycle, then decays polynomially to end_lr at the cycle's end,
// lr = (base - end) * (1 - (t - W) / (L - W))^power + end. The next cycle warms up again.
// train/collapsed_ensemble.hpp keeps a snapshot where each cycle ends ("collapses").
//
//   lm::schedule::cyclic_polynomial s;   // fields by name: cycle_epochs, warmup_epochs, power, ...
//   s.first_cycle_epochs = 6; s.cycle_epochs = 3; s.warmup_epochs = 0.5; s.cycles = 4;
//
// Cycle boundaries are in epochs (fractional allowed) and are met by the first step whose
// clock reaches them; a step short of a boundary by at most 1e-9 of a cycle counts as past it,
// so the boundary of e.g. 3 cycles of 0.1 epochs is not lost to rounding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>

#include "../core/error.hpp"
#include "schedules.hpp"

namespace lamina::schedule {

struct cyclic_polynomial {
    double cycle_epochs = 10;       // L: length of every cycle (after the first)
    double warmup_epochs = 1;       // W: linear re-warm-up at the start of every cycle
    double power = 2;               // of the decay (Codreanu et al.: 2)
    double start_lr = 0;            // where each warm-up starts
    double end_lr = 0;              // where each decay ends
    std::size_t cycles = 0;         // how many; 0: no limit. After the last one lr = end_lr
    double first_cycle_epochs = 0;  // length of the first cycle; 0: cycle_epochs

    /// Where an epoch falls: its cycle (0-based; `cycles` once past the last), the epochs since
    /// that cycle began, and the cycle's length.
    struct position {
        std::size_t cycle = 0;
        double into = 0;
        double length = 0;
        bool finished = false;  // past the last cycle
    };

    /// Throws argument_error naming the field that cannot describe a schedule.
    void validate() const {
        if (!(cycle_epochs > 0) || !std::isfinite(cycle_epochs))
            throw argument_error("lamina: cyclic_polynomial: cycle_epochs must be positive, got " +
                                 std::to_string(cycle_epochs));
        if (!(first_cycle_epochs >= 0) || !std::isfinite(first_cycle_epochs))
            throw argument_error("lamina: cyclic_polynomial: first_cycle_epochs must be >= 0 (0: cycle_epochs), got " +
                                 std::to_string(first_cycle_epochs));
        if (!(warmup_epochs >= 0) || !(warmup_epochs < cycle_epochs) || !(warmup_epochs < first_length()))
            throw argument_error("lamina: cyclic_polynomial: warmup_epochs (" + std::to_string(warmup_epochs) +
                                 ") must be >= 0 and shorter than every cycle (" + std::to_string(first_length()) +
                                 " and " + std::to_string(cycle_epochs) + " epochs)");
        if (!(power > 0) || !std::isfinite(power))
            throw argument_error("lamina: cyclic_polynomial: power must be positive, got " + std::to_string(power));
    }

    double first_length() const noexcept { return first_cycle_epochs > 0 ? first_cycle_epochs : cycle_epochs; }
    /// The epoch at which cycle k begins (cycle `cycles` begins where the last one ends).
    double cycle_begin(std::size_t k) const noexcept {
        return k == 0 ? 0.0 : first_length() + static_cast<double>(k - 1) * cycle_epochs;
    }
    /// The epochs all cycles take (infinity without a limit).
    double total_epochs() const noexcept { return cycles ? cycle_begin(cycles) : HUGE_VAL; }

    position at(double epoch) const {
        validate();
        position p;
        const double first = first_length(), tol = 1e-9 * std::min(first, cycle_epochs);
        double k = 0;
        if (epoch >= first - tol) k = 1 + std::floor((epoch - first + tol) / cycle_epochs);
        if (cycles && k >= static_cast<double>(cycles)) {
            p.cycle = cycles;
            p.finished = true;
            p.into = epoch - total_epochs();
            p.length = cycle_epochs;
            return p;
        }
        p.cycle = static_cast<std::size_t>(k);
        p.length = p.cycle == 0 ? first : cycle_epochs;
        p.into = std::max(0.0, epoch - cycle_begin(p.cycle));
        if (p.into > p.length) p.into = p.length;
        return p;
    }
    position at(const clock& c) const { return at(c.epoch()); }

    /// The rate of the step at clock c for base rate `base`.
    double rate(double base, const position& p) const {
        if (p.finished) return end_lr;
        if (p.into < warmup_epochs) return (p.into * base + (warmup_epochs - p.into) * start_lr) / warmup_epochs;
        const double x = std::min(1.0, (p.into - warmup_epochs) / (p.length - warmup_epochs));
        return (base - end_lr) * std::pow(1.0 - x, power) + end_lr;
    }
    double operator()(double base, const clock& c) const { return rate(base, at(c)); }
};

}  // namespace lamina::schedule
