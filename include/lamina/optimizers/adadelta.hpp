// lamina: Adadelta (Zeiler 2012), torch.optim.Adadelta semantics:
//
//   g' = g + wd w                                  (L2 decay; skipped on decay = false segments)
//   s = rho s + (1 - rho) g'^2
//   delta = sqrt(a + eps) / sqrt(s + eps) * g'
//   a = rho a + (1 - rho) delta^2
//   w -= lr delta                                  (lr 1 is Zeiler's method; PyTorch's default)
//
// The element-wise update is written once for every backend.
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
#include "weight_decay.hpp"

namespace lamina::optim {

namespace adadelta_detail {
/// One Adadelta update of elements [off, off + n).
template <class Backend, class T>
void update(const typename Backend::context& c, T* w, const T* g, T* sq, T* acc, std::size_t off, std::size_t n, T lr,
            T rho, T eps, T wd) {
    Backend::for_each_index(c, n, LAMINA_LAMBDA(std::size_t k) {
        const std::size_t i = off + k;
        const T grad = g[i] + wd * w[i];
        sq[i] = rho * sq[i] + (T(1) - rho) * grad * grad;
        const T delta = std::sqrt(acc[i] + eps) / std::sqrt(sq[i] + eps) * grad;
        acc[i] = rho * acc[i] + (T(1) - rho) * delta * delta;
        w[i] -= lr * delta;
    });
}
}  // namespace adadelta_detail

struct adadelta {
    double lr = 1.0, rho = 0.9, eps = 1e-6, weight_decay = 0.0;

    /// PyTorch's argument order and defaults.
    explicit adadelta(double lr_ = 1.0, double rho_ = 0.9, double eps_ = 1e-6, double weight_decay_ = 0.0)
        : lr(lr_), rho(rho_), eps(eps_), weight_decay(weight_decay_) {
        lamina::detail::require(lr > 0, "adadelta learning rate must be positive, got " + std::to_string(lr));
        lamina::detail::require(rho >= 0 && rho < 1, "adadelta rho must be in [0, 1), got " + std::to_string(rho));
        lamina::detail::require(eps > 0, "adadelta eps must be positive, got " + std::to_string(eps));
        lamina::detail::require(weight_decay >= 0,
                                "adadelta weight_decay must be >= 0, got " + std::to_string(weight_decay));
    }
    static std::string name() { return "adadelta"; }

    template <class Backend, class T>
    class state {
    public:
        state(const adadelta& o, std::size_t n) : rho_(o.rho), eps_(o.eps), weight_decay_(o.weight_decay), n_(n) {
            square_avg_.allocate(std::max<std::size_t>(n, 1));
            acc_delta_.allocate(std::max<std::size_t>(n, 1));
        }
        void step(const typename Backend::context& c, T* w, const T* g, const std::vector<parameter_segment>& segs,
                  double lr) {
            const double wd = weight_decay_ * scale_;
            if (wd != 0.0) detail::check_segments(segs, n_, "adadelta");
            detail::for_decay_ranges(segs, n_, wd, [&](std::size_t off, std::size_t count, double d) {
                adadelta_detail::update<Backend, T>(c, w, g, square_avg_.data(), acc_delta_.data(), off, count,
                                                    static_cast<T>(lr), static_cast<T>(rho_), static_cast<T>(eps_),
                                                    static_cast<T>(d));
            });
            ++steps_;
        }
        /// Multiplies the weight decay from the next step on (1: as constructed).
        void set_weight_decay_scale(double s) {
            detail::check_weight_decay_scale(s, "adadelta");
            scale_ = s;
        }
        double weight_decay_scale() const noexcept { return scale_; }
        std::uint64_t steps() const noexcept { return steps_; }
        std::vector<std::pair<std::string, std::size_t>> layout() const {
            return {{"square_avg", n_}, {"acc_delta", n_}};
        }
        std::vector<std::pair<std::string, std::vector<T>>> save(const typename Backend::context& c) const {
            std::vector<T> s(n_), a(n_);
            if (n_) {
                Backend::download(c, s.data(), square_avg_.data(), n_);
                Backend::download(c, a.data(), acc_delta_.data(), n_);
            }
            return {{"square_avg", std::move(s)}, {"acc_delta", std::move(a)}};
        }
        void load(const typename Backend::context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st,
                  std::uint64_t steps) {
            if (st.size() != 2 || st[0].first != "square_avg" || st[1].first != "acc_delta" ||
                st[0].second.size() != n_ || st[1].second.size() != n_)
                throw checkpoint_error(
                    "lamina: adadelta state in checkpoint does not match (expected 'square_avg' and 'acc_delta' of " +
                    std::to_string(n_) + " values)");
            if (n_) {
                Backend::upload(c, square_avg_.data(), st[0].second.data(), n_);
                Backend::upload(c, acc_delta_.data(), st[1].second.data(), n_);
            }
            steps_ = steps;
        }

    private:
        double rho_, eps_, weight_decay_;
        double scale_ = 1.0;
        std::size_t n_;
        typename Backend::template buffer<T> square_avg_, acc_delta_;
        std::uint64_t steps_ = 0;
    };
};

}  // namespace lamina::optim
