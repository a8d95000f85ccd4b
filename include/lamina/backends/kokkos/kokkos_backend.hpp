// lamina: the Kokkos backend. Buffers are Kokkos::Views in MemorySpace and every kernel is a
// Kokkos parallel pattern on ExecutionSpace (RangePolicy, MDRangePolicy, TeamPolicy with
// scratch tiles for the GEMM), so one model type runs on Serial, OpenMP, Threads, CUDA, HIP
// or SYCL builds of Kokkos:
//
//   #include <lamina/kokkos.hpp>   // Kokkos first, then lamina
//   using backend = lamina::kokkos_backend<Kokkos::OpenMP>;
//   Kokkos::ScopeGuard guard(argc, argv);           // the application initialises Kokkos
//   { lenet5::model<backend> net{lamina::seed{1}}; ... }
//
// The semantics of every kernel are those of the reference backend (the executable spec).
// This header includes none of the host backend's headers and never runs host code on View
// memory: kernels run inside Kokkos::parallel_*, and upload/download are Kokkos::deep_copy
// between unmanaged host views and unmanaged views of MemorySpace.
//
// Memory is always treated as device memory (host_accessible == false), also for host
// spaces: the edges always copy, so the code path tested on Serial/OpenMP is the one a GPU
// runs. Kernels are device-clean: no virtual calls, exceptions, host-only calls or std::
// containers inside them.
#pragma once

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

// Kokkos_Core.hpp is included above, so config.hpp defines LAMINA_HOST_DEVICE as
// KOKKOS_INLINE_FUNCTION (unless some lamina header was included before this one).
#include "../../core/config.hpp"
#if !defined(LAMINA_HOST_DEVICE_IS_KOKKOS) &&                                                             \
    (defined(KOKKOS_ENABLE_CUDA) || defined(KOKKOS_ENABLE_HIP) || defined(KOKKOS_ENABLE_SYCL) ||           \
     defined(KOKKOS_ENABLE_OPENMPTARGET))
#error "lamina: include <lamina/backends/kokkos/kokkos_backend.hpp> (or Kokkos_Core.hpp) before any other lamina header, so LAMINA_HOST_DEVICE marks device functions"
#endif

#include "../../core/activation.hpp"
#include "../../core/geometry.hpp"
#include "../../core/philox.hpp"
#include "../../core/thread_pool.hpp"  // lamina::threads (the context's constructor argument)
#include "kokkos_blas_gemm.hpp"            // KokkosBlas::gemm when LAMINA_WITH_KOKKOSKERNELS
#include "host_space_conv.hpp"             // packed GEMM and implicit-GEMM conv for host execution spaces
#include "host_space_elementwise.hpp"      // activations, channel bias gradient for host execution spaces
#include "host_space_pool.hpp"             // max pooling for host execution spaces

namespace lamina {

namespace kokkos_detail {

/// Largest index p in [0, P) with p * stride <= v, and smallest with p * stride + extent > v:
/// the outputs of a window operator whose window covers input coordinate v (v includes the
/// padding offset). Returns an empty range [lo, hi) when none does.
KOKKOS_INLINE_FUNCTION void covering_outputs(std::int64_t v, std::int64_t extent, std::int64_t stride,
                                             std::int64_t P, std::int64_t& lo, std::int64_t& hi) {
    // p * stride <= v  and  p * stride + extent - 1 >= v
    std::int64_t top = v >= 0 ? v / stride : -1;  // floor(v / stride) for v >= 0
    std::int64_t low_num = v - extent + 1;        // p >= ceil(low_num / stride)
    std::int64_t bottom = low_num <= 0 ? 0 : (low_num + stride - 1) / stride;
    lo = bottom;
    hi = top + 1 < P ? top + 1 : P;
    if (hi < lo) hi = lo;
}

/// Outputs p in [lo, hi) whose input coordinate p * stride + offset - pad lies in [0, extent).
KOKKOS_INLINE_FUNCTION void valid_outputs(std::int64_t offset, std::int64_t pad, std::int64_t stride,
                                          std::int64_t extent, std::int64_t P, std::int64_t& lo, std::int64_t& hi) {
    const std::int64_t first = pad - offset;  // p * stride >= first
    lo = first <= 0 ? 0 : (first + stride - 1) / stride;
    const std::int64_t last = extent - 1 + pad - offset;  // p * stride <= last
    hi = last < 0 ? 0 : last / stride + 1;
    if (hi > P) hi = P;
    if (hi < lo) hi = lo;
}

template <class T>
KOKKOS_INLINE_FUNCTION T max_of(T a, T b) {
    return a < b ? b : a;
}

}  // namespace kokkos_detail

template <class ExecutionSpace = Kokkos::DefaultExecutionSpace,
          class MemorySpace = typename ExecutionSpace::memory_space>
struct kokkos_backend {
    using execution_space = ExecutionSpace;
    using memory_space = MemorySpace;
    static_assert(Kokkos::SpaceAccessibility<ExecutionSpace, MemorySpace>::accessible,
                  "lamina::kokkos_backend: ExecutionSpace cannot access MemorySpace");

    static constexpr const char* name = "kokkos";

    /// Execution resources: the execution space instance every kernel is launched on. The
    /// thread count is Kokkos' (set when the application initialises Kokkos); `threads` is
    /// accepted so code can construct any backend's context the same way.
    class context {
    public:
        context() = default;
        explicit context(threads) {}
        explicit context(const ExecutionSpace& space) : space_(space) {}
        unsigned thread_count() const noexcept { return static_cast<unsigned>(space_.concurrency()); }
        const ExecutionSpace& space() const noexcept { return space_; }

