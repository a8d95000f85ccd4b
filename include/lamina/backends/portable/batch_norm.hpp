// lamina: batch norm's kernels written once for every backend with Backend::for_each_index
// (one work item per channel for the reductions, one per element for the passes). A backend
// with faster ones specialises batch_norm_kernels (backends/host/batch_norm.hpp does);
// layers/batch_norm.hpp calls only these.
//
// Layout: x, y, dy, dx are [n][channels][inner] (NCHW, or [n][features] with inner = 1).
//
// The *_synced kernels are synchronised batch norm (`Sync` is layers/batch_statistics.hpp's
// batch_statistics_sync: a reducer and 2C + 1 doubles of scratch on the device and host): the
// per-channel sums go through the reducer between the statistics pass and the pass that
// uses them. Statistics are summed about the running mean, which is the same on every
// process (it is updated from the global statistics), so every process shifts by the same
// value and sums of squares do not cancel for data far from zero.
#pragma once

#include <cmath>
#include <cstddef>

#include "../../core/config.hpp"

namespace lamina {

template <class Backend, class = void>
struct batch_norm_kernels {
    using context = typename Backend::context;

    /// Training: per channel the batch mean and 1/sqrt(biased var + eps) into mean/invstd,
    /// the running statistics updated with momentum (unbiased variance), and
    /// y = (x - mean) invstd gamma + beta.
    template <class T>
    static void forward_train(const context& c, const T* x, T* y, T* mean, T* invstd, T* rmean, T* rvar,
                              const T* gamma, const T* beta, std::size_t n, std::size_t C, std::size_t HW, double eps,
                              double momentum) {
        const double count = double(n * HW);
        const double unbias = count > 1 ? count / (count - 1) : 1.0;
        const double e = eps, m = momentum;
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
        Backend::for_each_index(c, n * C * HW, LAMINA_LAMBDA(std::size_t i) {
            const std::size_t ch = (i / HW) % C;
            y[i] = (x[i] - mean[ch]) * invstd[ch] * gamma[ch] + beta[ch];
        });
    }

    /// Inference: y = (x - running mean) / sqrt(running var + eps) gamma + beta.
    template <class T>
    static void forward(const context& c, const T* x, T* y, const T* rmean, const T* rvar, const T* gamma,
                        const T* beta, std::size_t n, std::size_t C, std::size_t HW, double eps) {
        const T e = static_cast<T>(eps);
        Backend::for_each_index(c, n * C * HW, LAMINA_LAMBDA(std::size_t i) {
            const std::size_t ch = (i / HW) % C;
            y[i] = (x[i] - rmean[ch]) / std::sqrt(rvar[ch] + e) * gamma[ch] + beta[ch];
        });
    }

    /// dgamma = sum dy x-hat, dbeta = sum dy (overwritten); then, when dx is not null,
    /// dx (+)= gamma invstd / M (M dy - dbeta - x-hat dgamma), M = n * HW. Reports through
    /// `ready()` between the two (the sink contract: parameter gradients before dx).
    template <class T, class Ready>
    static void backward(const context& c, const T* x, const T* dy, const T* mean, const T* invstd, const T* gamma,
                         T* dgamma, T* dbeta, T* dx, bool accumulate, std::size_t n, std::size_t C, std::size_t HW,
                         Ready&& ready) {
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
        ready();
        if (!dx) return;
        const T inv_count = T(1) / static_cast<T>(n * HW);
        const bool acc = accumulate;
        Backend::for_each_index(c, n * C * HW, LAMINA_LAMBDA(std::size_t i) {
            const std::size_t ch = (i / HW) % C;
            const T xhat = (x[i] - mean[ch]) * invstd[ch];
            const T g = gamma[ch] * invstd[ch] * (dy[i] - (dbeta[ch] + xhat * dgamma[ch]) * inv_count);
            dx[i] = acc ? dx[i] + g : g;  // a select: dx may hold garbage when overwritten
        });
    }

