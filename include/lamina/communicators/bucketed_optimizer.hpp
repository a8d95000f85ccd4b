// lamina: an optimizer's state split by fusion bucket, so the update of each bucket runs as soon
// as that bucket's gradient average has arrived, while later buckets are still on the wire
// ("the optimizer step waits only for what it needs").
//
// No optimizer API change: each bucket gets a state of the optimizer's own type sized to the
// bucket, and its step() is called on the bucket's slice of the parameters and gradients with
// the bucket's segments re-based to the slice. That is exact for optimizers whose update of a
// parameter tensor depends only on that tensor (element-wise ones such as SGD and Adam, and
// per-tensor ones such as LARS and LAMB, since buckets hold whole tensors); each bucket state
// counts the steps itself, so bias corrections see the same step number. Such optimizers are
// listed by steps_by_segment (an optimizer opts in with `static constexpr bool
// steps_by_segment = true;`); for the others the trainer waits for every bucket and steps once.
//
// For checkpoints the state looks like the optimizer's own: layout(), save() and load() give
// and take each state tensor whole (the buckets' slices joined in parameter order), so a
// checkpoint does not depend on the bucket sizes or the number of ranks.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../network/parameter_segment.hpp"
#include "../optimizers/adadelta.hpp"
#include "../optimizers/adam.hpp"
#include "../optimizers/lamb.hpp"
#include "../optimizers/lars.hpp"
#include "../optimizers/rmsprop.hpp"
#include "../optimizers/sgd.hpp"
#include "fusion_buckets.hpp"

namespace lamina::comm {

/// Whether an optimizer's update of one parameter tensor depends on that tensor alone.
template <class O, class = void>
struct steps_by_segment : std::false_type {};
template <class O>
struct steps_by_segment<O, std::enable_if_t<O::steps_by_segment>> : std::true_type {};
template <>
struct steps_by_segment<optim::sgd> : std::true_type {};
template <>
struct steps_by_segment<optim::adam> : std::true_type {};
template <>
struct steps_by_segment<optim::adamw> : std::true_type {};
template <>
struct steps_by_segment<optim::rmsprop> : std::true_type {};
template <>
struct steps_by_segment<optim::adadelta> : std::true_type {};
template <>
struct steps_by_segment<optim::lars> : std::true_type {};  // norms per tensor; buckets hold whole tensors
template <>
struct steps_by_segment<optim::lamb> : std::true_type {};

template <class Optimizer, class Backend, class T>
class bucketed_state {
public:
    using inner_state = typename Optimizer::template state<Backend, T>;
    using context = typename Backend::context;

    bucketed_state(const Optimizer& o, const fusion_plan& plan, const std::vector<parameter_segment>& segments)
        : plan_(plan), total_(plan.total()) {
        states_.reserve(plan.size());
        segments_.resize(plan.size());
        for (std::size_t k = 0; k < plan.size(); ++k) {
            const bucket_range& b = plan[k];
            states_.emplace_back(o, b.count);
            for (std::size_t s = b.first_segment; s < b.first_segment + b.segments; ++s) {
                parameter_segment seg = segments[s];
                seg.offset -= b.offset;
                segments_[k].push_back(std::move(seg));
            }
        }
        // Joining the buckets' state tensors needs one value per parameter in each of them.
        for (std::size_t k = 0; k < states_.size(); ++k)
            for (const auto& [name, size] : layout_of(states_[k]))
                if (size != plan[k].count)
                    throw error("lamina: optimizer '" + Optimizer::name() + "' keeps state '" + name + "' of " +
                                std::to_string(size) + " values for " + std::to_string(plan[k].count) +
                                " parameters: it cannot step bucket by bucket (do not declare steps_by_segment)");
    }

    /// Updates the parameters of bucket k (w and g are the model's whole flat buffers).
    void step_bucket(std::size_t k, const context& c, T* w, const T* g, double lr) {
        const std::size_t off = plan_[k].offset;
        states_[k].step(c, w + off, g + off, segments_[k], lr);
    }
    /// Updates every bucket (the segments are the model's; each bucket uses its own).
    void step(const context& c, T* w, const T* g, const std::vector<parameter_segment>&, double lr) {
        for (std::size_t k = 0; k < states_.size(); ++k) step_bucket(k, c, w, g, lr);
    }

    /// Scales every bucket's weight decay (train/collapsed_ensemble.hpp drives it).
    void set_weight_decay_scale(double s) {
        for (auto& st : states_) st.set_weight_decay_scale(s);
        scale_ = s;
    }
    double weight_decay_scale() const noexcept { return scale_; }

    std::uint64_t steps() const noexcept { return states_.empty() ? 0 : states_[0].steps(); }
    std::vector<std::pair<std::string, std::size_t>> layout() const {
        std::vector<std::pair<std::string, std::size_t>> l;
        if (states_.empty()) return l;
        for (auto& [name, size] : layout_of(states_[0])) l.emplace_back(name, total_);
        return l;
    }
    std::vector<std::pair<std::string, std::vector<T>>> save(const context& c) const {
        std::vector<std::pair<std::string, std::vector<T>>> out;
        for (std::size_t k = 0; k < states_.size(); ++k) {
            auto part = states_[k].save(c);
            if (k == 0)
                for (auto& [name, values] : part) out.emplace_back(name, std::vector<T>(total_));
            for (std::size_t j = 0; j < part.size(); ++j)
                std::copy(part[j].second.begin(), part[j].second.end(),
                          out[j].second.begin() + static_cast<std::ptrdiff_t>(plan_[k].offset));
        }
        return out;
    }
    /// Checks every tensor's name and size before any bucket changes.
    void load(const context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st, std::uint64_t steps) {
        const auto want = layout();
        bool ok = st.size() == want.size();
        for (std::size_t j = 0; ok && j < st.size(); ++j)
            ok = st[j].first == want[j].first && st[j].second.size() == want[j].second;
        if (!ok) {
            std::string names;
            for (const auto& w : want) names += (names.empty() ? "'" : ", '") + w.first + "'";
            throw checkpoint_error("lamina: " + Optimizer::name() + " state in checkpoint does not match (expected " +
                                   names + " of " + std::to_string(total_) + " values)");
        }
        for (std::size_t k = 0; k < states_.size(); ++k) {
            const bucket_range& b = plan_[k];
            std::vector<std::pair<std::string, std::vector<T>>> part;
            for (const auto& [name, values] : st)
                part.emplace_back(name, std::vector<T>(values.begin() + static_cast<std::ptrdiff_t>(b.offset),
                                                       values.begin() + static_cast<std::ptrdiff_t>(b.offset + b.count)));
            states_[k].load(c, part, steps);
        }
    }

private:
    template <class S, class = void>
    struct has_layout : std::false_type {};
    template <class S>
    struct has_layout<S, std::void_t<decltype(std::declval<const S&>().layout())>> : std::true_type {};
    static std::vector<std::pair<std::string, std::size_t>> layout_of(const inner_state& s) {
        if constexpr (has_layout<inner_state>::value) {
            return s.layout();
        } else {
            std::vector<std::pair<std::string, std::size_t>> l;
            for (auto& [name, values] : s.save(context{})) l.emplace_back(name, values.size());
            return l;
        }
    }

    fusion_plan plan_;
    std::size_t total_;
    double scale_ = 1.0;
    std::vector<inner_state> states_;
    std::vector<std::vector<parameter_segment>> segments_;
};

}  // namespace lamina::comm