    private:
        ExecutionSpace space_{};
    };

    /// Owning memory in MemorySpace: a Kokkos::View, zero-filled on allocation. Move-only
    /// like every lamina buffer. Must be destroyed before Kokkos::finalize().
    template <class T>
    class buffer {
    public:
        using view_type = Kokkos::View<T*, MemorySpace>;
        buffer() = default;
        explicit buffer(std::size_t n) { allocate(n); }
        buffer(const buffer&) = delete;
        buffer& operator=(const buffer&) = delete;
        buffer(buffer&& o) noexcept : view_(std::move(o.view_)) { o.view_ = view_type(); }
        buffer& operator=(buffer&& o) noexcept {
            if (this != &o) {
                view_ = std::move(o.view_);
                o.view_ = view_type();
            }
            return *this;
        }
        ~buffer() = default;

        void allocate(std::size_t n) {
            view_ = view_type();
            if (n) view_ = view_type(Kokkos::view_alloc(std::string("lamina::buffer")), n);  // zero-initialised
        }
        void release() noexcept { view_ = view_type(); }
        T* data() noexcept { return view_.data(); }
        const T* data() const noexcept { return view_.data(); }
        std::size_t size() const noexcept { return static_cast<std::size_t>(view_.extent(0)); }
        bool empty() const noexcept { return size() == 0; }
        const view_type& view() const noexcept { return view_; }

    private:
        view_type view_;
    };

    /// Kokkos memory is always handled as device memory: the model and trainer copy at the
    /// edges (upload/download) on every space, host spaces included.
    static constexpr bool host_accessible = false;

    // ---- policies -------------------------------------------------------------------------
    using index_type = std::int64_t;
    using range_policy = Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<index_type>>;
    using team_policy = Kokkos::TeamPolicy<ExecutionSpace>;
    using member_type = typename team_policy::member_type;
    template <class T>
    using scratch_view = Kokkos::View<T*, typename ExecutionSpace::scratch_memory_space,
                                      Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

    static range_policy range(const context& c, std::size_t n) {
        return range_policy(c.space(), 0, static_cast<index_type>(n));
    }

    // ---- memory at the edges -------------------------------------------------------------
    template <class T>
    static void upload(const context&, T* dst, const T* host_src, std::size_t n) {
        if (n == 0) return;
        Kokkos::View<T*, MemorySpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> d(dst, n);
        Kokkos::View<const T*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> h(host_src, n);
        Kokkos::deep_copy(d, h);  // fences: the host source may be reused on return
    }
    template <class T>
    static void download(const context&, T* host_dst, const T* src, std::size_t n) {
        if (n == 0) return;
        Kokkos::View<T*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> h(host_dst, n);
        Kokkos::View<const T*, MemorySpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> d(src, n);
        Kokkos::deep_copy(h, d);
    }

    // ---- elementwise and reductions --------------------------------------------------------
    template <class T>
    static void fill(const context& c, T* x, std::size_t n, T v) {
        Kokkos::parallel_for("lamina::fill", range(c, n), KOKKOS_LAMBDA(const index_type i) { x[i] = v; });
    }
    template <class T>
    static void copy(const context& c, T* dst, const T* src, std::size_t n) {
        if (dst == src) return;
        Kokkos::parallel_for("lamina::copy", range(c, n), KOKKOS_LAMBDA(const index_type i) { dst[i] = src[i]; });
    }
    /// y += a * x
    template <class T>
    static void axpy(const context& c, std::size_t n, T a, const T* x, T* y) {
        Kokkos::parallel_for("lamina::axpy", range(c, n), KOKKOS_LAMBDA(const index_type i) { y[i] += a * x[i]; });
    }
    template <class T>
    static void scale(const context& c, std::size_t n, T a, T* x) {
        Kokkos::parallel_for("lamina::scale", range(c, n), KOKKOS_LAMBDA(const index_type i) { x[i] *= a; });
    }
    /// y = a * b elementwise
    template <class T>
    static void multiply(const context& c, std::size_t n, const T* a, const T* b, T* y) {
        Kokkos::parallel_for("lamina::multiply", range(c, n), KOKKOS_LAMBDA(const index_type i) { y[i] = a[i] * b[i]; });
    }
    /// Sum of x, returned to the host. Accumulates in double.
    template <class T>
    static T sum(const context& c, const T* x, std::size_t n) {
        double s = 0;
        Kokkos::parallel_reduce(
            "lamina::sum", range(c, n),
            KOKKOS_LAMBDA(const index_type i, double& acc) { acc += static_cast<double>(x[i]); }, s);
        return static_cast<T>(s);
    }
    /// Index of the largest entry of each row (first one on ties).
    template <class T>
    static void argmax_rows(const context& c, const T* x, std::int32_t* idx, std::size_t rows, std::size_t cols) {
        const auto nc = static_cast<index_type>(cols);
        Kokkos::parallel_for(
            "lamina::argmax_rows", range(c, rows), KOKKOS_LAMBDA(const index_type r) {
                index_type best = 0;
                for (index_type j = 1; j < nc; ++j)
                    if (x[r * nc + j] > x[r * nc + best]) best = j;
                idx[r] = static_cast<std::int32_t>(best);
            });
    }
    /// Calls f(i) for i in [0, n) inside a Kokkos kernel: f must be a device-callable
    /// functor (KOKKOS_LAMBDA or a KOKKOS_INLINE_FUNCTION operator()) taking std::size_t.
    template <class F>
    static void for_each_index(const context& c, std::size_t n, F&& f) {
        using Fn = std::decay_t<F>;
        Fn fn(std::forward<F>(f));
        Kokkos::parallel_for(
            "lamina::for_each_index", range(c, n),
            KOKKOS_LAMBDA(const index_type i) { fn(static_cast<std::size_t>(i)); });
    }
    /// The same with a per-item cost hint (Kokkos schedules on its own).
    template <class F>
    static void for_each_index(const context& c, std::size_t n, F&& f, std::size_t) {
        for_each_index(c, n, std::forward<F>(f));
    }

