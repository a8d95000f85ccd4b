// lamina: the host backend, lamina's fast default. Same kernel interface as the reference
// backend (backends/reference/reference_backend.hpp, the specification), implemented with
// xsimd vectors and the context's thread pool. Kernels live in one header per concern:
//   simd.hpp (helpers, scratch), gemm.hpp, conv.hpp, pooling.hpp, elementwise.hpp
//   (elementwise, reductions, activations), losses.hpp (softmax, losses),
//   optimizer_updates.hpp.
// Work too small to repay a thread handoff runs on the calling thread. Every reduction uses a
// partition fixed by the size and the thread count, so results are deterministic for a given
// thread count and differ across thread counts only by floating-point reassociation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <cstring>
#include <memory>
#include <vector>

#include "../../core/activation.hpp"
#include "../../core/aligned_buffer.hpp"
#include "../../core/geometry.hpp"
#include "../../core/philox.hpp"
#include "../../core/thread_pool.hpp"
#include "conv.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"
#include "losses.hpp"
#include "optimizer_updates.hpp"
#include "pooling.hpp"
#include "simd.hpp"

namespace lamina {

struct host {
    static constexpr const char* name = "host";

    /// Execution resources: a thread pool shared by all copies of the context (kernels take
    /// the context by const reference and still run the pool).
    class context {
    public:
        context() : context(threads{}) {}
        explicit context(threads t) : pool_(std::make_shared<thread_pool>(t.count)) {}
        unsigned thread_count() const noexcept { return pool_->size(); }
        thread_pool& pool() const noexcept { return *pool_; }

    private:
        std::shared_ptr<thread_pool> pool_;
    };

    template <class T>
    using buffer = aligned_buffer<T>;

    static constexpr bool host_accessible = true;

    // ---- memory at the edges -------------------------------------------------------------
    template <class T>
    static void upload(const context&, T* dst, const T* host_src, std::size_t n) {
        if (n) std::memcpy(static_cast<void*>(dst), host_src, n * sizeof(T));
    }
    template <class T>
    static void download(const context&, T* host_dst, const T* src, std::size_t n) {
        if (n) std::memcpy(static_cast<void*>(host_dst), src, n * sizeof(T));
    }

