// lamina: stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay
// (PyTorch's torch.optim.SGD semantics, dampening 0). Weight decay skips parameter segments
// marked decay = false (biases), as large-batch recipes require; set_weight_decay_scale()
// scales it at run time (optimizers/weight_decay.hpp).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/geometry.hpp"
#include "../network/parameter_segment.hpp"
#include "weight_decay.hpp"

namespace lamina::optim {

struct sgd {
    double lr = 0.01;
    double momentum = 0.0;
    bool nesterov = false;
    double weight_decay = 0.0;

    sgd(double lr_, double momentum_ = 0.0, bool nesterov_ = false, double weight_decay_ = 0.0)
        : lr(lr_), momentum(momentum_), nesterov(nesterov_), weight_decay(weight_decay_) {
        detail::require(lr > 0, "sgd learning rate must be positive, got " + std::to_string(lr));
        detail::require(momentum >= 0 && momentum < 1, "sgd momentum must be in [0, 1), got " + std::to_string(momentum));
        detail::require(weight_decay >= 0, "sgd weight_decay must be >= 0");
        detail::require(!nesterov || momentum > 0, "sgd: Nesterov momentum needs momentum > 0");
    }
    static std::string name() { return "sgd"; }

    template <class Backend, class T>
    class state {
    public:
        state(const sgd& o, std::size_t n)
            : momentum_(o.momentum), weight_decay_(o.weight_decay), nesterov_(o.nesterov), n_(n) {
            velocity_.allocate(std::max<std::size_t>(n, 1));
        }
        /// One update of all parameters with learning rate `lr` (from the schedule).
        void step(const typename Backend::context& c, T* w, const T* g, const std::vector<parameter_segment>& segs,
                  double lr) {
            sgd_step<T> s;
            s.lr = static_cast<T>(lr);
            s.momentum = static_cast<T>(momentum_);
            s.nesterov = nesterov_;
            const double wd = weight_decay_ * scale_;
            if (wd == 0.0) {
                s.weight_decay = T(0);
                Backend::sgd_update(c, w, g, velocity_.data(), n_, s);
            } else {
                for (const auto& seg : segs) {
                    s.weight_decay = seg.decay ? static_cast<T>(wd) : T(0);
                    Backend::sgd_update(c, w + seg.offset, g + seg.offset, velocity_.data() + seg.offset, seg.count, s);
                }
            }
            ++steps_;
        }
        /// Multiplies the weight decay from the next step on (1: as constructed).
        void set_weight_decay_scale(double s) {
            detail::check_weight_decay_scale(s, "sgd");
            scale_ = s;
        }
        double weight_decay_scale() const noexcept { return scale_; }
        std::uint64_t steps() const noexcept { return steps_; }
        /// Names and sizes of what save() returns, without copying (checkpoint validation).
        std::vector<std::pair<std::string, std::size_t>> layout() const { return {{"velocity", n_}}; }
        /// Named state tensors for checkpoints (host copies).
        std::vector<std::pair<std::string, std::vector<T>>> save(const typename Backend::context& c) const {
            std::vector<T> v(n_);
            if (n_) Backend::download(c, v.data(), velocity_.data(), n_);
            return {{"velocity", std::move(v)}};
        }
        void load(const typename Backend::context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st,
                  std::uint64_t steps) {
            if (st.size() != 1 || st[0].first != "velocity" || st[0].second.size() != n_)
                throw checkpoint_error("lamina: sgd state in checkpoint does not match (expected one 'velocity' of " +
                                       std::to_string(n_) + " values)");
            if (n_) Backend::upload(c, velocity_.data(), st[0].second.data(), n_);
            steps_ = steps;
        }

    private:
        double momentum_, weight_decay_;
        double scale_ = 1.0;
        bool nesterov_;
        std::size_t n_;
        typename Backend::template buffer<T> velocity_;
        std::uint64_t steps_ = 0;
    };
};

}  // namespace lamina::optim