    // ---- bias over channels: y is [outer][channels][inner] ---------------------------------
    template <class T>
    static void add_channel_bias(const context& c, T* y, const T* b, std::size_t outer, std::size_t channels,
                                 std::size_t inner) {
        const auto nch = static_cast<index_type>(channels), nin = static_cast<index_type>(inner);
        Kokkos::parallel_for(
            "lamina::add_channel_bias", range(c, outer * channels * inner),
            KOKKOS_LAMBDA(const index_type i) { y[i] += b[(i / nin) % nch]; });
    }
    /// db[c] = sum over outer and inner of dy (overwrites db). One team per channel.
    template <class T>
    static void channel_bias_grad(const context& c, const T* dy, T* db, std::size_t outer, std::size_t channels,
                                  std::size_t inner) {
        if constexpr (kokkos_detail::is_host_execution_space<ExecutionSpace>) {
            kokkos_detail::host_space_channel_bias_grad(c.space(), dy, db, outer, channels, inner);
            return;
        }
        const auto nch = static_cast<index_type>(channels), nin = static_cast<index_type>(inner),
                   nout = static_cast<index_type>(outer);
        Kokkos::parallel_for(
            "lamina::channel_bias_grad", team_policy(c.space(), static_cast<int>(channels), Kokkos::AUTO),
            KOKKOS_LAMBDA(const member_type& team) {
                const index_type ch = team.league_rank();
                T s = 0;
                Kokkos::parallel_reduce(
                    Kokkos::TeamThreadRange(team, nout * nin),
                    [&](const index_type e, T& acc) {
                        const index_type o = e / nin, i = e % nin;
                        acc += dy[(o * nch + ch) * nin + i];
                    },
                    s);
                Kokkos::single(Kokkos::PerTeam(team), [&]() { db[ch] = s; });
            });
    }

    // ---- GEMM: C = alpha * op(A) * op(B) + beta * C, row-major ------------------------------
    // A team computes one tile x tile block of C; op(A) and op(B) are staged through team
    // scratch in tile x tile_k panels, the C block accumulates in scratch.
    static constexpr int gemm_tile = 32;
    static constexpr int gemm_tile_k = 32;

    template <class T>
    static void gemm(const context& c, transpose ta, transpose tb, std::size_t M, std::size_t N, std::size_t K, T alpha,
                     const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
        if (kokkos_detail::kokkos_blas_gemm<ExecutionSpace, MemorySpace>(c.space(), ta, tb, M, N, K, alpha, A, lda, B,
                                                                         ldb, beta, C, ldc))
            return;
        gemm_tiled<T>(c, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr, false, activation{});
    }
    /// GEMM with a fused epilogue: C = act(alpha * op(A) * op(B) + beta * C + bias), where
    /// bias (N entries, one per column of C) may be null. Fused into the tile write-back.
    template <class T>
    static void gemm_bias_act(const context& c, transpose ta, transpose tb, std::size_t M, std::size_t N,
                              std::size_t K, T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta,
                              T* C, std::size_t ldc, const T* bias, activation act) {
        if (kokkos_detail::kokkos_blas_gemm<ExecutionSpace, MemorySpace>(c.space(), ta, tb, M, N, K, alpha, A, lda, B,
                                                                         ldb, beta, C, ldc)) {
            if (bias || act.kind != activation_kind::identity) bias_act_epilogue(c, M, N, C, ldc, bias, act);
            return;
        }
        gemm_tiled<T>(c, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, true, act);
    }
    /// C[i][j] = act(C[i][j] + bias[j]) (bias may be null): the epilogue after KokkosBlas::gemm.
    template <class T>
    static void bias_act_epilogue(const context& c, std::size_t M, std::size_t N, T* C, std::size_t ldc, const T* bias,
                                  activation act) {
        const index_type n = static_cast<index_type>(N), lc = static_cast<index_type>(ldc);
        const activation_kind kind = act.kind;
        const T slope = static_cast<T>(act.alpha);
        Kokkos::parallel_for(
            "lamina::gemm_epilogue", range(c, M * N), KOKKOS_LAMBDA(const index_type e) {
                const index_type i = e / n, j = e % n;
                T& out = C[i * lc + j];
                out = activation_value<T>(kind, slope, bias ? out + bias[j] : out);
            });
    }

