// lamina host backend: batch norm's kernels (the specialisation of batch_norm_kernels in
// backends/portable/batch_norm.hpp). Every pass walks whole (image, channel) planes, which are
// contiguous in NCHW, with xsimd vectors:
//   - statistics: one pass per channel, sums of x - x0 and (x - x0)^2 shifted by the channel's
//     first value (no cancellation for data far from zero), vector partial sums per plane
//     combined in double; channels split across the pool's threads;
//   - normalise: y = x a_c + b_c per plane;
//   - backward: per channel sum dy and sum dy x in one pass, then dx = k1 dy + k2 x + k3 per
//     plane (x-hat expanded, so no second pass over the statistics).
// Results match the portable kernels up to floating-point reassociation. The *_synced kernels
// (synchronised batch norm) compute the per-channel sums in double about the running mean (the
// shift every process shares) and reduce them before they are used.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "../portable/batch_norm.hpp"
#include "simd.hpp"

namespace lamina {

struct host;

namespace host_detail {

/// Sums of (v - shift) and (v - shift)^2 over one contiguous plane, in double.
template <class T>
inline void plane_shifted_sums(const T* p, std::size_t n, T shift, double& s1, double& s2) {
    constexpr std::size_t W = vec_size<T>;
    const vec<T> sh(shift);
    vec<T> a0(T(0)), a1(T(0)), b0(T(0)), b1(T(0));
    std::size_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        const vec<T> d0 = load(p + i) - sh, d1 = load(p + i + W) - sh;
        a0 += d0;
        a1 += d1;
        b0 = xsimd::fma(d0, d0, b0);
        b1 = xsimd::fma(d1, d1, b1);
    }
    double t1 = double(hsum(a0 + a1)), t2 = double(hsum(b0 + b1));
    for (; i < n; ++i) {
        const double d = double(p[i]) - double(shift);
        t1 += d;
        t2 += d * d;
    }
    s1 += t1;
    s2 += t2;
}

/// Sums of dy and dy * x over one plane, in double.
template <class T>
inline void plane_dot_sums(const T* dy, const T* x, std::size_t n, double& sdy, double& sdyx) {
    constexpr std::size_t W = vec_size<T>;
    vec<T> a0(T(0)), a1(T(0)), b0(T(0)), b1(T(0));
    std::size_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        const vec<T> g0 = load(dy + i), g1 = load(dy + i + W);
        a0 += g0;
        a1 += g1;
        b0 = xsimd::fma(g0, load(x + i), b0);
        b1 = xsimd::fma(g1, load(x + i + W), b1);
    }
    double t1 = double(hsum(a0 + a1)), t2 = double(hsum(b0 + b1));
    for (; i < n; ++i) {
        t1 += double(dy[i]);
        t2 += double(dy[i]) * double(x[i]);
    }
    sdy += t1;
    sdyx += t2;
}

/// y = x a_c + b_c over every (image, channel) plane, planes split across threads.
template <class T>
inline void plane_affine(thread_pool& pool, const T* x, T* y, const T* a, const T* b, std::size_t n, std::size_t C,
                         std::size_t HW) {
    parallel_range(pool, n * C, plane_grain(HW), [&](std::size_t lo, std::size_t hi) {
        for (std::size_t nc = lo; nc < hi; ++nc) {
            const std::size_t ch = nc % C;
            const vec<T> va(a[ch]), vb(b[ch]);
            map1(x + nc * HW, y + nc * HW, 0, HW, [&](vec<T> v) { return xsimd::fma(v, va, vb); });
        }
    });
}

}  // namespace host_detail

template <>
struct batch_norm_kernels<host> {
    template <class Ctx, class T>
    static void forward_train(const Ctx& c, const T* x, T* y, T* mean, T* invstd, T* rmean, T* rvar, const T* gamma,
                              const T* beta, std::size_t n, std::size_t C, std::size_t HW, double eps, double momentum) {
        thread_pool& pool = c.pool();
        const double count = double(n * HW);
        const double unbias = count > 1 ? count / (count - 1) : 1.0;
        std::vector<T>& a = scratch<T>(0, 2 * C);
        T* b = a.data() + C;
        host_detail::parallel_range(pool, C, std::max<std::size_t>(1, host_detail::elementwise_grain / (n * HW + 1)),
                                    [&](std::size_t lo, std::size_t hi) {
                                        for (std::size_t ch = lo; ch < hi; ++ch) {
                                            const T shift = x[ch * HW];  // the channel's first value
                                            double s1 = 0, s2 = 0;
                                            for (std::size_t i = 0; i < n; ++i)
                                                host_detail::plane_shifted_sums(x + (i * C + ch) * HW, HW, shift, s1, s2);
                                            const double d = s1 / count;
                                            const double mu = double(shift) + d;
                                            const double var = std::max(0.0, s2 / count - d * d);
                                            const double is = 1.0 / std::sqrt(var + eps);
                                            mean[ch] = static_cast<T>(mu);
                                            invstd[ch] = static_cast<T>(is);
                                            rmean[ch] = static_cast<T>((1.0 - momentum) * double(rmean[ch]) + momentum * mu);
                                            rvar[ch] = static_cast<T>((1.0 - momentum) * double(rvar[ch]) +
                                                                      momentum * var * unbias);
                                            a[ch] = static_cast<T>(double(gamma[ch]) * is);
                                            b[ch] = static_cast<T>(double(beta[ch]) - mu * double(gamma[ch]) * is);
                                        }
                                    });
        host_detail::plane_affine(pool, x, y, a.data(), b, n, C, HW);
    }