    /// forward_train with the statistics of the global batch: per channel the sums of
    /// x - running mean and of its square, summed over the processes with the count, then as
    /// forward_train. Sets sync.global_count.
    template <class T, class Sync>
    static void forward_train_synced(const context& c, const T* x, T* y, T* mean, T* invstd, T* rmean, T* rvar,
                                     const T* gamma, const T* beta, std::size_t n, std::size_t C, std::size_t HW,
                                     double eps, double momentum, Sync& sync) {
        double* sums = sync.device;
        Backend::for_each_index(
            c, C,
            LAMINA_LAMBDA(std::size_t ch) {
                const double shift = double(rmean[ch]);
                double s1 = 0, s2 = 0;
                for (std::size_t b = 0; b < n; ++b)
                    for (std::size_t j = 0; j < HW; ++j) {
                        const double d = double(x[(b * C + ch) * HW + j]) - shift;
                        s1 += d;
                        s2 += d * d;
                    }
                sums[ch] = s1;
                sums[C + ch] = s2;
            },
            2 * n * HW);
        Backend::download(c, sync.host, static_cast<const double*>(sums), 2 * C);
        sync.host[2 * C] = double(n * HW);
        sync.reducer->sum(sync.host, 2 * C + 1);
        const double count = sync.host[2 * C];
        sync.global_count = count;
        Backend::upload(c, sums, static_cast<const double*>(sync.host), 2 * C);
        const double unbias = count > 1 ? count / (count - 1) : 1.0;
        const double e = eps, m = momentum;
        Backend::for_each_index(c, C, LAMINA_LAMBDA(std::size_t ch) {
            const double shift = double(rmean[ch]);
            const double d = sums[ch] / count;
            const double mu = shift + d;
            double v = sums[C + ch] / count - d * d;
            v = v > 0 ? v : 0.0;
            mean[ch] = static_cast<T>(mu);
            invstd[ch] = static_cast<T>(1.0 / std::sqrt(v + e));
            rmean[ch] = static_cast<T>((1.0 - m) * shift + m * mu);
            rvar[ch] = static_cast<T>((1.0 - m) * double(rvar[ch]) + m * v * unbias);
        });
        Backend::for_each_index(c, n * C * HW, LAMINA_LAMBDA(std::size_t i) {
            const std::size_t ch = (i / HW) % C;
            y[i] = (x[i] - mean[ch]) * invstd[ch] * gamma[ch] + beta[ch];
        });
    }

    /// backward after forward_train_synced: dgamma and dbeta are this process's sums (the
    /// gradient averaging adds them up); dx uses the sums of dy and dy x-hat over every
    /// process and the global count.
    template <class T, class Sync, class Ready>
    static void backward_synced(const context& c, const T* x, const T* dy, const T* mean, const T* invstd,
                                const T* gamma, T* dgamma, T* dbeta, T* dx, bool accumulate, std::size_t n,
                                std::size_t C, std::size_t HW, Sync& sync, Ready&& ready) {
        double* sums = sync.device;
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
                sums[ch] = sb;
                sums[C + ch] = sg;
            },
            3 * n * HW);
        ready();
        if (!dx) return;  // the same on every process: the network input's gradient was not asked for
        Backend::download(c, sync.host, static_cast<const double*>(sums), 2 * C);
        sync.reducer->sum(sync.host, 2 * C);
        Backend::upload(c, sums, static_cast<const double*>(sync.host), 2 * C);
        const T inv_count = static_cast<T>(1.0 / sync.global_count);
        const bool acc = accumulate;
        Backend::for_each_index(c, n * C * HW, LAMINA_LAMBDA(std::size_t i) {
            const std::size_t ch = (i / HW) % C;
            const T xhat = (x[i] - mean[ch]) * invstd[ch];
            const T sb = static_cast<T>(sums[ch]), sg = static_cast<T>(sums[C + ch]);
            const T g = gamma[ch] * invstd[ch] * (dy[i] - (sb + xhat * sg) * inv_count);
            dx[i] = acc ? dx[i] + g : g;
        });
    }
};

}  // namespace lamina