    template <class T>
    static void gemm_tiled(const context& c, transpose ta, transpose tb, std::size_t M, std::size_t N, std::size_t K,
                           T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C,
                           std::size_t ldc, const T* bias, bool epilogue, activation act) {
        if (M == 0 || N == 0) return;
        if constexpr (kokkos_detail::is_host_execution_space<ExecutionSpace>) {  // packed, register-blocked
            kokkos_detail::host_space_gemm(c.space(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias,
                                           epilogue, act);
            return;
        }
        constexpr index_type TB = gemm_tile, TK = gemm_tile_k;
        const index_type m = static_cast<index_type>(M), n = static_cast<index_type>(N), k = static_cast<index_type>(K);
        const index_type la = static_cast<index_type>(lda), lb = static_cast<index_type>(ldb),
                         lc = static_cast<index_type>(ldc);
        const bool at = ta == transpose::yes, bt = tb == transpose::yes;
        const index_type tiles_m = (m + TB - 1) / TB, tiles_n = (n + TB - 1) / TB;
        const activation_kind kind = act.kind;
        const T slope = static_cast<T>(act.alpha);
        const bool beta_zero = beta == T(0);
        const std::size_t scratch_bytes =
            scratch_view<T>::shmem_size(TB * TK) * 2 + scratch_view<T>::shmem_size(TB * TB);
        team_policy policy(c.space(), static_cast<int>(tiles_m * tiles_n), Kokkos::AUTO);
        policy = policy.set_scratch_size(0, Kokkos::PerTeam(scratch_bytes));
        Kokkos::parallel_for(
            "lamina::gemm", policy, KOKKOS_LAMBDA(const member_type& team) {
                const index_type i0 = (team.league_rank() / tiles_n) * TB, j0 = (team.league_rank() % tiles_n) * TB;
                scratch_view<T> as(team.team_scratch(0), TB * TK);  // as[i * TK + p] = op(A)(i0 + i, k0 + p)
                scratch_view<T> bs(team.team_scratch(0), TK * TB);  // bs[p * TB + j] = op(B)(k0 + p, j0 + j)
                scratch_view<T> cs(team.team_scratch(0), TB * TB);
                Kokkos::parallel_for(Kokkos::TeamThreadRange(team, TB * TB), [&](const index_type e) { cs(e) = T(0); });
                for (index_type k0 = 0; k0 < k; k0 += TK) {
                    const index_type kk = k - k0 < TK ? k - k0 : TK;
                    team.team_barrier();
                    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, TB * TK), [&](const index_type e) {
                        const index_type i = e / TK, p = e % TK, gi = i0 + i, gp = k0 + p;
                        T v = T(0);
                        if (gi < m && p < kk) v = at ? A[gp * la + gi] : A[gi * la + gp];
                        as(e) = v;
                    });
                    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, TK * TB), [&](const index_type e) {
                        const index_type p = e / TB, j = e % TB, gj = j0 + j, gp = k0 + p;
                        T v = T(0);
                        if (gj < n && p < kk) v = bt ? B[gj * lb + gp] : B[gp * lb + gj];
                        bs(e) = v;
                    });
                    team.team_barrier();
                    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, TB * TB), [&](const index_type e) {
                        const index_type i = e / TB, j = e % TB;
                        T s = cs(e);
                        for (index_type p = 0; p < kk; ++p) s += as(i * TK + p) * bs(p * TB + j);
                        cs(e) = s;
                    });
                }
                team.team_barrier();
                Kokkos::parallel_for(Kokkos::TeamThreadRange(team, TB * TB), [&](const index_type e) {
                    const index_type i = e / TB, j = e % TB, gi = i0 + i, gj = j0 + j;
                    if (gi >= m || gj >= n) return;
                    T& out = C[gi * lc + gj];
                    T v = alpha * cs(e) + (beta_zero ? T(0) : beta * out);
                    if (epilogue) v = activation_value<T>(kind, slope, bias ? v + bias[gj] : v);
                    out = v;
                });
            });
    }

    // ---- activations -------------------------------------------------------------------------
    template <class T>
    static void activation_forward(const context& c, activation a, const T* x, T* y, std::size_t n) {
        if constexpr (kokkos_detail::is_host_execution_space<ExecutionSpace>) {
            kokkos_detail::host_space_activation_forward(c.space(), a, x, y, n);
            return;
        }
        const activation_kind kind = a.kind;
        const T slope = static_cast<T>(a.alpha);
        Kokkos::parallel_for(
            "lamina::activation_forward", range(c, n),
            KOKKOS_LAMBDA(const index_type i) { y[i] = activation_value<T>(kind, slope, x[i]); });
    }
    /// dx = f'(x) * dy, with y = f(x) available (sigmoid and tanh use it).
    template <class T>
    static void activation_backward(const context& c, activation a, const T* x, const T* y, const T* dy, T* dx,
                                    std::size_t n) {
        if constexpr (kokkos_detail::is_host_execution_space<ExecutionSpace>) {
            kokkos_detail::host_space_activation_backward(c.space(), a, x, y, dy, dx, n);
            return;
        }
        const activation_kind kind = a.kind;
        const T slope = static_cast<T>(a.alpha);
        Kokkos::parallel_for(
            "lamina::activation_backward", range(c, n), KOKKOS_LAMBDA(const index_type i) {
                dx[i] = activation_gradient<T>(kind, slope, x[i], y[i], dy[i]);
            });
    }

    // ---- softmax over the last dimension of a rows x cols matrix -------------------------------
    template <class T>
    static void softmax_forward(const context& c, const T* x, T* y, std::size_t rows, std::size_t cols) {
        const auto nc = static_cast<index_type>(cols);
        Kokkos::parallel_for(
            "lamina::softmax_forward", range(c, rows), KOKKOS_LAMBDA(const index_type r) {
                const T* xr = x + r * nc;
                T* yr = y + r * nc;
                T mx = xr[0];
                for (index_type j = 1; j < nc; ++j) mx = kokkos_detail::max_of(mx, xr[j]);
                T s = 0;
                for (index_type j = 0; j < nc; ++j) s += (yr[j] = std::exp(xr[j] - mx));
                for (index_type j = 0; j < nc; ++j) yr[j] /= s;
            });
    }
    /// dx_i = y_i * (dy_i - sum_j dy_j y_j)
    template <class T>
    static void softmax_backward(const context& c, const T* y, const T* dy, T* dx, std::size_t rows, std::size_t cols) {
        const auto nc = static_cast<index_type>(cols);
        Kokkos::parallel_for(
            "lamina::softmax_backward", range(c, rows), KOKKOS_LAMBDA(const index_type r) {
                T dot = 0;
                for (index_type j = 0; j < nc; ++j) dot += dy[r * nc + j] * y[r * nc + j];
                for (index_type j = 0; j < nc; ++j) dx[r * nc + j] = y[r * nc + j] * (dy[r * nc + j] - dot);
            });
    }

    // ---- losses: per-row loss into loss_rows, gradient w.r.t. the prediction times grad_scale ---
    template <class T>
    static void softmax_cross_entropy(const context& c, const T* logits, const T* labels, T* grad, T* loss_rows,
                                      std::size_t rows, std::size_t cols, T smoothing, T grad_scale) {
        const auto nc = static_cast<index_type>(cols);
        Kokkos::parallel_for(
            "lamina::softmax_cross_entropy", range(c, rows), KOKKOS_LAMBDA(const index_type r) {
                const T* x = logits + r * nc;
                T mx = x[0];
                for (index_type j = 1; j < nc; ++j) mx = kokkos_detail::max_of(mx, x[j]);
                T s = 0;
                for (index_type j = 0; j < nc; ++j) s += std::exp(x[j] - mx);
                const T log_s = std::log(s) + mx;
                const auto label = static_cast<index_type>(labels[r]);
                T loss = 0;
                for (index_type j = 0; j < nc; ++j) {
                    const T target = (j == label ? T(1) - smoothing : T(0)) + smoothing / static_cast<T>(nc);
                    const T logp = x[j] - log_s;
                    loss -= target * logp;
                    grad[r * nc + j] = (std::exp(logp) - target) * grad_scale;
                }
                loss_rows[r] = loss;
            });
    }
    /// Mean squared error per row: mean_c (p - t)^2; gradient 2 (p - t) / cols * grad_scale.
    template <class T>
    static void mse(const context& c, const T* pred, const T* target, T* grad, T* loss_rows, std::size_t rows,
                    std::size_t cols, T grad_scale) {
        const auto nc = static_cast<index_type>(cols);
        Kokkos::parallel_for(
            "lamina::mse", range(c, rows), KOKKOS_LAMBDA(const index_type r) {
                T loss = 0;
                for (index_type j = 0; j < nc; ++j) {
                    const T d = pred[r * nc + j] - target[r * nc + j];
                    loss += d * d;
                    grad[r * nc + j] = T(2) * d / static_cast<T>(nc) * grad_scale;
                }
                loss_rows[r] = loss / static_cast<T>(nc);
            });
    }
    /// Mean absolute error per row: mean_c |p - t|; gradient sign(p - t) / cols * grad_scale.
    template <class T>
    static void mae(const context& c, const T* pred, const T* target, T* grad, T* loss_rows, std::size_t rows,
                    std::size_t cols, T grad_scale) {
        const auto nc = static_cast<index_type>(cols);
        Kokkos::parallel_for(
            "lamina::mae", range(c, rows), KOKKOS_LAMBDA(const index_type r) {
                T loss = 0;
                for (index_type j = 0; j < nc; ++j) {
                    const T d = pred[r * nc + j] - target[r * nc + j];
                    loss += d < T(0) ? -d : d;
                    const T sign = d > T(0) ? T(1) : (d < T(0) ? T(-1) : d * T(0));  // NaN stays NaN
                    grad[r * nc + j] = sign / static_cast<T>(nc) * grad_scale;
                }
                loss_rows[r] = loss / static_cast<T>(nc);
            });
    }

    // ---- pooling (NCHW); padded cells never win a max and count as zero in an average ----------
    // Forward: one MDRange point per output (nc, p, q). Backward: one point per input cell,
    // gathering from the outputs whose window covers it (no atomics, deterministic).
    using md3_policy = Kokkos::MDRangePolicy<ExecutionSpace, Kokkos::Rank<3>, Kokkos::IndexType<index_type>>;

    template <class T>
    static void max_pool_forward(const context& c, const pool_geometry& g, const T* x, T* y, std::int32_t* argmax) {
        if constexpr (kokkos_detail::is_host_execution_space<ExecutionSpace>) {
            kokkos_detail::host_space_max_pool_forward(c.space(), g, x, y, argmax);
            return;
        }
        const index_type H = g.h, W = g.w, P = g.p, Q = g.q, KH = g.kh, KW = g.kw, SH = g.stride_h, SW = g.stride_w,
                         PH = g.pad_h, PW = g.pad_w;
        const T neg_inf = -std::numeric_limits<T>::infinity();
        Kokkos::parallel_for(
            "lamina::max_pool_forward",
            md3_policy(c.space(), {0, 0, 0}, {static_cast<index_type>(g.n * g.c), P, Q}),
            KOKKOS_LAMBDA(const index_type nc, const index_type p, const index_type q) {
                T best = neg_inf;
                std::int32_t where = -1;
                for (index_type i = 0; i < KH; ++i)
                    for (index_type j = 0; j < KW; ++j) {
                        const index_type hh = p * SH + i - PH, ww = q * SW + j - PW;
                        if (hh < 0 || ww < 0 || hh >= H || ww >= W) continue;
                        const index_type off = hh * W + ww;
                        const T v = x[nc * H * W + off];
                        if (where < 0 || v > best || (v != v && best == best)) {  // a NaN wins
                            best = v;
                            where = static_cast<std::int32_t>(off);
                        }
                    }
                y[(nc * P + p) * Q + q] = best;
                if (argmax) argmax[(nc * P + p) * Q + q] = where;
            });
    }
    /// dx = 0, then each dy is added to the input cell that won the max.
    template <class T>
    static void max_pool_backward(const context& c, const pool_geometry& g, const T* dy, const std::int32_t* argmax,
                                  T* dx) {
        if constexpr (kokkos_detail::is_host_execution_space<ExecutionSpace>) {
            kokkos_detail::host_space_max_pool_backward(c.space(), g, dy, argmax, dx);
            return;
        }
        const index_type H = g.h, W = g.w, P = g.p, Q = g.q, KH = g.kh, KW = g.kw, SH = g.stride_h, SW = g.stride_w,
                         PH = g.pad_h, PW = g.pad_w;
        Kokkos::parallel_for(
            "lamina::max_pool_backward",
            md3_policy(c.space(), {0, 0, 0}, {static_cast<index_type>(g.n * g.c), H, W}),
            KOKKOS_LAMBDA(const index_type nc, const index_type h, const index_type w) {
                index_type p0, p1, q0, q1;
                kokkos_detail::covering_outputs(h + PH, KH, SH, P, p0, p1);
                kokkos_detail::covering_outputs(w + PW, KW, SW, Q, q0, q1);
                const auto self = static_cast<std::int32_t>(h * W + w);
                T s = 0;
                for (index_type p = p0; p < p1; ++p)
                    for (index_type q = q0; q < q1; ++q) {
                        const index_type o = (nc * P + p) * Q + q;
                        if (argmax[o] == self) s += dy[o];
                    }
                dx[(nc * H + h) * W + w] = s;
            });
    }
    /// Average over the window including padding (count_include_pad, PyTorch's default).
    template <class T>
    static void avg_pool_forward(const context& c, const pool_geometry& g, const T* x, T* y) {
        const index_type H = g.h, W = g.w, P = g.p, Q = g.q, KH = g.kh, KW = g.kw, SH = g.stride_h, SW = g.stride_w,
                         PH = g.pad_h, PW = g.pad_w;
        const T inv = T(1) / static_cast<T>(g.kh * g.kw);
        Kokkos::parallel_for(
            "lamina::avg_pool_forward",
            md3_policy(c.space(), {0, 0, 0}, {static_cast<index_type>(g.n * g.c), P, Q}),
            KOKKOS_LAMBDA(const index_type nc, const index_type p, const index_type q) {
                T s = 0;
                for (index_type i = 0; i < KH; ++i)
                    for (index_type j = 0; j < KW; ++j) {
                        const index_type hh = p * SH + i - PH, ww = q * SW + j - PW;
                        if (hh < 0 || ww < 0 || hh >= H || ww >= W) continue;
                        s += x[nc * H * W + hh * W + ww];
                    }
                y[(nc * P + p) * Q + q] = s * inv;
            });
    }
    template <class T>
    static void avg_pool_backward(const context& c, const pool_geometry& g, const T* dy, T* dx) {
        const index_type H = g.h, W = g.w, P = g.p, Q = g.q, KH = g.kh, KW = g.kw, SH = g.stride_h, SW = g.stride_w,
                         PH = g.pad_h, PW = g.pad_w;
        const T inv = T(1) / static_cast<T>(g.kh * g.kw);
        Kokkos::parallel_for(
            "lamina::avg_pool_backward",
            md3_policy(c.space(), {0, 0, 0}, {static_cast<index_type>(g.n * g.c), H, W}),
            KOKKOS_LAMBDA(const index_type nc, const index_type h, const index_type w) {
                index_type p0, p1, q0, q1;
                kokkos_detail::covering_outputs(h + PH, KH, SH, P, p0, p1);
                kokkos_detail::covering_outputs(w + PW, KW, SW, Q, q0, q1);
                T s = 0;
                for (index_type p = p0; p < p1; ++p)
                    for (index_type q = q0; q < q1; ++q) s += dy[(nc * P + p) * Q + q] * inv;
                dx[(nc * H + h) * W + w] = s;
            });
    }

    // ---- convolution: direct kernels, no workspace ---------------------------------------------
    // The trailing Tag... accepts the interface's optional compile-time shape tag (conv_shape).
    // Groups and dilation as in the reference: filter k reads the C/G channels of its group
    // k / (K/G) (w is [K][C/G][R][S]); tap (r, t) of output (p, q) reads input cell
    // (p*sh + r*dh - ph, q*sw + t*dw - pw). Host execution spaces run plain convolutions
    // (conv_geometry::plain()) as implicit GEMMs (host_space_conv.hpp), the rest here.
    template <class T, class... Tag>
    static std::size_t conv2d_workspace(const conv_geometry&, Tag...) {
        return 0;
    }
    /// y[n][k][p][q] = bias[k] + sum_{c<C/G,r,s} x[n][gi*C/G + c][p*sh + r*dh - ph][q*sw + s*dw - pw] * w[k][c][r][s]
    /// One work item per output row segment (n, k, p, up to conv_q_chunk outputs along q): the
    /// segment's outputs accumulate side by side (independent chains, each in the reference's
    /// c, r, s order).
    static constexpr index_type conv_q_chunk = 16;
    template <class T, class... Tag>
    static void conv2d_forward(const context& ctx, const conv_geometry& g, const T* x, const T* w, const T* bias, T* y,
                               T*, Tag...) {
        if constexpr (kokkos_detail::is_host_execution_space<ExecutionSpace>) {  // implicit GEMM
            if (g.plain()) {
                kokkos_detail::host_space_conv2d_forward(ctx.space(), g, x, w, bias, y);
                return;
            }
        }
        const index_type C = g.c, H = g.h, W = g.w, K = g.k, R = g.r, S = g.s, P = g.p, Q = g.q, SH = g.stride_h,
                         SW = g.stride_w, PH = g.pad_h, PW = g.pad_w, DH = g.dilation_h, DW = g.dilation_w;
        const index_type CG = g.group_channels(), KG = g.group_filters();
        constexpr index_type QC = conv_q_chunk;
        const index_type chunks = (Q + QC - 1) / QC;
        Kokkos::parallel_for(
            "lamina::conv2d_forward",
            md3_policy(ctx.space(), {0, 0, 0}, {static_cast<index_type>(g.n) * K, P, chunks}),
            KOKKOS_LAMBDA(const index_type nk, const index_type p, const index_type chunk) {
                const index_type n = nk / K, k = nk % K, c0 = k / KG * CG;
                const index_type qa = chunk * QC, qn = Q - qa < QC ? Q - qa : QC;
                const index_type h0 = p * SH - PH;
                // kernel rows whose input row h0 + r*DH lies in [0, H)
                const index_type r0 = h0 < 0 ? (-h0 + DH - 1) / DH : 0;
                const index_type rn = H - h0 <= 0 ? 0 : (H - h0 + DH - 1) / DH, r1 = rn < R ? rn : R;
                T acc[QC];
                const T b0 = bias ? bias[k] : T(0);
                for (index_type j = 0; j < QC; ++j) acc[j] = b0;
                for (index_type c = 0; c < CG; ++c) {
                    const index_type xb = (n * C + c0 + c) * H * W, wb = (k * CG + c) * R * S;
                    for (index_type r = r0; r < r1; ++r) {
                        const index_type xr = xb + (h0 + r * DH) * W;
                        for (index_type t = 0; t < S; ++t) {
                            const T wv = w[wb + r * S + t];
                            for (index_type j = 0; j < qn; ++j) {
                                const index_type ww = (qa + j) * SW + t * DW - PW;
                                if (ww >= 0 && ww < W) acc[j] += x[xr + ww] * wv;
                            }
                        }
                    }
                }
                for (index_type j = 0; j < qn; ++j) y[(nk * P + p) * Q + qa + j] = acc[j];
            });
    }
    /// dx = conv2d^T(dy, w) (overwrites dx): each input cell gathers from the outputs it feeds
    /// (the outputs whose dilated window covers it, at a tap: offset divisible by the dilation).
    template <class T, class... Tag>
    static void conv2d_backward_data(const context& ctx, const conv_geometry& g, const T* dy, const T* w, T* dx, T*,
                                     Tag...) {
        if constexpr (kokkos_detail::is_host_execution_space<ExecutionSpace>) {  // implicit GEMM + col2im
            if (g.plain()) {
                kokkos_detail::host_space_conv2d_backward_data(ctx.space(), g, dy, w, dx);
                return;
            }
        }
        const index_type C = g.c, H = g.h, W = g.w, K = g.k, R = g.r, S = g.s, P = g.p, Q = g.q, SH = g.stride_h,
                         SW = g.stride_w, PH = g.pad_h, PW = g.pad_w, DH = g.dilation_h, DW = g.dilation_w;
        const index_type CG = g.group_channels(), KG = g.group_filters();
        Kokkos::parallel_for(
            "lamina::conv2d_backward_data",
            md3_policy(ctx.space(), {0, 0, 0}, {static_cast<index_type>(g.n) * C, H, W}),
            KOKKOS_LAMBDA(const index_type nc, const index_type h, const index_type wc) {
                const index_type n = nc / C, c = nc % C, k0 = c / CG * KG, cl = c % CG;
                index_type p0, p1, q0, q1;
                kokkos_detail::covering_outputs(h + PH, (R - 1) * DH + 1, SH, P, p0, p1);
                kokkos_detail::covering_outputs(wc + PW, (S - 1) * DW + 1, SW, Q, q0, q1);
                T s = 0;
                for (index_type k = k0; k < k0 + KG; ++k)
                    for (index_type p = p0; p < p1; ++p) {
                        const index_type rd = h + PH - p * SH;
                        if (DH != 1 && rd % DH != 0) continue;
                        const index_type r = rd / DH;
                        for (index_type q = q0; q < q1; ++q) {
                            const index_type td = wc + PW - q * SW;
                            if (DW != 1 && td % DW != 0) continue;
                            const index_type t = td / DW;
                            s += dy[((n * K + k) * P + p) * Q + q] * w[((k * CG + cl) * R + r) * S + t];
                        }
                    }
                dx[(nc * H + h) * W + wc] = s;
            });
    }
    /// dw = sum over the batch of x (*) dy (overwrites dw); db[k] = sum of dy over n, p, q
    /// when db is not null (overwrites db). Kernels of up to conv_rs_max taps: one work item
    /// per (k, c) accumulating all R x S taps side by side (each in the reference's n, p, q
    /// order); larger kernels: one team per weight, its threads splitting the batch.
    static constexpr index_type conv_rs_max = 49;
    template <class T, class... Tag>
    static void conv2d_backward_weights(const context& ctx, const conv_geometry& g, const T* x, const T* dy, T* dw,
                                        T* db, T*, Tag...) {
        if constexpr (kokkos_detail::is_host_execution_space<ExecutionSpace>) {  // implicit GEMM
            if (g.plain()) {
                kokkos_detail::host_space_conv2d_backward_weights(ctx.space(), g, x, dy, dw);
                if (db) channel_bias_grad(ctx, dy, db, g.n, g.k, g.p * g.q);
                return;
            }
        }
        const index_type N = g.n, C = g.c, H = g.h, W = g.w, K = g.k, R = g.r, S = g.s, P = g.p, Q = g.q,
                         SH = g.stride_h, SW = g.stride_w, PH = g.pad_h, PW = g.pad_w, DH = g.dilation_h,
                         DW = g.dilation_w;
        const index_type CG = g.group_channels(), KG = g.group_filters();
        if (R * S <= conv_rs_max) {
            constexpr index_type RS = conv_rs_max;
            Kokkos::parallel_for(
                "lamina::conv2d_backward_weights", range(ctx, g.k * g.group_channels()),
                KOKKOS_LAMBDA(const index_type kc) {
                    const index_type k = kc / CG, c = k / KG * CG + kc % CG;
                    T acc[RS];
                    for (index_type e = 0; e < R * S; ++e) acc[e] = T(0);
                    for (index_type n = 0; n < N; ++n) {
                        const index_type dyb = (n * K + k) * P * Q, xb = (n * C + c) * H * W;
                        for (index_type p = 0; p < P; ++p)
                            for (index_type q = 0; q < Q; ++q) {
                                const T d = dy[dyb + p * Q + q];
                                const index_type h0 = p * SH - PH, w0 = q * SW - PW;
                                for (index_type r = 0; r < R; ++r) {
                                    const index_type hh = h0 + r * DH;
                                    if (hh < 0 || hh >= H) continue;
                                    for (index_type t = 0; t < S; ++t) {
                                        const index_type ww = w0 + t * DW;
                                        if (ww >= 0 && ww < W) acc[r * S + t] += d * x[xb + hh * W + ww];
                                    }
                                }
                            }
                    }
                    for (index_type e = 0; e < R * S; ++e) dw[kc * R * S + e] = acc[e];
                });
        } else {
            Kokkos::parallel_for(
                "lamina::conv2d_backward_weights_large",
                team_policy(ctx.space(), static_cast<int>(g.weight_size()), Kokkos::AUTO),
                KOKKOS_LAMBDA(const member_type& team) {
                    const index_type e = team.league_rank();
                    const index_type t = e % S, r = (e / S) % R, cl = (e / (S * R)) % CG, k = e / (S * R * CG);
                    const index_type c = k / KG * CG + cl;
                    index_type p0, p1, q0, q1;
                    kokkos_detail::valid_outputs(r * DH, PH, SH, H, P, p0, p1);
                    kokkos_detail::valid_outputs(t * DW, PW, SW, W, Q, q0, q1);
                    T s = 0;
                    Kokkos::parallel_reduce(
                        Kokkos::TeamThreadRange(team, N),
                        [&](const index_type n, T& a) {
                            const index_type dyb = (n * K + k) * P * Q;
                            const index_type xb = (n * C + c) * H * W + (r * DH - PH) * W + (t * DW - PW);  // may be < 0
                            for (index_type p = p0; p < p1; ++p) {
                                const index_type dyr = dyb + p * Q, xr = xb + p * SH * W;
                                for (index_type q = q0; q < q1; ++q) a += dy[dyr + q] * x[xr + q * SW];
                            }
                        },
                        s);
                    Kokkos::single(Kokkos::PerTeam(team), [&]() { dw[e] = s; });
                });
        }
        if (db) channel_bias_grad(ctx, dy, db, g.n, g.k, g.p * g.q);
    }

    // ---- dropout: element i is kept iff stream.uniform(i) >= p; mask holds 0 or 1/(1-p) ------
    template <class T>
    static void dropout_forward(const context& c, const T* x, T* y, T* mask, std::size_t n, T p, random_stream stream) {
        const T keep_scale = T(1) / (T(1) - p);
        Kokkos::parallel_for(
            "lamina::dropout_forward", range(c, n), KOKKOS_LAMBDA(const index_type i) {
                const T m = static_cast<T>(stream.uniform(static_cast<std::uint64_t>(i))) >= p ? keep_scale : T(0);
                mask[i] = m;
                y[i] = x[i] * m;
            });
    }

    // ---- optimizer updates ---------------------------------------------------------------
    template <class T>
    static void sgd_update(const context& c, T* w, const T* g, T* velocity, std::size_t n, const sgd_step<T>& s) {
        const T lr = s.lr, momentum = s.momentum, wd = s.weight_decay;
        const bool nesterov = s.nesterov;
        Kokkos::parallel_for(
            "lamina::sgd_update", range(c, n), KOKKOS_LAMBDA(const index_type i) {
                T grad = g[i] + wd * w[i];
                if (momentum != T(0)) {
                    velocity[i] = momentum * velocity[i] + grad;
                    grad = nesterov ? grad + momentum * velocity[i] : velocity[i];
                }
                w[i] -= lr * grad;
            });
    }
    template <class T>
    static void adam_update(const context& c, T* w, const T* g, T* m, T* v, std::size_t n, const adam_step<T>& s) {
        const adam_step<T> st = s;
        Kokkos::parallel_for(
            "lamina::adam_update", range(c, n), KOKKOS_LAMBDA(const index_type i) {
                T grad = g[i];
                if (st.decoupled)
                    w[i] -= st.lr * st.weight_decay * w[i];
                else
                    grad += st.weight_decay * w[i];
                m[i] = st.beta1 * m[i] + (T(1) - st.beta1) * grad;
                v[i] = st.beta2 * v[i] + (T(1) - st.beta2) * grad * grad;
                const T mhat = m[i] / st.bias_correction1;
                const T vhat = v[i] / st.bias_correction2;
                w[i] -= st.lr * mhat / (std::sqrt(vhat) + st.eps);
            });
    }
};

}  // namespace lamina
