// lamina: batch normalization (Ioffe & Szegedy), PyTorch semantics: per channel for images
// (C, H, W), per feature for vectors; training normalises with the batch's mean and biased
// variance and updates the running mean and the running unbiased variance with momentum
// (running = (1 - m) running + m batch); inference uses the running statistics.
//
//   lm::conv2d<64, 3, 1, 1, lm::init::he_normal, false>, lm::batch_norm, lm::relu
//
// gamma and beta are trainable (no weight decay); running_mean and running_var are running
// state: checkpointed, never optimized. batch_norm_zero_gamma starts gamma at 0 (the last
// BN of a residual block, Goyal et al.). Written once for every backend: per-channel
// reductions and elementwise passes through Backend::for_each_index.
#pragma once

#include <cmath>
#include <cstddef>
#include <ratio>
#include <string>

#include "../core/config.hpp"
#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

/// Momentum and Eps are std::ratio; GammaInit is how gamma starts (init::kind::ones, or zeros).
template <class Momentum = std::ratio<1, 10>, class Eps = std::ratio<1, 100000>, init::kind GammaInit = init::kind::ones>
struct batch_norm_t : layer_descriptor_base {
    static constexpr double momentum = double(Momentum::num) / double(Momentum::den);
    static constexpr double eps = double(Eps::num) / double(Eps::den);
    static_assert(momentum >= 0.0 && momentum <= 1.0, "lamina::batch_norm: momentum must be in [0, 1]");
    static_assert(eps > 0.0, "lamina::batch_norm: eps must be positive");
    static std::string name() {
        std::string n = "batch_norm";
        if (GammaInit == init::kind::zeros) n += "<gamma=0>";
        return n;
    }
    template <class In>
    static constexpr bool accepts = In::rank == 1 || In::rank == 3;
    template <class In>
    using expected_input = any_shape_of_rank<3>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t channels = chw<In>::c;
        static constexpr std::size_t inner = chw<In>::h * chw<In>::w;  // spatial size per channel
        static constexpr std::size_t parameter_count = 2 * channels;   // gamma, beta
        static constexpr std::size_t state_count = 2 * channels;       // running mean, running variance
        static constexpr double flops_per_sample = 4.0 * In::size;
        static constexpr graph::leaf_traits traits = [] {
            graph::leaf_traits t;
            t.needs_input = true;        // backward recomputes x-hat from x and the saved statistics
            t.in_place_backward = true;  // dx[i] needs dy[i] only, after the per-channel sums
            t.accumulates = true;
            return t;
        }();

        std::vector<tensor_spec> tensor_specs() const {
            return {{"gamma", channels, 0, 0, GammaInit, false, tensor_kind::trainable},
                    {"beta", channels, 0, 0, init::kind::zeros, false, tensor_kind::trainable},
                    {"running_mean", channels, 0, 0, init::kind::zeros, false, tensor_kind::state},
                    {"running_var", channels, 0, 0, init::kind::ones, false, tensor_kind::state}};
        }
        void bind(const tensor_binding<T>& b) {
            p_ = b.parameters;
            g_ = b.gradients;
            s_ = b.state;
        }
        /// The batch mean and 1/sqrt(var + eps) of each channel, kept for backward.
        std::size_t saved_bytes(std::size_t) const { return 2 * channels * sizeof(T); }