    template <class Ctx, class T>
    static void forward(const Ctx& c, const T* x, T* y, const T* rmean, const T* rvar, const T* gamma, const T* beta,
                        std::size_t n, std::size_t C, std::size_t HW, double eps) {
        std::vector<T>& a = scratch<T>(1, 2 * C);
        T* b = a.data() + C;
        for (std::size_t ch = 0; ch < C; ++ch) {
            const double s = double(gamma[ch]) / std::sqrt(double(rvar[ch]) + eps);
            a[ch] = static_cast<T>(s);
            b[ch] = static_cast<T>(double(beta[ch]) - double(rmean[ch]) * s);
        }
        host_detail::plane_affine(c.pool(), x, y, a.data(), b, n, C, HW);
    }

    template <class Ctx, class T, class Ready>
    static void backward(const Ctx& c, const T* x, const T* dy, const T* mean, const T* invstd, const T* gamma,
                         T* dgamma, T* dbeta, T* dx, bool accumulate, std::size_t n, std::size_t C, std::size_t HW,
                         Ready&& ready) {
        thread_pool& pool = c.pool();
        const double M = double(n * HW);
        std::vector<T>& k = scratch<T>(2, 3 * C);
        host_detail::parallel_range(pool, C, std::max<std::size_t>(1, host_detail::elementwise_grain / (n * HW + 1)),
                                    [&](std::size_t lo, std::size_t hi) {
                                        for (std::size_t ch = lo; ch < hi; ++ch) {
                                            double sdy = 0, sdyx = 0;
                                            for (std::size_t i = 0; i < n; ++i) {
                                                const T* g = dy + (i * C + ch) * HW;
                                                const T* p = x + (i * C + ch) * HW;
                                                for (std::size_t j = 0; j < HW; ++j) {
                                                    sdy += double(g[j]);
                                                    sdyx += double(g[j]) * double(p[j]);
                                                }
                                            }
                                            const double mu = mean[ch], is = invstd[ch], g = gamma[ch];
                                            const double dg = (sdyx - mu * sdy) * is;  // sum dy * x-hat
                                            dbeta[ch] = static_cast<T>(sdy);
                                            dgamma[ch] = static_cast<T>(dg);
                                            // dx = g is (dy - (sdy + xhat dg) / M), xhat = (x - mu) is
                                            const double k1 = g * is, k2 = -g * is * is * dg / M;
                                            k[ch] = static_cast<T>(k1);
                                            k[C + ch] = static_cast<T>(k2);
                                            k[2 * C + ch] = static_cast<T>(-k1 * sdy / M - k2 * mu);
                                        }
                                    });
        ready();
        if (!dx) return;
        apply_dx(pool, x, dy, dx, k.data(), accumulate, n, C, HW);
    }

    template <class Ctx, class T, class Sync>
    static void forward_train_synced(const Ctx& c, const T* x, T* y, T* mean, T* invstd, T* rmean, T* rvar,
                                     const T* gamma, const T* beta, std::size_t n, std::size_t C, std::size_t HW,
                                     double eps, double momentum, Sync& sync) {
        thread_pool& pool = c.pool();
        double* sums = sync.host;
        const double local = double(n * HW);
        host_detail::parallel_range(pool, C, std::max<std::size_t>(1, host_detail::elementwise_grain / (n * HW + 1)),
                                    [&](std::size_t lo, std::size_t hi) {
                                        for (std::size_t ch = lo; ch < hi; ++ch) {
                                            // sums of x - r and (x - r)^2 for the shift r every
                                            // process shares (scalar double loops: this path
                                            // is about agreement between processes, not speed)
                                            const double r = double(rmean[ch]);
                                            double s1 = 0, s2 = 0;
                                            for (std::size_t i = 0; i < n; ++i) {
                                                const T* p = x + (i * C + ch) * HW;
                                                for (std::size_t j = 0; j < HW; ++j) {
                                                    const double d = double(p[j]) - r;
                                                    s1 += d;
                                                    s2 += d * d;
                                                }
                                            }
                                            sums[ch] = s1;
                                            sums[C + ch] = s2;
                                        }
                                    });
        sums[2 * C] = local;
        sync.reducer->sum(sums, 2 * C + 1);
        const double count = sums[2 * C];
        sync.global_count = count;
        const double unbias = count > 1 ? count / (count - 1) : 1.0;
        std::vector<T>& a = scratch<T>(0, 2 * C);
        T* b = a.data() + C;
        for (std::size_t ch = 0; ch < C; ++ch) {
            const double r = rmean[ch], d = sums[ch] / count;
            const double mu = r + d;
            const double var = std::max(0.0, sums[C + ch] / count - d * d);
            const double is = 1.0 / std::sqrt(var + eps);
            mean[ch] = static_cast<T>(mu);
            invstd[ch] = static_cast<T>(is);
            rmean[ch] = static_cast<T>((1.0 - momentum) * r + momentum * mu);
            rvar[ch] = static_cast<T>((1.0 - momentum) * double(rvar[ch]) + momentum * var * unbias);
            a[ch] = static_cast<T>(double(gamma[ch]) * is);
            b[ch] = static_cast<T>(double(beta[ch]) - mu * double(gamma[ch]) * is);
        }
        host_detail::plane_affine(pool, x, y, a.data(), b, n, C, HW);
    }

