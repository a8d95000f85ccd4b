// lamina: layer normalization (Ba et al.), PyTorch's LayerNorm over the whole sample shape:
// each sample is normalised with its own mean and biased variance over all of its elements
// ((C, H, W) for images, N for vectors), then scaled and shifted elementwise by gamma and beta
// of the sample's size (elementwise_affine = True). Training and inference compute the same
// thing (no running statistics).
//
//   lm::dense<256>, lm::layer_norm, lm::gelu
//
// gamma (ones) and beta (zeros) are trainable without weight decay. Eps is a std::ratio
// (default 1e-5, PyTorch's). Written once for every backend: per-sample reductions, per-feature
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

template <class Eps = std::ratio<1, 100000>>
struct layer_norm_t : layer_descriptor_base {
    static constexpr double eps = double(Eps::num) / double(Eps::den);
    static_assert(eps > 0.0, "lamina::layer_norm: eps must be positive");
    static std::string name() { return "layer_norm"; }
    template <class In>
    static constexpr bool accepts = is_shape<In>::value;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t features = In::size;  // normalised together, per sample
        static constexpr std::size_t parameter_count = 2 * features;  // gamma, beta
        static constexpr double flops_per_sample = 8.0 * In::size;
        // backward recomputes x-hat from x and the saved statistics; dx[i] needs dy[i] only, after
        // the per-sample sums
        static constexpr auto traits = graph::leaf_traits{}.in_place_gradient().accumulating();

        std::vector<tensor_spec> tensor_specs() const {
            return {{"gamma", features, 0, 0, init::kind::ones, false, tensor_kind::trainable},
                    {"beta", features, 0, 0, init::kind::zeros, false, tensor_kind::trainable}};
        }
        void bind(const tensor_binding<T>& b) {
            p_ = b.parameters;
            g_ = b.gradients;
        }
        /// Inference keeps each sample's mean and 1/sqrt(var + eps) here; backward its two sums.
        std::size_t workspace_size(std::size_t batch) const { return 2 * batch; }
        /// Each sample's mean and 1/sqrt(var + eps), kept for backward.
        std::size_t saved_bytes(std::size_t batch) const { return 2 * batch * sizeof(T); }

        void forward(const context& c, const node_io<T>& io) const {
            normalize(c, io.x[0], io.y, p_, io.workspace, io.batch);
        }
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t) {
            normalize(c, io.x[0], io.y, p_, io.template saved_as<T>(), io.batch);
        }

        /// y = (x - mean) invstd gamma + beta; stats receives mean[batch] then invstd[batch].
        /// (Public: a device lambda may not live in a private member function under CUDA.)
        static void normalize(const context& c, const T* x, T* y, const T* p, T* stats, std::size_t n) {
            T* mean = stats;
            T* invstd = stats + n;
            const T* gamma = p;
            const T* beta = p + features;
            const double e = eps;
            constexpr std::size_t D = features;
            // per sample: mean, then the variance around it (two passes, in double)
            Backend::for_each_index(
                c, n,
                LAMINA_LAMBDA(std::size_t b) {
                    const T* xb = x + b * D;
                    double s = 0;
                    for (std::size_t j = 0; j < D; ++j) s += double(xb[j]);
                    const double mu = s / double(D);
                    double v = 0;
                    for (std::size_t j = 0; j < D; ++j) {
                        const double d = double(xb[j]) - mu;
                        v += d * d;
                    }
                    mean[b] = static_cast<T>(mu);
                    invstd[b] = static_cast<T>(1.0 / std::sqrt(v / double(D) + e));
                },
                3 * D);
            Backend::for_each_index(c, n * D, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t b = i / D, j = i % D;
                y[i] = (x[i] - mean[b]) * invstd[b] * gamma[j] + beta[j];
            });
        }

        template <class Sink>
        void backward(const context& c, const node_io<T>& io, Sink& sink) {
            const std::size_t n = io.batch;
            const T* x = io.x[0];
            const T* dy = io.dy;
            const T* mean = io.template saved_as<T>();
            const T* invstd = mean + n;
            const T* gamma = p_;
            T* dgamma = g_;
            T* dbeta = g_ + features;
            constexpr std::size_t D = features;
            // dgamma = sum over the batch of dy * x-hat, dbeta = sum of dy
            Backend::for_each_index(
                c, D,
                LAMINA_LAMBDA(std::size_t j) {
                    double sg = 0, sb = 0;
                    for (std::size_t b = 0; b < n; ++b) {
                        const std::size_t i = b * D + j;
                        sb += double(dy[i]);
                        sg += double(dy[i]) * (double(x[i]) - double(mean[b])) * double(invstd[b]);
                    }
                    dgamma[j] = static_cast<T>(sg);
                    dbeta[j] = static_cast<T>(sb);
                },
                3 * n);
            sink.ready(static_cast<const T*>(g_), parameter_count);
            T* dx = io.dx[0];
            if (!dx) return;
            // With g = gamma dy: dx = invstd (g - mean_j(g) - x-hat mean_j(g x-hat)), per sample.
            T* sum_g = io.workspace;
            T* sum_gx = io.workspace + n;
            Backend::for_each_index(
                c, n,
                LAMINA_LAMBDA(std::size_t b) {
                    double s1 = 0, s2 = 0;
                    const double mu = double(mean[b]), is = double(invstd[b]);
                    for (std::size_t j = 0; j < D; ++j) {
                        const std::size_t i = b * D + j;
                        const double g = double(gamma[j]) * double(dy[i]);
                        s1 += g;
                        s2 += g * (double(x[i]) - mu) * is;
                    }
                    sum_g[b] = static_cast<T>(s1);
                    sum_gx[b] = static_cast<T>(s2);
                },
                4 * D);
            const T inv_d = T(1) / static_cast<T>(D);
            const bool acc = io.accumulate[0];
            Backend::for_each_index(c, n * D, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t b = i / D, j = i % D;
                const T xhat = (x[i] - mean[b]) * invstd[b];
                const T g = invstd[b] * (gamma[j] * dy[i] - (sum_g[b] + xhat * sum_gx[b]) * inv_d);
                dx[i] = acc ? dx[i] + g : g;  // a select: dx may hold garbage when overwritten
            });
        }

    private:
        T* p_ = nullptr;  // gamma, beta
        T* g_ = nullptr;  // their gradients
    };
};

/// PyTorch's default: eps = 1e-5.
using layer_norm = layer_norm_t<>;

}  // namespace lamina