    // ---- elementwise and reductions --------------------------------------------------------
    template <class T>
    static void fill(const context& ctx, T* x, std::size_t n, T v) {
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain,
                                    [&](std::size_t lo, std::size_t hi) { std::fill(x + lo, x + hi, v); });
    }
    template <class T>
    static void copy(const context& ctx, T* dst, const T* src, std::size_t n) {
        if (dst == src) return;
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            std::memmove(static_cast<void*>(dst + lo), src + lo, (hi - lo) * sizeof(T));
        });
    }
    /// y += a * x
    template <class T>
    static void axpy(const context& ctx, std::size_t n, T a, const T* x, T* y) {
        const host_detail::vec<T> va(a);
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            host_detail::map2(x, y, y, lo, hi, [&](host_detail::vec<T> xv, host_detail::vec<T> yv) { return yv + va * xv; });
        });
    }
    template <class T>
    static void scale(const context& ctx, std::size_t n, T a, T* x) {
        const host_detail::vec<T> va(a);
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            host_detail::map1(x, x, lo, hi, [&](host_detail::vec<T> v) { return v * va; });
        });
    }
    /// y = a * b elementwise
    template <class T>
    static void multiply(const context& ctx, std::size_t n, const T* a, const T* b, T* y) {
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            host_detail::map2(a, b, y, lo, hi, [](host_detail::vec<T> u, host_detail::vec<T> v) { return u * v; });
        });
    }
    /// Sum of x, accumulated in double (per-thread partials combined in thread order).
    template <class T>
    static T sum(const context& ctx, const T* x, std::size_t n) {
        return static_cast<T>(host_detail::sum_parallel(ctx.pool(), x, n));
    }
    /// Index of the largest entry of each row (first one on ties).
    template <class T>
    static void argmax_rows(const context& ctx, const T* x, std::int32_t* idx, std::size_t rows, std::size_t cols) {
        host_detail::parallel_range(ctx.pool(), rows, host_detail::plane_grain(cols), [&](std::size_t lo, std::size_t hi) {
            for (std::size_t r = lo; r < hi; ++r) {
                const T* xr = x + r * cols;
                std::size_t best = 0;
                for (std::size_t c = 1; c < cols; ++c)
                    if (xr[c] > xr[best]) best = c;
                idx[r] = static_cast<std::int32_t>(best);
            }
        });
    }
    /// Calls f(i) for i in [0, n), split across the pool's threads.
    template <class F>
    static void for_each_index(const context& ctx, std::size_t n, F&& f) {
        for_each_index(ctx, n, std::forward<F>(f), 1);
    }
    /// The same with the cost of one item in elementary operations (a per-channel reduction
    /// over a whole batch is one item of many), so that few heavy items still spread over
    /// the threads while many light ones are chunked.
    template <class F>
    static void for_each_index(const context& ctx, std::size_t n, F&& f, std::size_t work_per_item) {
        const std::size_t grain = std::max<std::size_t>(1, 1024 / std::max<std::size_t>(1, work_per_item));
        host_detail::parallel_range(ctx.pool(), n, grain, [&](std::size_t lo, std::size_t hi) {
            for (std::size_t i = lo; i < hi; ++i) f(i);
        });
    }

    // ---- bias over channels: y is [outer][channels][inner] ---------------------------------
    template <class T>
    static void add_channel_bias(const context& ctx, T* y, const T* b, std::size_t outer, std::size_t channels,
                                 std::size_t inner) {
        using V = host_detail::vec<T>;
        if (inner == 1) {  // dense layers: add the bias vector to each row
            host_detail::parallel_range(ctx.pool(), outer, host_detail::plane_grain(channels),
                                        [&](std::size_t lo, std::size_t hi) {
                                            for (std::size_t o = lo; o < hi; ++o)
                                                host_detail::map2(y + o * channels, b, y + o * channels, 0, channels,
                                                                  [](V u, V v) { return u + v; });
                                        });
            return;
        }
        host_detail::parallel_range(ctx.pool(), outer * channels, host_detail::plane_grain(inner),
                                    [&](std::size_t lo, std::size_t hi) {
                                        for (std::size_t oc = lo; oc < hi; ++oc) {
                                            const V vb(b[oc % channels]);
                                            host_detail::map1(y + oc * inner, y + oc * inner, 0, inner,
                                                              [&](V v) { return v + vb; });
                                        }
                                    });
    }
    /// db[c] = sum over outer and inner of dy (overwrites db).
    template <class T>
    static void channel_bias_grad(const context& ctx, const T* dy, T* db, std::size_t outer, std::size_t channels,
                                  std::size_t inner) {
        if (inner == 1) {  // column sums of an outer x channels matrix, split by channel blocks
            constexpr std::size_t W = host_detail::vec_size<T>;
            const std::size_t blocks = (channels + W - 1) / W;
            host_detail::parallel_range(ctx.pool(), blocks, host_detail::plane_grain(outer * W),
                                        [&](std::size_t lo, std::size_t hi) {
                                            host_detail::column_sums(dy, db, outer, channels, lo * W,
                                                                     std::min(channels, hi * W));
                                        });
            return;
        }
        host_detail::parallel_range(ctx.pool(), channels, host_detail::plane_grain(outer * inner),
                                    [&](std::size_t lo, std::size_t hi) {
                                        for (std::size_t c = lo; c < hi; ++c) {
                                            T s = 0;
                                            for (std::size_t o = 0; o < outer; ++o)
                                                s += host_detail::contiguous_sum(dy + (o * channels + c) * inner, inner);
                                            db[c] = s;
                                        }
                                    });
    }

    // ---- GEMM: C = alpha * op(A) * op(B) + beta * C, row-major ------------------------------
    template <class T>
    static void gemm(const context& ctx, transpose ta, transpose tb, std::size_t M, std::size_t N, std::size_t K, T alpha,
                     const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
        host_detail::gemm_parallel(&ctx.pool(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
    /// GEMM with a fused epilogue: C = act(alpha * op(A) * op(B) + beta * C + bias), bias
    /// (N entries, one per column of C) may be null. Applied while each C tile is in registers.
    template <class T>
    static void gemm_bias_act(const context& ctx, transpose ta, transpose tb, std::size_t M, std::size_t N,
                              std::size_t K, T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta,
                              T* C, std::size_t ldc, const T* bias, activation act) {
        host_detail::gemm_parallel(&ctx.pool(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                                   host_detail::gemm_epilogue<T>{bias, act});
    }

    // ---- activations -------------------------------------------------------------------------
    template <class T>
    static void activation_forward(const context& ctx, activation a, const T* x, T* y, std::size_t n) {
        host_detail::parallel_range(ctx.pool(), n, host_detail::activation_grain(a.kind),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::activation_forward_range(a, x, y, lo, hi);
                                    });
    }
    /// dx = f'(x) * dy, with y = f(x) available (sigmoid and tanh use it).
    template <class T>
    static void activation_backward(const context& ctx, activation a, const T* x, const T* y, const T* dy, T* dx,
                                    std::size_t n) {
        host_detail::parallel_range(ctx.pool(), n, host_detail::activation_grain(a.kind),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::activation_backward_range(a, x, y, dy, dx, lo, hi);
                                    });
    }

    // ---- softmax over the last dimension of a rows x cols matrix -------------------------------
    template <class T>
    static void softmax_forward(const context& ctx, const T* x, T* y, std::size_t rows, std::size_t cols) {
        host_detail::parallel_range(ctx.pool(), rows, row_grain(cols), [&](std::size_t lo, std::size_t hi) {
            host_detail::softmax_rows(x, y, cols, lo, hi);
        });
    }
    template <class T>
    static void softmax_backward(const context& ctx, const T* y, const T* dy, T* dx, std::size_t rows, std::size_t cols) {
        host_detail::parallel_range(ctx.pool(), rows, host_detail::plane_grain(cols),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::softmax_backward_rows(y, dy, dx, cols, lo, hi);
                                    });
    }

    // ---- losses --------------------------------------------------------------------------------
    template <class T>
    static void softmax_cross_entropy(const context& ctx, const T* logits, const T* labels, T* grad, T* loss_rows,
                                      std::size_t rows, std::size_t cols, T smoothing, T grad_scale) {
        host_detail::parallel_range(ctx.pool(), rows, row_grain(cols), [&](std::size_t lo, std::size_t hi) {
            host_detail::softmax_cross_entropy_rows(logits, labels, grad, loss_rows, cols, smoothing, grad_scale, lo, hi);
        });
    }
    template <class T>
    static void mse(const context& ctx, const T* pred, const T* target, T* grad, T* loss_rows, std::size_t rows,
                    std::size_t cols, T grad_scale) {
        host_detail::parallel_range(ctx.pool(), rows, host_detail::plane_grain(cols), [&](std::size_t lo, std::size_t hi) {
            host_detail::regression_loss_rows<false>(pred, target, grad, loss_rows, cols, grad_scale, lo, hi);
        });
    }
    template <class T>
    static void mae(const context& ctx, const T* pred, const T* target, T* grad, T* loss_rows, std::size_t rows,
                    std::size_t cols, T grad_scale) {
        host_detail::parallel_range(ctx.pool(), rows, host_detail::plane_grain(cols), [&](std::size_t lo, std::size_t hi) {
            host_detail::regression_loss_rows<true>(pred, target, grad, loss_rows, cols, grad_scale, lo, hi);
        });
    }

    // ---- pooling (NCHW) -------------------------------------------------------------------------
    /// argmax may be null (inference): then only y is written.
    template <class T>
    static void max_pool_forward(const context& ctx, const pool_geometry& g, const T* x, T* y, std::int32_t* argmax) {
        host_detail::parallel_range(ctx.pool(), g.n * g.c, host_detail::plane_grain(g.h * g.w),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::max_pool_planes(g, x, y, argmax, lo, hi);
                                    });
    }
    template <class T>
    static void max_pool_backward(const context& ctx, const pool_geometry& g, const T* dy, const std::int32_t* argmax,
                                  T* dx) {
        host_detail::parallel_range(ctx.pool(), g.n * g.c, host_detail::plane_grain(g.h * g.w),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::max_pool_backward_planes(g, dy, argmax, dx, lo, hi);
                                    });
    }
    template <class T>
    static void avg_pool_forward(const context& ctx, const pool_geometry& g, const T* x, T* y) {
        host_detail::parallel_range(ctx.pool(), g.n * g.c, host_detail::plane_grain(g.h * g.w),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::avg_pool_planes(g, x, y, lo, hi);
                                    });
    }
    template <class T>
    static void avg_pool_backward(const context& ctx, const pool_geometry& g, const T* dy, T* dx) {
        host_detail::parallel_range(ctx.pool(), g.n * g.c, host_detail::plane_grain(g.h * g.w),
                                    [&](std::size_t lo, std::size_t hi) {
                                        host_detail::avg_pool_backward_planes(g, dy, dx, lo, hi);
                                    });
    }

    // ---- convolution (conv.hpp: implicit GEMM forward, im2col + GEMM backward; grouped,
    // dilated and depthwise convolutions on their own paths) -----------------------------------
    template <class T>
    static std::size_t conv2d_workspace(const conv_geometry& g) {
        return host_detail::conv2d_workspace_size(g);
    }
    template <class T>
    static void conv2d_forward(const context& ctx, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                               T* ws) {
        host_detail::conv2d_forward(ctx.pool(), g, x, w, bias, y, ws);
    }
    /// dx = conv2d^T(dy, w) (overwrites dx).
    template <class T>
    static void conv2d_backward_data(const context& ctx, const conv_geometry& g, const T* dy, const T* w, T* dx, T* ws) {
        host_detail::conv2d_backward_data(ctx.pool(), g, dy, w, dx, ws);
    }
    /// dw = sum over the batch of x (*) dy (overwrites dw); db = sum of dy over n, p, q when
    /// not null (overwrites db).
    template <class T>
    static void conv2d_backward_weights(const context& ctx, const conv_geometry& g, const T* x, const T* dy, T* dw, T* db,
                                        T* ws) {
        host_detail::conv2d_backward_weights(ctx.pool(), g, x, dy, dw, db, ws);
    }
    /// The same kernels with the layer's compile-time shape (geometry.hpp's conv_shape) as a
    /// trailing tag: the path is chosen per layer at compile time.
    template <class T, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
              std::size_t St, std::size_t Pd, std::size_t Dl, std::size_t Gr>
    static void conv2d_forward(const context& ctx, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                               T* ws, conv_shape<C, H, W, K, R, S, St, Pd, Dl, Gr> shape) {
        host_detail::conv2d_forward(ctx.pool(), g, x, w, bias, y, ws, shape);
    }
    template <class T, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
              std::size_t St, std::size_t Pd, std::size_t Dl, std::size_t Gr>
    static void conv2d_backward_data(const context& ctx, const conv_geometry& g, const T* dy, const T* w, T* dx, T* ws,
                                     conv_shape<C, H, W, K, R, S, St, Pd, Dl, Gr>) {
        host_detail::conv2d_backward_data(ctx.pool(), g, dy, w, dx, ws);
    }
    template <class T, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
              std::size_t St, std::size_t Pd, std::size_t Dl, std::size_t Gr>
    static void conv2d_backward_weights(const context& ctx, const conv_geometry& g, const T* x, const T* dy, T* dw, T* db,
                                        T* ws, conv_shape<C, H, W, K, R, S, St, Pd, Dl, Gr>) {
        host_detail::conv2d_backward_weights(ctx.pool(), g, x, dy, dw, db, ws);
    }

    // ---- dropout: element i is kept iff stream.uniform(i) >= p; mask holds 0 or 1/(1-p) ------
    template <class T>
    static void dropout_forward(const context& ctx, const T* x, T* y, T* mask, std::size_t n, T p, random_stream stream) {
        const T keep_scale = T(1) / (T(1) - p);
        host_detail::parallel_range(ctx.pool(), n, host_detail::transcendental_grain, [&](std::size_t lo, std::size_t hi) {
            for (std::size_t i = lo; i < hi; ++i) mask[i] = static_cast<T>(stream.uniform(i)) >= p ? keep_scale : T(0);
            host_detail::map2(x, mask, y, lo, hi, [](host_detail::vec<T> u, host_detail::vec<T> v) { return u * v; });
        });
    }

    // ---- optimizer updates ---------------------------------------------------------------
    template <class T>
    static void sgd_update(const context& ctx, T* w, const T* g, T* velocity, std::size_t n, const sgd_step<T>& s) {
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            host_detail::sgd_range(w, g, velocity, s, lo, hi);
        });
    }
    template <class T>
    static void adam_update(const context& ctx, T* w, const T* g, T* m, T* v, std::size_t n, const adam_step<T>& s) {
        host_detail::parallel_range(ctx.pool(), n, host_detail::elementwise_grain, [&](std::size_t lo, std::size_t hi) {
            host_detail::adam_range(w, g, m, v, s, lo, hi);
        });
    }

private:
    // Rows of softmax-like work: exp dominates, so fewer elements justify a thread.
    static std::size_t row_grain(std::size_t cols) {
        return std::max<std::size_t>(1, host_detail::transcendental_grain / std::max<std::size_t>(1, cols));
    }
};

}  // namespace lamina

// Kernel sets the host backend specialises (after `host` is complete).
#include "batch_norm.hpp"
