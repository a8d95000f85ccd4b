// lamina: what every optimizer shares about weight decay: it applies only to parameter
// segments marked decay = true (not to biases and normalisation parameters), and it can be
// scaled at run time (the Collapsed Ensemble doubles it while a cycle collapses,
// train/collapsed_ensemble.hpp), through each optimizer state's set_weight_decay_scale().
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../network/parameter_segment.hpp"

namespace lamina::detail {

/// Throws argument_error unless `s` is a finite scale >= 0 (`who` names the optimizer).
inline void check_weight_decay_scale(double s, const char* who) {
    if (!(s >= 0) || !std::isfinite(s))
        throw argument_error(std::string("lamina: ") + who + ": weight decay scale must be finite and >= 0, got " +
                             std::to_string(s));
}

/// Throws argument_error naming the segment when one does not lie inside the n parameters
/// (checked without arithmetic that can wrap). Allocates nothing unless it throws.
inline void check_segments(const std::vector<parameter_segment>& segs, std::size_t n, const char* who) {
    for (const auto& s : segs)
        if (s.offset > n || s.count > n - s.offset)
            throw argument_error(std::string("lamina: ") + who + ": parameter segment '" + s.name + "' (offset " +
                                 std::to_string(s.offset) + ", " + std::to_string(s.count) +
                                 " values) lies outside the " + std::to_string(n) + " parameters");
}

/// Calls f(offset, count, decay) over the parameters: once over all n when the decay is 0
/// (one kernel), else once per segment with `wd` on decay = true segments and 0 on the others
/// (elements outside every segment are then left alone, as sgd and adam do).
template <class F>
void for_decay_ranges(const std::vector<parameter_segment>& segs, std::size_t n, double wd, F&& f) {
    if (wd == 0.0) {
        if (n) f(std::size_t(0), n, 0.0);
        return;
    }
    for (const auto& s : segs)
        if (s.count) f(s.offset, s.count, s.decay ? wd : 0.0);
}

}  // namespace lamina::detail
