// lamina: LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in
// 76 minutes", Algorithm 2): Adam's bias-corrected moments, decoupled weight decay inside the
// update, and a per-tensor trust ratio:
//
//   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//   u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd w
//   w -= lr (||w|| / ||u||) u                  (ratio 1 when ||w|| or ||u|| is 0)
//
// phi is the identity (no clipping of ||w||) and gradients are not clipped (timm's Lamb clips
// them by global norm by default; clip before the step if wanted). The norms are per tensor
// (one weight or bias of one layer, optimizers/segment_norms.hpp), ||w|| before the update.
// Tensors marked decay = false (biases, normalisation parameters) skip the weight decay and the
// trust ratio (w -= lr u), as timm does for parameters without decay.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../network/parameter_segment.hpp"
#include "segment_norms.hpp"
#include "weight_decay.hpp"

namespace lamina::optim {

struct lamb {
    double lr = 1e-3, weight_decay = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-6;

    explicit lamb(double lr_ = 1e-3, double weight_decay_ = 0.01, double beta1_ = 0.9, double beta2_ = 0.999,
                  double eps_ = 1e-6)
        : lr(lr_), weight_decay(weight_decay_), beta1(beta1_), beta2(beta2_), eps(eps_) {
        lamina::detail::require(lr > 0, "lamb learning rate must be positive, got " + std::to_string(lr));
        lamina::detail::require(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
                                "lamb betas must be in [0, 1), got " + std::to_string(beta1) + ", " +
                                    std::to_string(beta2));
        lamina::detail::require(eps > 0, "lamb eps must be positive, got " + std::to_string(eps));
        lamina::detail::require(weight_decay >= 0, "lamb weight_decay must be >= 0, got " + std::to_string(weight_decay));
    }
    static std::string name() { return "lamb"; }

    template <class Backend, class T>
    class state {
    public:
        state(const lamb& o, std::size_t n)
            : beta1_(o.beta1), beta2_(o.beta2), eps_(o.eps), weight_decay_(o.weight_decay), n_(n) {
            m_.allocate(std::max<std::size_t>(n, 1));
            v_.allocate(std::max<std::size_t>(n, 1));
            u_.allocate(std::max<std::size_t>(n, 1));
        }
        void step(const typename Backend::context& c, T* w, const T* g, const std::vector<parameter_segment>& segs,
                  double lr) {
            chunks_.prepare(c, segs, n_, "lamb");
            ++steps_;
            const T b1 = static_cast<T>(beta1_), b2 = static_cast<T>(beta2_), eps = static_cast<T>(eps_),
                    twd = static_cast<T>(weight_decay_ * scale_),
                    bc1 = static_cast<T>(1.0 - std::pow(beta1_, static_cast<double>(steps_))),
                    bc2 = static_cast<T>(1.0 - std::pow(beta2_, static_cast<double>(steps_)));
            const unsigned* dec = chunks_.decay();
            T* m = m_.data();
            T* v = v_.data();
            T* u = u_.data();
            // 1. moments and the update direction u (before the weights change)
            chunks_.for_each_element(c, LAMINA_LAMBDA(std::size_t i, std::size_t s) {
                m[i] = b1 * m[i] + (T(1) - b1) * g[i];
                v[i] = b2 * v[i] + (T(1) - b2) * g[i] * g[i];
                const T r = (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps);
                u[i] = dec[s] ? r + twd * w[i] : r;
            });
            // 2. per-tensor ||w|| and ||u||, 3. the trust ratios
            chunks_.norms(c, static_cast<const T*>(w), static_cast<const T*>(u));
            const double* wn = chunks_.norm_a();
            const double* un = chunks_.norm_b();
            double* ratio = chunks_.ratio();
            Backend::for_each_index(c, chunks_.segments(), LAMINA_LAMBDA(std::size_t s) {
                ratio[s] = dec[s] && wn[s] > 0 && un[s] > 0 ? wn[s] / un[s] : 1.0;
            });
            // 4. the update
            const T tlr = static_cast<T>(lr);
            const double* rat = ratio;
            chunks_.for_each_element(c, LAMINA_LAMBDA(std::size_t i, std::size_t s) {
                w[i] -= tlr * static_cast<T>(rat[s]) * u[i];
            });
        }
        /// The trust ratio of every segment in the last step (host copy; empty before it).
        std::vector<double> trust_ratios(const typename Backend::context& c) const {
            std::vector<double> r(chunks_.segments());
            if (!r.empty()) Backend::download(c, r.data(), chunks_.ratio(), r.size());
            return r;
        }
        /// Multiplies the weight decay from the next step on (1: as constructed).
        void set_weight_decay_scale(double s) {
            detail::check_weight_decay_scale(s, "lamb");
            scale_ = s;
        }
        double weight_decay_scale() const noexcept { return scale_; }
        std::uint64_t steps() const noexcept { return steps_; }
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
                throw checkpoint_error("lamina: lamb state in checkpoint does not match (expected 'm' and 'v' of " +
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
        std::size_t n_;
        typename Backend::template buffer<T> m_, v_, u_;  // u_: this step's update direction (scratch)
        segment_chunks<Backend> chunks_;
        std::uint64_t steps_ = 0;
    };
};

}  // namespace lamina::optim
