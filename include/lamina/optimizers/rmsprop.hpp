// lamina: RMSProp (Hinton's lecture 6e), torch.optim.RMSprop semantics:
//
//   g' = g + wd w                      (L2 decay; skipped on decay = false segments)
//   s = alpha s + (1 - alpha) g'^2
//   centered: a = alpha a + (1 - alpha) g';  d = sqrt(s - a^2) + eps   else d = sqrt(s) + eps
//   momentum > 0: b = momentum b + g' / d;  w -= lr b                  else w -= lr g' / d
//
// eps is added after the square root, as in PyTorch (not inside it, as in Keras). The centered
// variance s - a^2 is clamped at 0 against rounding (PyTorch takes the root of a tiny negative
// value, which gives NaN). The element-wise update is written once for every backend.
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

namespace rmsprop_detail {
/// One RMSProp update of elements [off, off + n) (state pointers not used may be null).
template <class Backend, class T>
void update(const typename Backend::context& c, T* w, const T* g, T* sq, T* buf, T* avg, std::size_t off,
            std::size_t n, T lr, T alpha, T eps, T wd, T momentum) {
    Backend::for_each_index(c, n, LAMINA_LAMBDA(std::size_t k) {
        const std::size_t i = off + k;
        const T grad = g[i] + wd * w[i];
        sq[i] = alpha * sq[i] + (T(1) - alpha) * grad * grad;
        T d;
        if (avg) {
            avg[i] = alpha * avg[i] + (T(1) - alpha) * grad;
            const T var = sq[i] - avg[i] * avg[i];
            d = std::sqrt(var > T(0) ? var : T(0)) + eps;
        } else {
            d = std::sqrt(sq[i]) + eps;
        }
        if (buf) {
            buf[i] = momentum * buf[i] + grad / d;
            w[i] -= lr * buf[i];
        } else {
            w[i] -= lr * grad / d;
        }
    });
}
}  // namespace rmsprop_detail

struct rmsprop {
    double lr = 0.01, alpha = 0.99, eps = 1e-8, weight_decay = 0.0, momentum = 0.0;
    bool centered = false;

    /// PyTorch's argument order and defaults.
    explicit rmsprop(double lr_ = 0.01, double alpha_ = 0.99, double eps_ = 1e-8, double weight_decay_ = 0.0,
                     double momentum_ = 0.0, bool centered_ = false)
        : lr(lr_), alpha(alpha_), eps(eps_), weight_decay(weight_decay_), momentum(momentum_), centered(centered_) {
        lamina::detail::require(lr > 0, "rmsprop learning rate must be positive, got " + std::to_string(lr));
        lamina::detail::require(alpha >= 0 && alpha < 1, "rmsprop alpha must be in [0, 1), got " + std::to_string(alpha));
        lamina::detail::require(eps > 0, "rmsprop eps must be positive, got " + std::to_string(eps));
        lamina::detail::require(weight_decay >= 0, "rmsprop weight_decay must be >= 0, got " + std::to_string(weight_decay));
        lamina::detail::require(momentum >= 0 && momentum < 1,
                                "rmsprop momentum must be in [0, 1), got " + std::to_string(momentum));
    }
    static std::string name() { return "rmsprop"; }

    template <class Backend, class T>
    class state {
    public:
        state(const rmsprop& o, std::size_t n)
            : alpha_(o.alpha), eps_(o.eps), weight_decay_(o.weight_decay), momentum_(o.momentum),
              centered_(o.centered), n_(n) {
            const std::size_t size = std::max<std::size_t>(n, 1);
            square_avg_.allocate(size);
            if (momentum_ > 0) momentum_buffer_.allocate(size);
            if (centered_) grad_avg_.allocate(size);
        }
        void step(const typename Backend::context& c, T* w, const T* g, const std::vector<parameter_segment>& segs,
                  double lr) {
            const double wd = weight_decay_ * scale_;
            if (wd != 0.0) detail::check_segments(segs, n_, "rmsprop");
            T* buf = momentum_ > 0 ? momentum_buffer_.data() : nullptr;
            T* avg = centered_ ? grad_avg_.data() : nullptr;
            detail::for_decay_ranges(segs, n_, wd, [&](std::size_t off, std::size_t count, double d) {
                rmsprop_detail::update<Backend, T>(c, w, g, square_avg_.data(), buf, avg, off, count,
                                                   static_cast<T>(lr), static_cast<T>(alpha_), static_cast<T>(eps_),
                                                   static_cast<T>(d), static_cast<T>(momentum_));
            });
            ++steps_;
        }
        /// Multiplies the weight decay from the next step on (1: as constructed).
        void set_weight_decay_scale(double s) {
            detail::check_weight_decay_scale(s, "rmsprop");
            scale_ = s;
        }
        double weight_decay_scale() const noexcept { return scale_; }
        std::uint64_t steps() const noexcept { return steps_; }
        /// "square_avg", then "momentum_buffer" (momentum > 0) and "grad_avg" (centered).
        std::vector<std::pair<std::string, std::size_t>> layout() const {
            std::vector<std::pair<std::string, std::size_t>> l{{"square_avg", n_}};
            if (momentum_ > 0) l.emplace_back("momentum_buffer", n_);
            if (centered_) l.emplace_back("grad_avg", n_);
            return l;
        }
        std::vector<std::pair<std::string, std::vector<T>>> save(const typename Backend::context& c) const {
            std::vector<std::pair<std::string, std::vector<T>>> out;
            for (const auto& [name, size] : layout()) {
                std::vector<T> h(size);
                if (size) Backend::download(c, h.data(), buffer(name).data(), size);
                out.emplace_back(name, std::move(h));
            }
            return out;
        }
        void load(const typename Backend::context& c, const std::vector<std::pair<std::string, std::vector<T>>>& st,
                  std::uint64_t steps) {
            const auto l = layout();
            bool ok = st.size() == l.size();
            for (std::size_t k = 0; ok && k < l.size(); ++k) ok = st[k].first == l[k].first && st[k].second.size() == n_;
            if (!ok) {
                std::string want;
                for (const auto& e : l) want += (want.empty() ? "'" : ", '") + e.first + "'";
                throw checkpoint_error("lamina: rmsprop state in checkpoint does not match (expected " + want + " of " +
                                       std::to_string(n_) + " values each)");
            }
            for (const auto& [name, values] : st)
                if (n_) Backend::upload(c, buffer(name).data(), values.data(), n_);
            steps_ = steps;
        }

    private:
        const typename Backend::template buffer<T>& buffer(const std::string& name) const {
            return name == "square_avg" ? square_avg_ : name == "momentum_buffer" ? momentum_buffer_ : grad_avg_;
        }
        typename Backend::template buffer<T>& buffer(const std::string& name) {
            return name == "square_avg" ? square_avg_ : name == "momentum_buffer" ? momentum_buffer_ : grad_avg_;
        }

        double alpha_, eps_, weight_decay_, momentum_;
        bool centered_;
        double scale_ = 1.0;
        std::size_t n_;
        typename Backend::template buffer<T> square_avg_, momentum_buffer_, grad_avg_;
        std::uint64_t steps_ = 0;
    };
};

}  // namespace lamina::optim
