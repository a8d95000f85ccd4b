// lamina: the reference backend. Deliberately naive loops, single-threaded, written for
// obviousness rather than speed: it is the oracle every other backend is tested against,
// and the executable specification of the backend kernel interface.
//
// A backend is a policy type providing: a `context` (execution resources), a `buffer<T>`
// (owning device memory), upload/download at the edges, and the kernels below. Layer code
// is written once against this interface; pointers handed to kernels are device pointers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <limits>

#include "../../core/activation.hpp"
#include "../../core/aligned_buffer.hpp"
#include "../../core/geometry.hpp"
#include "../../core/philox.hpp"
#include "../../core/thread_pool.hpp"

namespace lamina {

struct reference {
    static constexpr const char* name = "reference";

    /// Execution resources. The reference backend is serial; `threads` is accepted and ignored
    /// so code can construct any backend's context the same way.
    class context {
    public:
        context() = default;
        explicit context(threads) {}
        unsigned thread_count() const noexcept { return 1; }
    };

    template <class T>
    using buffer = aligned_buffer<T>;

    /// Host memory: pointers may be dereferenced on the host (used only by edge code).
    static constexpr bool host_accessible = true;

    // ---- memory at the edges -------------------------------------------------------------
    template <class T>
    static void upload(const context&, T* dst, const T* host_src, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) dst[i] = host_src[i];
    }
    template <class T>
    static void download(const context&, T* host_dst, const T* src, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) host_dst[i] = src[i];
    }

    // ---- elementwise and reductions --------------------------------------------------------
    template <class T>
    static void fill(const context&, T* x, std::size_t n, T v) {
        for (std::size_t i = 0; i < n; ++i) x[i] = v;
    }
    template <class T>
    static void copy(const context&, T* dst, const T* src, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) dst[i] = src[i];
    }
    /// y += a * x
    template <class T>
    static void axpy(const context&, std::size_t n, T a, const T* x, T* y) {
        for (std::size_t i = 0; i < n; ++i) y[i] += a * x[i];
    }
    template <class T>
    static void scale(const context&, std::size_t n, T a, T* x) {
        for (std::size_t i = 0; i < n; ++i) x[i] *= a;
    }
    /// y = a * b elementwise
    template <class T>
    static void multiply(const context&, std::size_t n, const T* a, const T* b, T* y) {
        for (std::size_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
    }
    /// Sum of x, returned to the host. Accumulates in double.
    template <class T>
    static T sum(const context&, const T* x, std::size_t n) {
        double s = 0;
        for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(x[i]);
        return static_cast<T>(s);
    }
    /// Index of the largest entry of each row (first one on ties).
    template <class T>
    static void argmax_rows(const context&, const T* x, std::int32_t* idx, std::size_t rows, std::size_t cols) {
        for (std::size_t r = 0; r < rows; ++r) {
            std::size_t best = 0;
            for (std::size_t c = 1; c < cols; ++c)
                if (x[r * cols + c] > x[r * cols + best]) best = c;
            idx[r] = static_cast<std::int32_t>(best);
        }
    }
    /// Calls f(i) for i in [0, n): the hook for user-written layers (any order, any thread).
    template <class F>
    static void for_each_index(const context&, std::size_t n, F&& f) {
        for (std::size_t i = 0; i < n; ++i) f(i);
    }
    /// The same with a per-item cost hint (ignored: the reference is serial).
    template <class F>
    static void for_each_index(const context&, std::size_t n, F&& f, std::size_t) {
        for (std::size_t i = 0; i < n; ++i) f(i);
    }

    // ---- bias over channels: y is [outer][channels][inner] ---------------------------------
    template <class T>
    static void add_channel_bias(const context&, T* y, const T* b, std::size_t outer, std::size_t channels,
                                 std::size_t inner) {
        for (std::size_t o = 0; o < outer; ++o)
            for (std::size_t c = 0; c < channels; ++c)
                for (std::size_t i = 0; i < inner; ++i) y[(o * channels + c) * inner + i] += b[c];
    }
    /// db[c] = sum over outer and inner of dy (overwrites db).
    template <class T>
    static void channel_bias_grad(const context&, const T* dy, T* db, std::size_t outer, std::size_t channels,
                                  std::size_t inner) {
        for (std::size_t c = 0; c < channels; ++c) {
            T s = 0;
            for (std::size_t o = 0; o < outer; ++o)
                for (std::size_t i = 0; i < inner; ++i) s += dy[(o * channels + c) * inner + i];
            db[c] = s;
        }
    }

    // ---- GEMM: C = alpha * op(A) * op(B) + beta * C, row-major ------------------------------
    // op(A) is M x K: A is M x K (lda >= K) or, transposed, K x M (lda >= M). Likewise B.
    // beta == 0 overwrites C without reading it (C may hold NaN).
    template <class T>
    static void gemm(const context&, transpose ta, transpose tb, std::size_t M, std::size_t N, std::size_t K, T alpha,
                     const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
        for (std::size_t i = 0; i < M; ++i)
            for (std::size_t j = 0; j < N; ++j) {
                T s = 0;
                for (std::size_t p = 0; p < K; ++p) {
                    T a = ta == transpose::no ? A[i * lda + p] : A[p * lda + i];
                    T b = tb == transpose::no ? B[p * ldb + j] : B[j * ldb + p];
                    s += a * b;
                }
                C[i * ldc + j] = alpha * s + (beta == T(0) ? T(0) : beta * C[i * ldc + j]);
            }
    }
    /// GEMM with a fused epilogue: C = act(alpha * op(A) * op(B) + beta * C + bias), where
    /// bias (N entries, one per column of C) may be null. Naive: gemm, then the epilogue.
    template <class T>
    static void gemm_bias_act(const context& ctx, transpose ta, transpose tb, std::size_t M, std::size_t N,
                              std::size_t K, T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta,
                              T* C, std::size_t ldc, const T* bias, activation act) {
        gemm(ctx, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        for (std::size_t i = 0; i < M; ++i)
            for (std::size_t j = 0; j < N; ++j) {
                T& c = C[i * ldc + j];
                c = activation_value<T>(act.kind, static_cast<T>(act.alpha), bias ? c + bias[j] : c);
            }
    }

    // ---- activations -------------------------------------------------------------------------
    template <class T>
    static void activation_forward(const context&, activation a, const T* x, T* y, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) y[i] = activation_value<T>(a.kind, static_cast<T>(a.alpha), x[i]);
    }
    /// dx = f'(x) * dy, with y = f(x) available (sigmoid and tanh use it).
    template <class T>
    static void activation_backward(const context&, activation a, const T* x, const T* y, const T* dy, T* dx,
                                    std::size_t n) {
        for (std::size_t i = 0; i < n; ++i)
            dx[i] = activation_gradient<T>(a.kind, static_cast<T>(a.alpha), x[i], y[i], dy[i]);
    }

    // ---- softmax over the last dimension of a rows x cols matrix -------------------------------
    template <class T>
    static void softmax_forward(const context&, const T* x, T* y, std::size_t rows, std::size_t cols) {
        for (std::size_t r = 0; r < rows; ++r) {
            const T* xr = x + r * cols;
            T* yr = y + r * cols;
            T m = xr[0];
            for (std::size_t c = 1; c < cols; ++c) m = std::max(m, xr[c]);
            T s = 0;
            for (std::size_t c = 0; c < cols; ++c) s += (yr[c] = std::exp(xr[c] - m));
            for (std::size_t c = 0; c < cols; ++c) yr[c] /= s;
        }
    }
    /// dx_i = y_i * (dy_i - sum_j dy_j y_j)
    template <class T>
    static void softmax_backward(const context&, const T* y, const T* dy, T* dx, std::size_t rows, std::size_t cols) {
        for (std::size_t r = 0; r < rows; ++r) {
            T dot = 0;
            for (std::size_t c = 0; c < cols; ++c) dot += dy[r * cols + c] * y[r * cols + c];
            for (std::size_t c = 0; c < cols; ++c) dx[r * cols + c] = y[r * cols + c] * (dy[r * cols + c] - dot);
        }
    }

    // ---- losses: per-row loss into loss_rows, gradient w.r.t. the prediction times grad_scale ---
    /// Softmax cross-entropy on logits. labels[r] holds the class index (exact in float up to
    /// 2^24). With label smoothing e the target is (1-e) one-hot + e/cols uniform.
    template <class T>
    static void softmax_cross_entropy(const context&, const T* logits, const T* labels, T* grad, T* loss_rows,
                                      std::size_t rows, std::size_t cols, T smoothing, T grad_scale) {
        for (std::size_t r = 0; r < rows; ++r) {
            const T* x = logits + r * cols;
            T m = x[0];
            for (std::size_t c = 1; c < cols; ++c) m = std::max(m, x[c]);
            T s = 0;
            for (std::size_t c = 0; c < cols; ++c) s += std::exp(x[c] - m);
            T log_s = std::log(s) + m;
            auto label = static_cast<std::size_t>(labels[r]);
            T loss = 0;
            for (std::size_t c = 0; c < cols; ++c) {
                T target = (c == label ? T(1) - smoothing : T(0)) + smoothing / static_cast<T>(cols);
                T logp = x[c] - log_s;
                loss -= target * logp;
                grad[r * cols + c] = (std::exp(logp) - target) * grad_scale;
            }
            loss_rows[r] = loss;
        }
    }
    /// Mean squared error per row: mean_c (p - t)^2; gradient 2 (p - t) / cols * grad_scale.
    template <class T>
    static void mse(const context&, const T* pred, const T* target, T* grad, T* loss_rows, std::size_t rows,
                    std::size_t cols, T grad_scale) {
        for (std::size_t r = 0; r < rows; ++r) {
            T loss = 0;
            for (std::size_t c = 0; c < cols; ++c) {
                T d = pred[r * cols + c] - target[r * cols + c];
                loss += d * d;
                grad[r * cols + c] = T(2) * d / static_cast<T>(cols) * grad_scale;
            }
            loss_rows[r] = loss / static_cast<T>(cols);
        }
    }
    /// Mean absolute error per row: mean_c |p - t|; gradient sign(p - t) / cols * grad_scale
    /// (0 at p == t, the subgradient PyTorch uses).
    template <class T>
    static void mae(const context&, const T* pred, const T* target, T* grad, T* loss_rows, std::size_t rows,
                    std::size_t cols, T grad_scale) {
        for (std::size_t r = 0; r < rows; ++r) {
            T loss = 0;
            for (std::size_t c = 0; c < cols; ++c) {
                T d = pred[r * cols + c] - target[r * cols + c];
                loss += std::abs(d);
                T sign = d > T(0) ? T(1) : (d < T(0) ? T(-1) : d * T(0));  // 0 at d == 0, NaN for NaN
                grad[r * cols + c] = sign / static_cast<T>(cols) * grad_scale;
            }
            loss_rows[r] = loss / static_cast<T>(cols);
        }
    }

    // ---- pooling (NCHW); padded cells never win a max and count as zero in an average; a NaN in
    // a window wins the max (the first NaN, then nothing replaces it), as in PyTorch ---------
    /// argmax may be null (inference): then only y is written.
    template <class T>
    static void max_pool_forward(const context&, const pool_geometry& g, const T* x, T* y, std::int32_t* argmax) {
        for (std::size_t nc = 0; nc < g.n * g.c; ++nc)
            for (std::size_t p = 0; p < g.p; ++p)
                for (std::size_t q = 0; q < g.q; ++q) {
                    T best = -std::numeric_limits<T>::infinity();
                    std::int32_t where = -1;
                    for (std::size_t i = 0; i < g.kh; ++i)
                        for (std::size_t j = 0; j < g.kw; ++j) {
                            auto hh = static_cast<std::ptrdiff_t>(p * g.stride_h + i) - static_cast<std::ptrdiff_t>(g.pad_h);
                            auto ww = static_cast<std::ptrdiff_t>(q * g.stride_w + j) - static_cast<std::ptrdiff_t>(g.pad_w);
                            if (hh < 0 || ww < 0 || hh >= static_cast<std::ptrdiff_t>(g.h) || ww >= static_cast<std::ptrdiff_t>(g.w))
                                continue;
                            std::size_t off = static_cast<std::size_t>(hh) * g.w + static_cast<std::size_t>(ww);
                            T v = x[nc * g.h * g.w + off];
                            if (where < 0 || v > best || (v != v && best == best)) {  // a NaN wins, as in PyTorch
                                best = v;
                                where = static_cast<std::int32_t>(off);
                            }
                        }
                    y[(nc * g.p + p) * g.q + q] = best;
                    if (argmax) argmax[(nc * g.p + p) * g.q + q] = where;
                }
    }
    /// dx = 0, then each dy is added to the input cell that won the max.
    template <class T>
    static void max_pool_backward(const context&, const pool_geometry& g, const T* dy, const std::int32_t* argmax, T* dx) {
        for (std::size_t i = 0; i < g.input_size(); ++i) dx[i] = 0;
        for (std::size_t nc = 0; nc < g.n * g.c; ++nc)
            for (std::size_t o = 0; o < g.p * g.q; ++o) {
                std::int32_t where = argmax[nc * g.p * g.q + o];
                if (where >= 0) dx[nc * g.h * g.w + static_cast<std::size_t>(where)] += dy[nc * g.p * g.q + o];
            }
    }
    /// Average over the window including padding (count_include_pad, PyTorch's default).
    template <class T>
    static void avg_pool_forward(const context&, const pool_geometry& g, const T* x, T* y) {
        T inv = T(1) / static_cast<T>(g.kh * g.kw);
        for (std::size_t nc = 0; nc < g.n * g.c; ++nc)
            for (std::size_t p = 0; p < g.p; ++p)
                for (std::size_t q = 0; q < g.q; ++q) {
                    T s = 0;
                    for (std::size_t i = 0; i < g.kh; ++i)
                        for (std::size_t j = 0; j < g.kw; ++j) {
                            auto hh = static_cast<std::ptrdiff_t>(p * g.stride_h + i) - static_cast<std::ptrdiff_t>(g.pad_h);
                            auto ww = static_cast<std::ptrdiff_t>(q * g.stride_w + j) - static_cast<std::ptrdiff_t>(g.pad_w);
                            if (hh < 0 || ww < 0 || hh >= static_cast<std::ptrdiff_t>(g.h) || ww >= static_cast<std::ptrdiff_t>(g.w))
                                continue;
                            s += x[nc * g.h * g.w + static_cast<std::size_t>(hh) * g.w + static_cast<std::size_t>(ww)];
                        }
                    y[(nc * g.p + p) * g.q + q] = s * inv;
                }
    }
    template <class T>
    static void avg_pool_backward(const context&, const pool_geometry& g, const T* dy, T* dx) {
        T inv = T(1) / static_cast<T>(g.kh * g.kw);
        for (std::size_t i = 0; i < g.input_size(); ++i) dx[i] = 0;
        for (std::size_t nc = 0; nc < g.n * g.c; ++nc)
            for (std::size_t p = 0; p < g.p; ++p)
                for (std::size_t q = 0; q < g.q; ++q)
                    for (std::size_t i = 0; i < g.kh; ++i)
                        for (std::size_t j = 0; j < g.kw; ++j) {
                            auto hh = static_cast<std::ptrdiff_t>(p * g.stride_h + i) - static_cast<std::ptrdiff_t>(g.pad_h);
                            auto ww = static_cast<std::ptrdiff_t>(q * g.stride_w + j) - static_cast<std::ptrdiff_t>(g.pad_w);
                            if (hh < 0 || ww < 0 || hh >= static_cast<std::ptrdiff_t>(g.h) || ww >= static_cast<std::ptrdiff_t>(g.w))
                                continue;
                            dx[nc * g.h * g.w + static_cast<std::size_t>(hh) * g.w + static_cast<std::size_t>(ww)] +=
                                dy[(nc * g.p + p) * g.q + q] * inv;
                        }
    }

    // ---- convolution: direct loops, no workspace ---------------------------------------------
    // Groups G split the C channels and K filters into G parts: filter k belongs to group
    // gi = k / (K/G) and sees channels gi*(C/G) + c for c < C/G; w is [K][C/G][R][S].
    // Taps are dilation apart: tap (r, s) of output (p, q) reads input row p*sh + r*dh - ph and
    // column q*sw + s*dw - pw (zero outside the image).
    template <class T>
    static std::size_t conv2d_workspace(const conv_geometry&) {
        return 0;
    }
    /// Helper of the conv kernels: the offset in x of the cell that tap (r, t) of output (p, q)
    /// reads in channel c of image n; false when the cell lies in the zero padding.
    static bool conv_input_cell(const conv_geometry& g, std::size_t n, std::size_t c, std::size_t p, std::size_t q,
                                std::size_t r, std::size_t t, std::size_t& off) {
        auto hh = static_cast<std::ptrdiff_t>(p * g.stride_h + r * g.dilation_h) - static_cast<std::ptrdiff_t>(g.pad_h);
        auto ww = static_cast<std::ptrdiff_t>(q * g.stride_w + t * g.dilation_w) - static_cast<std::ptrdiff_t>(g.pad_w);
        if (hh < 0 || ww < 0 || hh >= static_cast<std::ptrdiff_t>(g.h) || ww >= static_cast<std::ptrdiff_t>(g.w))
            return false;
        off = ((n * g.c + c) * g.h + static_cast<std::size_t>(hh)) * g.w + static_cast<std::size_t>(ww);
        return true;
    }
    /// y[n][k][p][q] = bias[k] + sum_{c<C/G,r,s} x[n][gi*C/G + c][p*sh + r*dh - ph][q*sw + s*dw - pw] * w[k][c][r][s]
    template <class T>
    static void conv2d_forward(const context&, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y, T*) {
        const std::size_t cg = g.group_channels(), kg = g.group_filters();
        for (std::size_t n = 0; n < g.n; ++n)
            for (std::size_t k = 0; k < g.k; ++k)
                for (std::size_t p = 0; p < g.p; ++p)
                    for (std::size_t q = 0; q < g.q; ++q) {
                        T s = bias ? bias[k] : T(0);
                        for (std::size_t c = 0; c < cg; ++c)
                            for (std::size_t r = 0; r < g.r; ++r)
                                for (std::size_t t = 0; t < g.s; ++t) {
                                    std::size_t off;
                                    if (!conv_input_cell(g, n, k / kg * cg + c, p, q, r, t, off)) continue;
                                    s += x[off] * w[((k * cg + c) * g.r + r) * g.s + t];
                                }
                        y[((n * g.k + k) * g.p + p) * g.q + q] = s;
                    }
    }
    /// dx = conv2d^T(dy, w) (overwrites dx).
    template <class T>
    static void conv2d_backward_data(const context&, const conv_geometry& g, const T* dy, const T* w, T* dx, T*) {
        const std::size_t cg = g.group_channels(), kg = g.group_filters();
        for (std::size_t i = 0; i < g.input_size(); ++i) dx[i] = 0;
        for (std::size_t n = 0; n < g.n; ++n)
            for (std::size_t k = 0; k < g.k; ++k)
                for (std::size_t p = 0; p < g.p; ++p)
                    for (std::size_t q = 0; q < g.q; ++q) {
                        T d = dy[((n * g.k + k) * g.p + p) * g.q + q];
                        for (std::size_t c = 0; c < cg; ++c)
                            for (std::size_t r = 0; r < g.r; ++r)
                                for (std::size_t t = 0; t < g.s; ++t) {
                                    std::size_t off;
                                    if (!conv_input_cell(g, n, k / kg * cg + c, p, q, r, t, off)) continue;
                                    dx[off] += d * w[((k * cg + c) * g.r + r) * g.s + t];
                                }
                    }
    }
    /// dw = sum over the batch of x (*) dy (overwrites dw); db[k] = sum of dy over n, p, q
    /// when db is not null (overwrites db).
    template <class T>
    static void conv2d_backward_weights(const context&, const conv_geometry& g, const T* x, const T* dy, T* dw, T* db, T*) {
        const std::size_t cg = g.group_channels(), kg = g.group_filters();
        for (std::size_t i = 0; i < g.weight_size(); ++i) dw[i] = 0;
        if (db)
            for (std::size_t k = 0; k < g.k; ++k) db[k] = 0;
        for (std::size_t n = 0; n < g.n; ++n)
            for (std::size_t k = 0; k < g.k; ++k)
                for (std::size_t p = 0; p < g.p; ++p)
                    for (std::size_t q = 0; q < g.q; ++q) {
                        T d = dy[((n * g.k + k) * g.p + p) * g.q + q];
                        if (db) db[k] += d;
                        for (std::size_t c = 0; c < cg; ++c)
                            for (std::size_t r = 0; r < g.r; ++r)
                                for (std::size_t t = 0; t < g.s; ++t) {
                                    std::size_t off;
                                    if (!conv_input_cell(g, n, k / kg * cg + c, p, q, r, t, off)) continue;
                                    dw[((k * cg + c) * g.r + r) * g.s + t] += d * x[off];
                                }
                    }
    }

    /// The conv kernels may also be called with the layer's compile-time shape as a trailing
    /// tag (geometry.hpp's conv_shape) so that a backend can specialise per layer; the
    /// reference ignores it.
    template <class T, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
              std::size_t St, std::size_t Pd, std::size_t Dl, std::size_t Gr>
    static void conv2d_forward(const context& ctx, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                               T* ws, conv_shape<C, H, W, K, R, S, St, Pd, Dl, Gr>) {
        conv2d_forward(ctx, g, x, w, bias, y, ws);
    }
    template <class T, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
              std::size_t St, std::size_t Pd, std::size_t Dl, std::size_t Gr>
    static void conv2d_backward_data(const context& ctx, const conv_geometry& g, const T* dy, const T* w, T* dx, T* ws,
                                     conv_shape<C, H, W, K, R, S, St, Pd, Dl, Gr>) {
        conv2d_backward_data(ctx, g, dy, w, dx, ws);
    }
    template <class T, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
              std::size_t St, std::size_t Pd, std::size_t Dl, std::size_t Gr>
    static void conv2d_backward_weights(const context& ctx, const conv_geometry& g, const T* x, const T* dy, T* dw, T* db,
                                        T* ws, conv_shape<C, H, W, K, R, S, St, Pd, Dl, Gr>) {
        conv2d_backward_weights(ctx, g, x, dy, dw, db, ws);
    }

    // ---- dropout: element i is kept iff stream.uniform(i) >= p; mask holds 0 or 1/(1-p) ------
    template <class T>
    static void dropout_forward(const context&, const T* x, T* y, T* mask, std::size_t n, T p, random_stream stream) {
        T keep_scale = T(1) / (T(1) - p);
        for (std::size_t i = 0; i < n; ++i) {
            mask[i] = static_cast<T>(stream.uniform(i)) >= p ? keep_scale : T(0);
            y[i] = x[i] * mask[i];
        }
    }

    // ---- optimizer updates ---------------------------------------------------------------
    template <class T>
    static void sgd_update(const context&, T* w, const T* g, T* velocity, std::size_t n, const sgd_step<T>& s) {
        for (std::size_t i = 0; i < n; ++i) {
            T grad = g[i] + s.weight_decay * w[i];
            if (s.momentum != T(0)) {
                velocity[i] = s.momentum * velocity[i] + grad;
                grad = s.nesterov ? grad + s.momentum * velocity[i] : velocity[i];
            }
            w[i] -= s.lr * grad;
        }
    }
    template <class T>
    static void adam_update(const context&, T* w, const T* g, T* m, T* v, std::size_t n, const adam_step<T>& s) {
        for (std::size_t i = 0; i < n; ++i) {
            T grad = g[i];
            if (s.decoupled)
                w[i] -= s.lr * s.weight_decay * w[i];
            else
                grad += s.weight_decay * w[i];
            m[i] = s.beta1 * m[i] + (T(1) - s.beta1) * grad;
            v[i] = s.beta2 * v[i] + (T(1) - s.beta2) * grad * grad;
            T mhat = m[i] / s.bias_correction1;
            T vhat = v[i] / s.bias_correction2;
            w[i] -= s.lr * mhat / (std::sqrt(vhat) + s.eps);
        }
    }
};

}  // namespace lamina
