// lamina: LARS, layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017, "Large Batch
// Training of Convolutional Networks"), in the form PyTorch implementations use (timm's Lars,
// NVIDIA apex's LARC): per parameter tensor (segment) w with gradient g,
//
//   trust = eta ||w|| / (||g|| + wd ||w|| + eps)       (1 when ||w|| or ||g|| is 0)
//   u = trust (g + wd w);   v = momentum v + u;   w -= lr v
//
// The norms are per tensor (one weight or bias of one layer), computed on the device
// (optimizers/segment_norms.hpp). Tensors marked decay = false (biases, normalisation
// parameters) skip both the trust ratio and the weight decay, u = g, as is common; unlike
// timm, the ratio also applies when wd is 0. The rate is not folded into v (PyTorch's
// momentum form), so v carries over a changing schedule as torch.optim.SGD's does.
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

struct lars {
    double lr = 0.1;
    double momentum = 0.9;
    double weight_decay = 0.0;
    double trust_coefficient = 0.001;  // eta
    double eps = 1e-8;

    explicit lars(double lr_, double momentum_ = 0.9, double weight_decay_ = 0.0, double trust_coefficient_ = 0.001,
                  double eps_ = 1e-8)
        : lr(lr_), momentum(momentum_), weight_decay(weight_decay_), trust_coefficient(trust_coefficient_), eps(eps_) {
        lamina::detail::require(lr > 0, "lars learning rate must be positive, got " + std::to_string(lr));
        lamina::detail::require(momentum >= 0 && momentum < 1,
                                "lars momentum must be in [0, 1), got " + std::to_string(momentum));
        lamina::detail::require(weight_decay >= 0, "lars weight_decay must be >= 0, got " + std::to_string(weight_decay));
        lamina::detail::require(trust_coefficient > 0,
                                "lars trust_coefficient must be positive, got " + std::to_string(trust_coefficient));
        lamina::detail::require(eps >= 0, "lars eps must be >= 0, got " + std::to_string(eps));
    }
    static std::string name() { return "lars"; }

    template <class Backend, class T>
    class state {
    public:
        state(const lars& o, std::size_t n)
            : momentum_(o.momentum), weight_decay_(o.weight_decay), eta_(o.trust_coefficient), eps_(o.eps), n_(n) {
            velocity_.allocate(std::max<std::size_t>(n, 1));
        }
        void step(const typename Backend::context& c, T* w, const T* g, const std::vector<parameter_segment>& segs,
                  double lr) {
            chunks_.prepare(c, segs, n_, "lars");
            chunks_.norms(c, static_cast<const T*>(w), g);
            const double wd = weight_decay_ * scale_, eta = eta_, eps = eps_;
            const double* wn = chunks_.norm_a();
            const double* gn = chunks_.norm_b();
            const unsigned* dec = chunks_.decay();
            double* ratio = chunks_.ratio();
            Backend::for_each_index(c, chunks_.segments(), LAMINA_LAMBDA(std::size_t s) {
                double r = 1.0;
                if (dec[s] && wn[s] > 0 && gn[s] > 0) r = eta * wn[s] / (gn[s] + wd * wn[s] + eps);
                ratio[s] = r;
            });
            const T tlr = static_cast<T>(lr), mom = static_cast<T>(momentum_), twd = static_cast<T>(wd);
            const double* rat = ratio;
            T* v = velocity_.data();
            chunks_.for_each_element(c, LAMINA_LAMBDA(std::size_t i, std::size_t s) {
                const T d = dec[s] ? twd : T(0);
                const T u = static_cast<T>(rat[s]) * (g[i] + d * w[i]);
                v[i] = mom * v[i] + u;
                w[i] -= tlr * v[i];
            });
            ++steps_;
        }
        /// The trust ratio of every segment in the last step (host copy; empty before it).
        std::vector<double> trust_ratios(const typename Backend::context& c) const {
            std::vector<double> r(chunks_.segments());
            if (!r.empty()) Backend::download(c, r.data(), chunks_.ratio(), r.size());
            return r;
        }
        /// Multiplies the weight decay from the next step on (1: as constructed).
        void set_weight_decay_scale(double s) {
            detail::check_weight_decay_scale(s, "lars");
            scale_ = s;
        }
        double weight_decay_scale() const noexcept { return scale_; }
        std::uint64_t steps() const noexcept { return steps_; }
        std::vector<std::pair<std::string, std::size_t>> layout() const { return {{"velocity", n_}}; }
        std::vector<std::pair<std::string, std::vector<T>>> save(const typename Backend::context& c) const {
            std::vector<T> v(n_);
            if (n_) Backend::download(c, v.data(), velocity_.data(), n_);
            return {{"velocity", std::move(v)}};
        }
        void load(const typename Backend::context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st,
                  std::uint64_t steps) {
            if (st.size() != 1 || st[0].first != "velocity" || st[0].second.size() != n_)
                throw checkpoint_error("lamina: lars state in checkpoint does not match (expected one 'velocity' of " +
                                       std::to_string(n_) + " values)");
            if (n_) Backend::upload(c, velocity_.data(), st[0].second.data(), n_);
            steps_ = steps;
        }

    private:
        double momentum_, weight_decay_, eta_, eps_;
        double scale_ = 1.0;
        std::size_t n_;
        typename Backend::template buffer<T> velocity_;
        segment_chunks<Backend> chunks_;
        std::uint64_t steps_ = 0;
    };
};

}  // namespace lamina::optim