        /// Inference: the running statistics.
        void forward(const context& c, const node_io<T>& io) const {
            const T* gamma = p_;
            const T* beta = p_ + channels;
            const T* rmean = s_;
            const T* rvar = s_ + channels;
            const T* x = io.x[0];
            T* y = io.y;
            const T e = static_cast<T>(eps);
            constexpr std::size_t C = channels, HW = inner;
            Backend::for_each_index(c, io.batch * In::size, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t ch = (i / HW) % C;
                y[i] = (x[i] - rmean[ch]) / std::sqrt(rvar[ch] + e) * gamma[ch] + beta[ch];
            });
        }

        /// Training: batch statistics; updates the running statistics.
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t) {
            const std::size_t n = io.batch;
            const T* x = io.x[0];
            T* y = io.y;
            T* mean = io.template saved_as<T>();
            T* invstd = mean + channels;
            T* rmean = s_;
            T* rvar = s_ + channels;
            const T* gamma = p_;
            const T* beta = p_ + channels;
            const double e = eps, m = momentum;
            constexpr std::size_t C = channels, HW = inner;
            const double count = double(n * HW);
            const double unbias = count > 1 ? count / (count - 1) : 1.0;
            // per channel: mean, then the variance around it (two passes, in double)
            Backend::for_each_index(
                c, C,
                LAMINA_LAMBDA(std::size_t ch) {
                    double s = 0;
                    for (std::size_t b = 0; b < n; ++b)
                        for (std::size_t j = 0; j < HW; ++j) s += double(x[(b * C + ch) * HW + j]);
                    const double mu = s / count;
                    double v = 0;
                    for (std::size_t b = 0; b < n; ++b)
                        for (std::size_t j = 0; j < HW; ++j) {
                            const double d = double(x[(b * C + ch) * HW + j]) - mu;
                            v += d * d;
                        }
                    v /= count;
                    mean[ch] = static_cast<T>(mu);
                    invstd[ch] = static_cast<T>(1.0 / std::sqrt(v + e));
                    rmean[ch] = static_cast<T>((1.0 - m) * double(rmean[ch]) + m * mu);
                    rvar[ch] = static_cast<T>((1.0 - m) * double(rvar[ch]) + m * v * unbias);
                },
                3 * n * HW);
            Backend::for_each_index(c, n * In::size, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t ch = (i / HW) % C;
                y[i] = (x[i] - mean[ch]) * invstd[ch] * gamma[ch] + beta[ch];
            });
        }

        template <class Sink>
        void backward(const context& c, const node_io<T>& io, Sink& sink) {
            const std::size_t n = io.batch;
            const T* x = io.x[0];
            const T* dy = io.dy;
            const T* mean = io.template saved_as<T>();
            const T* invstd = mean + channels;
            const T* gamma = p_;
            T* dgamma = g_;
            T* dbeta = g_ + channels;
            constexpr std::size_t C = channels, HW = inner;
            // dbeta = sum dy, dgamma = sum dy * x-hat
            Backend::for_each_index(
                c, C,
                LAMINA_LAMBDA(std::size_t ch) {
                    double sb = 0, sg = 0;
                    const double mu = double(mean[ch]), is = double(invstd[ch]);
                    for (std::size_t b = 0; b < n; ++b)
                        for (std::size_t j = 0; j < HW; ++j) {
                            const std::size_t i = (b * C + ch) * HW + j;
                            sb += double(dy[i]);
                            sg += double(dy[i]) * (double(x[i]) - mu) * is;
                        }
                    dbeta[ch] = static_cast<T>(sb);
                    dgamma[ch] = static_cast<T>(sg);
                },
                3 * n * HW);
            sink.ready(static_cast<const T*>(g_), parameter_count);
            T* dx = io.dx[0];
            if (!dx) return;
            // dx = gamma invstd / M (M dy - dbeta - x-hat dgamma), M = batch * spatial size
            const T inv_count = T(1) / static_cast<T>(n * HW);
            const bool acc = io.accumulate[0];
            Backend::for_each_index(c, n * In::size, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t ch = (i / HW) % C;
                const T xhat = (x[i] - mean[ch]) * invstd[ch];
                const T g = gamma[ch] * invstd[ch] * (dy[i] - (dbeta[ch] + xhat * dgamma[ch]) * inv_count);
                dx[i] = acc ? dx[i] + g : g;  // a select: dx may hold garbage when overwritten
            });
        }

        const T* running_mean() const noexcept { return s_; }
        const T* running_var() const noexcept { return s_ + channels; }

    private:
        T* p_ = nullptr;  // gamma, beta
        T* g_ = nullptr;  // their gradients
        T* s_ = nullptr;  // running mean, running variance
    };
};

using batch_norm = batch_norm_t<>;
/// Batch norm whose gamma starts at 0: a residual block then starts as its shortcut.
using batch_norm_zero_gamma = batch_norm_t<std::ratio<1, 10>, std::ratio<1, 100000>, init::kind::zeros>;

}  // namespace lamina