    template <class Ctx, class T, class Sync, class Ready>
    static void backward_synced(const Ctx& c, const T* x, const T* dy, const T* mean, const T* invstd, const T* gamma,
                                T* dgamma, T* dbeta, T* dx, bool accumulate, std::size_t n, std::size_t C,
                                std::size_t HW, Sync& sync, Ready&& ready) {
        thread_pool& pool = c.pool();
        double* sums = sync.host;
        host_detail::parallel_range(pool, C, std::max<std::size_t>(1, host_detail::elementwise_grain / (n * HW + 1)),
                                    [&](std::size_t lo, std::size_t hi) {
                                        for (std::size_t ch = lo; ch < hi; ++ch) {
                                            double sdy = 0, sdyx = 0;
                                            for (std::size_t i = 0; i < n; ++i) {
                                                const T* g = dy + (i * C + ch) * HW;
                                                const T* p = x + (i * C + ch) * HW;
                                                for (std::size_t j = 0; j < HW; ++j) {
                                                    sdy += double(g[j]);
                                                    sdyx += double(g[j]) * double(p[j]);
                                                }
                                            }
                                            const double dg = (sdyx - double(mean[ch]) * sdy) * double(invstd[ch]);
                                            dbeta[ch] = static_cast<T>(sdy);
                                            dgamma[ch] = static_cast<T>(dg);
                                            sums[ch] = sdy;
                                            sums[C + ch] = dg;
                                        }
                                    });
        ready();
        if (!dx) return;  // the same on every process: the network input's gradient was not asked for
        sync.reducer->sum(sums, 2 * C);
        const double M = sync.global_count;
        std::vector<T>& k = scratch<T>(2, 3 * C);
        for (std::size_t ch = 0; ch < C; ++ch) {
            const double mu = mean[ch], is = invstd[ch], g = gamma[ch], sdy = sums[ch], dg = sums[C + ch];
            const double k1 = g * is, k2 = -g * is * is * dg / M;
            k[ch] = static_cast<T>(k1);
            k[C + ch] = static_cast<T>(k2);
            k[2 * C + ch] = static_cast<T>(-k1 * sdy / M - k2 * mu);
        }
        apply_dx(pool, x, dy, dx, k.data(), accumulate, n, C, HW);
    }

private:
    /// dx (+)= k1 dy + k2 x + k3 per channel (x-hat expanded).
    template <class T>
    static void apply_dx(thread_pool& pool, const T* x, const T* dy, T* dx, const T* k1, bool accumulate, std::size_t n,
                         std::size_t C, std::size_t HW) {
        const T* k2 = k1 + C;
        const T* k3 = k2 + C;
        host_detail::parallel_range(pool, n * C, host_detail::plane_grain(HW), [&](std::size_t lo, std::size_t hi) {
            using V = host_detail::vec<T>;
            for (std::size_t nc = lo; nc < hi; ++nc) {
                const std::size_t ch = nc % C;
                const V a(k1[ch]), b(k2[ch]), o(k3[ch]);
                const std::size_t at = nc * HW;
                if (accumulate)
                    host_detail::map3(dy + at, x + at, dx + at, dx + at, 0, HW,
                                      [&](V g, V v, V d) { return d + xsimd::fma(g, a, xsimd::fma(v, b, o)); });
                else
                    host_detail::map2(dy + at, x + at, dx + at, 0, HW,
                                      [&](V g, V v) { return xsimd::fma(g, a, xsimd::fma(v, b, o)); });
            }
        });
    }

    /// Per-thread, per-use coefficient scratch, grown once (the hot path then allocates nothing).
    template <class T>
    static std::vector<T>& scratch(int which, std::size_t n) {
        thread_local std::vector<T> s[3];
        if (s[which].size() < n) s[which].resize(n);
        return s[which];
    }
};

}  // namespace lamina
