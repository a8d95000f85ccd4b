// lamina: Adam (Kingma & Ba) with L2 weight decay added to the gradient, and AdamW
// (Loshchilov & Hutter) with decoupled weight decay; PyTorch semantics for both.
// set_weight_decay_scale() scales the decay at run time (optimizers/weight_decay.hpp).
#pragma once

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/geometry.hpp"
#include "../network/parameter_segment.hpp"
#include "weight_decay.hpp"

namespace lamina::optim {

struct adam {
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
    bool decoupled = false;

    explicit adam(double lr_ = 1e-3, double beta1_ = 0.9, double beta2_ = 0.999, double eps_ = 1e-8,
                  double weight_decay_ = 0.0)
        : lr(lr_), beta1(beta1_), beta2(beta2_), eps(eps_), weight_decay(weight_decay_) {
        detail::require(lr > 0, "adam learning rate must be positive, got " + std::to_string(lr));
        detail::require(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "adam betas must be in [0, 1)");
        detail::require(eps > 0, "adam eps must be positive");
        detail::require(weight_decay >= 0, "adam weight_decay must be >= 0");
    }
    static std::string name() { return "adam"; }

    template <class Backend, class T>
    class state {
    public:
        state(const adam& o, std::size_t n)
            : beta1_(o.beta1), beta2_(o.beta2), eps_(o.eps), weight_decay_(o.weight_decay), decoupled_(o.decoupled), n_(n) {
            m_.allocate(std::max<std::size_t>(n, 1));
            v_.allocate(std::max<std::size_t>(n, 1));
        }
        void step(const typename Backend::context& c, T* w, const T* g, const std::vector<parameter_segment>& segs,
                  double lr) {
            ++steps_;
            adam_step<T> s;
            s.lr = static_cast<T>(lr);
            s.beta1 = static_cast<T>(beta1_);
            s.beta2 = static_cast<T>(beta2_);
            s.eps = static_cast<T>(eps_);
            s.decoupled = decoupled_;
            s.bias_correction1 = static_cast<T>(1.0 - std::pow(beta1_, static_cast<double>(steps_)));
            s.bias_correction2 = static_cast<T>(1.0 - std::pow(beta2_, static_cast<double>(steps_)));
            const double wd = weight_decay_ * scale_;
            if (wd == 0.0) {
                s.weight_decay = T(0);
                Backend::adam_update(c, w, g, m_.data(), v_.data(), n_, s);
            } else {
                for (const auto& seg : segs) {
                    s.weight_decay = seg.decay ? static_cast<T>(wd) : T(0);
                    Backend::adam_update(c, w + seg.offset, g + seg.offset, m_.data() + seg.offset, v_.data() + seg.offset,
                                         seg.count, s);
                }
            }
        }
        /// Multiplies the weight decay from the next step on (1: as constructed).
        void set_weight_decay_scale(double s) {
            detail::check_weight_decay_scale(s, "adam");
            scale_ = s;
        }
        double weight_decay_scale() const noexcept { return scale_; }
        std::uint64_t steps() const noexcept { return steps_; }
        /// Names and sizes of what save() returns, without copying (checkpoint validation).
        std::vector<std::pair<std::string, std::size_t>> layout() const { return {{"m", n_}, {"v", n_}}; }
        std::vector<std::pair<std::string, std::vector<T>>> save(const typename Backend::context& c) const {
            std::vector<T> m(n_), v(n_);
            if (n_) {
                Backend::download(c, m.data(), m_.data(), n_);
                Backend::download(c, v.data(), v_.data(), n_);
            }
            return {{"m", std::move(m)}, {"v", std::move(v)}};
        }
        void load(const typename Backend::context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st,
                  std::uint64_t steps) {
            if (st.size() != 2 || st[0].first != "m" || st[1].first != "v" || st[0].second.size() != n_ ||
                st[1].second.size() != n_)
                throw checkpoint_error("lamina: adam state in checkpoint does not match (expected 'm' and 'v' of " +
                                       std::to_string(n_) + " values)");
            if (n_) {
                Backend::upload(c, m_.data(), st[0].second.data(), n_);
                Backend::upload(c, v_.data(), st[1].second.data(), n_);
            }
            steps_ = steps;
        }

    private:
        double beta1_, beta2_, eps_, weight_decay_;
        double scale_ = 1.0;
        bool decoupled_;
        std::size_t n_;
        typename Backend::template buffer<T> m_, v_;
        std::uint64_t steps_ = 0;
    };
};

/// AdamW: Adam with decoupled weight decay (default 0.01, as in PyTorch).
struct adamw : adam {
    explicit adamw(double lr_ = 1e-3, double weight_decay_ = 0.01, double beta1_ = 0.9, double beta2_ = 0.999,
                   double eps_ = 1e-8)
        : adam(lr_, beta1_, beta2_, eps_, weight_decay_) {
        decoupled = true;
    }
    static std::string name() { return "adamw"; }
};

}  // namespace lamina::optim
