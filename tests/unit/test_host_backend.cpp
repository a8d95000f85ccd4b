// The host backend against the reference backend (the oracle): every kernel, float and
// double, at 1 and 2 threads, on random data and awkward shapes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "lamina/backends/host/host_backend.hpp"
#include "lamina/backends/reference/reference_backend.hpp"

using namespace lamina;

namespace {

template <class T>
std::vector<T> random_vec(std::size_t n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
    random_stream s{seed, 11};
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(lo + (hi - lo) * s.uniform_double(i));
    return v;
}

// |a - b| <= rel * max(|a|, |b|) + abs * max|ref|
template <class T>
struct tol {
    static constexpr double rel = std::is_same<T, float>::value ? 1e-5 : 1e-12;
    static constexpr double abs = std::is_same<T, float>::value ? 1e-6 : 1e-13;
};

template <class T>
void check_close(const std::vector<T>& got, const std::vector<T>& ref, const std::string& what,
                 double rel = tol<T>::rel, double abs = tol<T>::abs) {
    REQUIRE(got.size() == ref.size());
    double max_ref = 0;
    for (T r : ref) max_ref = std::max(max_ref, std::abs(static_cast<double>(r)));
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const double a = got[i], b = ref[i];
        const bool ok = std::abs(a - b) <= rel * std::max(std::abs(a), std::abs(b)) + abs * max_ref;
        if (!ok && bad++ == 0) first = i;
    }
    INFO(what << ": " << bad << " of " << ref.size() << " differ; first at " << first << ": host "
              << (bad ? got[first] : T(0)) << " reference " << (bad ? ref[first] : T(0)));
    CHECK(bad == 0);
}

// The thread counts every test runs at: serial, and the pool (2 threads) actually engaged.
std::vector<host::context>& contexts() {
    static std::vector<host::context> c{host::context(threads{1}), host::context(threads{2})};
    return c;
}
reference::context ref_ctx;

}  // namespace

TEST_CASE("host context", "[host]") {
    host::context a(threads{2});
    host::context b = a;
    CHECK(a.thread_count() == 2);
    CHECK(&a.pool() == &b.pool());
    CHECK(host::context(threads{1}).thread_count() == 1);
    CHECK(host::context().thread_count() >= 1);
    CHECK(std::string(host::name) == "host");
    static_assert(host::host_accessible, "host memory is host accessible");
}

TEMPLATE_TEST_CASE("host gemm matches reference", "[host][gemm]", float, double) {
    using T = TestType;
    struct dims {
        std::size_t m, n, k;
    };
    std::vector<dims> shapes;
    const std::size_t small[] = {1, 7, 17, 64};
    for (auto m : small)
        for (auto n : small)
            for (auto k : small) shapes.push_back({m, n, k});
    // Packed path, threaded path and edge tiles in every dimension (with K spanning KC blocks).
    shapes.insert(shapes.end(), {{255, 255, 255}, {1000, 17, 64}, {17, 1000, 255}, {64, 255, 1000}, {1000, 64, 17},
                                 {7, 1000, 1000}, {1000, 7, 300}, {1, 1000, 1000}, {255, 1, 1000}, {130, 129, 513}});
    const transpose tr[] = {transpose::no, transpose::yes};
    std::uint64_t seed = 1;
    for (const auto& d : shapes)
        for (transpose ta : tr)
            for (transpose tb : tr) {
                // Leading dimensions larger than the minimum, to catch lda/ldb/ldc mixups.
                const std::size_t a_rows = ta == transpose::no ? d.m : d.k, a_cols = ta == transpose::no ? d.k : d.m;
                const std::size_t b_rows = tb == transpose::no ? d.k : d.n, b_cols = tb == transpose::no ? d.n : d.k;
                const std::size_t lda = a_cols + 3, ldb = b_cols + 1, ldc = d.n + 2;
                auto A = random_vec<T>(a_rows * lda, ++seed);
                auto B = random_vec<T>(b_rows * ldb, ++seed);
                auto C0 = random_vec<T>(d.m * ldc, ++seed);
                const bool big = d.m * d.n * d.k > 2000000;
                for (int variant = 0; variant < (big ? 2 : 3); ++variant) {
                    const T alpha = variant == 0 ? T(1) : T(-0.75);
                    const T beta = variant == 0 ? T(0) : (variant == 1 ? T(0.5) : T(1));
                    std::vector<T> Cin = C0;
                    if (beta == T(0)) std::fill(Cin.begin(), Cin.end(), std::numeric_limits<T>::quiet_NaN());
                    std::vector<T> ref = Cin;
                    reference::gemm(ref_ctx, ta, tb, d.m, d.n, d.k, alpha, A.data(), lda, B.data(), ldb, beta,
                                    ref.data(), ldc);
                    // Padding columns of C must stay untouched: compare them too (NaN-free copies).
                    if (beta == T(0))
                        for (std::size_t i = 0; i < d.m; ++i)
                            for (std::size_t j = d.n; j < ldc; ++j) ref[i * ldc + j] = Cin[i * ldc + j] = T(7);
                    for (auto& ctx : contexts()) {
                        std::vector<T> got = Cin;
                        host::gemm(ctx, ta, tb, d.m, d.n, d.k, alpha, A.data(), lda, B.data(), ldb, beta, got.data(),
                                   ldc);
                        // K up to 1000: the packed kernel sums in KC blocks and FMA order, the
                        // reference left to right; the absolute term (1e-6 * max|C|) covers the
                        // cancellation in entries much smaller than the largest.
                        check_close(got, ref,
                                    "gemm M=" + std::to_string(d.m) + " N=" + std::to_string(d.n) + " K=" +
                                        std::to_string(d.k) + " ta=" + std::to_string(int(ta)) + " tb=" +
                                        std::to_string(int(tb)) + " beta=" + std::to_string(double(beta)) +
                                        " threads=" + std::to_string(ctx.thread_count()));
                    }
                }
            }
}

TEMPLATE_TEST_CASE("host gemm edge cases and determinism", "[host][gemm]", float, double) {
    using T = TestType;
    auto& ctx = contexts()[1];
    // K == 0: C = beta * C (zero when beta == 0, even over NaN).
    std::vector<T> C(12, std::numeric_limits<T>::quiet_NaN());
    host::gemm(ctx, transpose::no, transpose::no, 3, 4, 0, T(1), static_cast<const T*>(nullptr), 1,
               static_cast<const T*>(nullptr), 4, T(0), C.data(), 4);
    for (T c : C) CHECK(c == T(0));
    // Same call twice, same thread count: bitwise identical.
    auto A = random_vec<T>(300 * 301, 5), B = random_vec<T>(301 * 299, 6);
    std::vector<T> C1(300 * 299), C2(300 * 299);
    host::gemm(ctx, transpose::no, transpose::no, 300, 299, 301, T(1), A.data(), 301, B.data(), 299, T(0), C1.data(), 299);
    host::gemm(ctx, transpose::no, transpose::no, 300, 299, 301, T(1), A.data(), 301, B.data(), 299, T(0), C2.data(), 299);
    CHECK(C1 == C2);
    // Threads split C into whole micro-tiles: 1 and 2 threads give bitwise identical results.
    std::vector<T> C3(300 * 299);
    host::gemm(contexts()[0], transpose::no, transpose::no, 300, 299, 301, T(1), A.data(), 301, B.data(), 299, T(0),
               C3.data(), 299);
    CHECK(C1 == C3);
    host::gemm(ctx, transpose::yes, transpose::yes, 299, 300, 301, T(1), B.data(), 299, A.data(), 301, T(0), C1.data(),
               300);
    host::gemm(contexts()[0], transpose::yes, transpose::yes, 299, 300, 301, T(1), B.data(), 299, A.data(), 301, T(0),
               C3.data(), 300);
    CHECK(C1 == C3);
}

namespace {
conv_geometry make_conv(std::size_t n, std::size_t c, std::size_t h, std::size_t w, std::size_t k, std::size_t r,
                        std::size_t stride, std::size_t pad) {
    conv_geometry g;
    g.n = n; g.c = c; g.h = h; g.w = w; g.k = k; g.r = r; g.s = r;
    g.stride_h = g.stride_w = stride;
    g.pad_h = g.pad_w = pad;
    g.p = conv_geometry::out_extent(h, r, stride, pad);
    g.q = conv_geometry::out_extent(w, r, stride, pad);
    return g;
}
}  // namespace

TEMPLATE_TEST_CASE("host conv2d matches reference", "[host][conv]", float, double) {
    using T = TestType;
    std::vector<conv_geometry> geoms = {
        make_conv(1, 3, 9, 9, 5, 3, 1, 1),     make_conv(3, 5, 11, 10, 7, 3, 2, 1),  make_conv(4, 3, 8, 8, 10, 1, 1, 0),
        make_conv(1, 2, 7, 9, 3, 1, 2, 0),     make_conv(3, 4, 12, 12, 6, 5, 1, 2),  make_conv(4, 3, 16, 15, 9, 7, 2, 2),
        make_conv(8, 6, 6, 6, 11, 3, 1, 0),    make_conv(2, 1, 28, 28, 13, 5, 1, 0), make_conv(3, 17, 14, 14, 33, 3, 1, 1),
        make_conv(1, 9, 5, 5, 3, 5, 2, 2),     make_conv(2, 16, 20, 20, 24, 1, 1, 0), make_conv(5, 3, 6, 7, 2, 2, 2, 1),
    };
    std::uint64_t seed = 100;
    for (const auto& g : geoms) {
        const std::string tag = "conv n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) + " h=" +
                                std::to_string(g.h) + " k=" + std::to_string(g.k) + " r=" + std::to_string(g.r) +
                                " stride=" + std::to_string(g.stride_h) + " pad=" + std::to_string(g.pad_h);
        auto x = random_vec<T>(g.input_size(), ++seed);
        auto w = random_vec<T>(g.weight_size(), ++seed);
        auto b = random_vec<T>(g.k, ++seed);
        auto dy = random_vec<T>(g.output_size(), ++seed);
        std::vector<T> y_ref(g.output_size()), y_ref_nb(g.output_size()), dx_ref(g.input_size()),
            dw_ref(g.weight_size()), db_ref(g.k);
        reference::conv2d_forward(ref_ctx, g, x.data(), w.data(), b.data(), y_ref.data(), static_cast<T*>(nullptr));
        reference::conv2d_forward(ref_ctx, g, x.data(), w.data(), static_cast<const T*>(nullptr), y_ref_nb.data(),
                                  static_cast<T*>(nullptr));
        reference::conv2d_backward_data(ref_ctx, g, dy.data(), w.data(), dx_ref.data(), static_cast<T*>(nullptr));
        reference::conv2d_backward_weights(ref_ctx, g, x.data(), dy.data(), dw_ref.data(), db_ref.data(),
                                           static_cast<T*>(nullptr));
        const std::size_t ws_n = host::conv2d_workspace<T>(g);
        if (g.r == 1 && g.stride_h == 1 && g.pad_h == 0) CHECK(ws_n == 0);
        for (auto& ctx : contexts())
            for (bool null_ws : {false, true}) {
                const std::string t = tag + " threads=" + std::to_string(ctx.thread_count()) +
                                      (null_ws ? " null ws" : "");
                std::vector<T> ws(ws_n + 1, std::numeric_limits<T>::quiet_NaN());
                T* wsp = null_ws ? nullptr : ws.data();
                std::vector<T> y(g.output_size(), std::numeric_limits<T>::quiet_NaN()), y_nb = y;
                std::vector<T> dx(g.input_size(), std::numeric_limits<T>::quiet_NaN());
                std::vector<T> dw(g.weight_size(), std::numeric_limits<T>::quiet_NaN()), db(g.k, T(99)),
                    dw2(g.weight_size(), T(3));
                host::conv2d_forward(ctx, g, x.data(), w.data(), b.data(), y.data(), wsp);
                host::conv2d_forward(ctx, g, x.data(), w.data(), static_cast<const T*>(nullptr), y_nb.data(), wsp);
                host::conv2d_backward_data(ctx, g, dy.data(), w.data(), dx.data(), wsp);
                host::conv2d_backward_weights(ctx, g, x.data(), dy.data(), dw.data(), db.data(), wsp);
                host::conv2d_backward_weights(ctx, g, x.data(), dy.data(), dw2.data(), static_cast<T*>(nullptr), wsp);
                check_close(y, y_ref, t + " forward");
                check_close(y_nb, y_ref_nb, t + " forward, no bias");
                check_close(dx, dx_ref, t + " backward data");
                // Weight gradients sum n*p*q products (up to 1568 here) in another order
                // (per-thread partials, GEMM blocks): same tolerance, relative to max|dw|.
                check_close(dw, dw_ref, t + " backward weights");
                check_close(dw2, dw_ref, t + " backward weights, no db");
                check_close(db, db_ref, t + " bias gradient");
            }
    }
}

namespace {
pool_geometry make_pool(std::size_t n, std::size_t c, std::size_t h, std::size_t w, std::size_t k, std::size_t stride,
                        std::size_t pad) {
    pool_geometry g;
    g.n = n; g.c = c; g.h = h; g.w = w; g.kh = g.kw = k;
    g.stride_h = g.stride_w = stride;
    g.pad_h = g.pad_w = pad;
    g.p = conv_geometry::out_extent(h, k, stride, pad);
    g.q = conv_geometry::out_extent(w, k, stride, pad);
    return g;
}
}  // namespace

TEMPLATE_TEST_CASE("host pooling matches reference", "[host][pool]", float, double) {
    using T = TestType;
    std::vector<pool_geometry> geoms = {make_pool(2, 3, 8, 8, 2, 2, 0),    make_pool(3, 5, 9, 7, 3, 2, 1),
                                        make_pool(1, 2, 5, 5, 3, 1, 1),    make_pool(2, 4, 11, 13, 5, 3, 2),
                                        make_pool(1, 1, 4, 4, 4, 4, 0),    make_pool(16, 32, 28, 28, 2, 2, 0),
                                        make_pool(4, 6, 10, 10, 3, 3, 1),  make_pool(2, 3, 7, 7, 1, 1, 0),
                                        make_pool(2, 3, 9, 7, 2, 2, 0)};  // 2x2 fast path, odd extents
    std::uint64_t seed = 500;
    for (const auto& g : geoms) {
        const std::string tag = "pool n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) + " h=" +
                                std::to_string(g.h) + " w=" + std::to_string(g.w) + " k=" + std::to_string(g.kh) +
                                " stride=" + std::to_string(g.stride_h) + " pad=" + std::to_string(g.pad_h);
        auto x = random_vec<T>(g.input_size(), ++seed);
        // Some exact ties, so "first maximum wins" is exercised.
        for (std::size_t i = 0; i < x.size(); i += 5) x[i] = T(0.5);
        auto dy = random_vec<T>(g.output_size(), ++seed);
        std::vector<T> y_ref(g.output_size()), dx_ref(g.input_size()), ya_ref(g.output_size()),
            dxa_ref(g.input_size());
        std::vector<std::int32_t> am_ref(g.output_size());
        reference::max_pool_forward(ref_ctx, g, x.data(), y_ref.data(), am_ref.data());
        reference::max_pool_backward(ref_ctx, g, dy.data(), am_ref.data(), dx_ref.data());
        reference::avg_pool_forward(ref_ctx, g, x.data(), ya_ref.data());
        reference::avg_pool_backward(ref_ctx, g, dy.data(), dxa_ref.data());
        for (auto& ctx : contexts()) {
            const std::string t = tag + " threads=" + std::to_string(ctx.thread_count());
            std::vector<T> y(g.output_size()), y_inf(g.output_size()), dx(g.input_size(), T(5)), ya(g.output_size()),
                dxa(g.input_size(), T(5));
            std::vector<std::int32_t> am(g.output_size(), -7);
            host::max_pool_forward(ctx, g, x.data(), y.data(), am.data());
            host::max_pool_forward(ctx, g, x.data(), y_inf.data(), static_cast<std::int32_t*>(nullptr));
            host::max_pool_backward(ctx, g, dy.data(), am.data(), dx.data());
            host::avg_pool_forward(ctx, g, x.data(), ya.data());
            host::avg_pool_backward(ctx, g, dy.data(), dxa.data());
            INFO(t);
            CHECK(y == y_ref);
            CHECK(y_inf == y_ref);
            CHECK(am == am_ref);
            check_close(dx, dx_ref, t + " max backward");
            check_close(ya, ya_ref, t + " avg forward");
            check_close(dxa, dxa_ref, t + " avg backward");
        }
    }
}

TEMPLATE_TEST_CASE("host activations match reference", "[host][activation]", float, double) {
    using T = TestType;
    const activation acts[] = {{activation_kind::identity, 0},   {activation_kind::relu, 0},
                               {activation_kind::leaky_relu, 0.1}, {activation_kind::sigmoid, 0},
                               {activation_kind::tanh, 0},        {activation_kind::gelu, 0}};
    for (std::size_t n : {std::size_t(1), std::size_t(7), std::size_t(33), std::size_t(1000), std::size_t(100003)}) {
        auto x = random_vec<T>(n, n, -6.0, 6.0);
        x[0] = T(0);  // the kink of relu/leaky_relu
        auto dy = random_vec<T>(n, n + 1);
        for (const auto& a : acts) {
            std::vector<T> y_ref(n), dx_ref(n);
            reference::activation_forward(ref_ctx, a, x.data(), y_ref.data(), n);
            reference::activation_backward(ref_ctx, a, x.data(), y_ref.data(), dy.data(), dx_ref.data(), n);
            for (auto& ctx : contexts()) {
                const std::string t = std::string(to_string(a.kind)) + " n=" + std::to_string(n) + " threads=" +
                                      std::to_string(ctx.thread_count());
                std::vector<T> y(n), dx(n);
                host::activation_forward(ctx, a, x.data(), y.data(), n);
                host::activation_backward(ctx, a, x.data(), y_ref.data(), dy.data(), dx.data(), n);
                // xsimd's exp/tanh/erf are within a few ulp of libm's: the standard tolerance.
                check_close(y, y_ref, t + " forward");
                check_close(dx, dx_ref, t + " backward");
                // In place.
                std::vector<T> inplace = x;
                host::activation_forward(ctx, a, inplace.data(), inplace.data(), n);
                check_close(inplace, y_ref, t + " forward in place");
            }
        }
    }
}

TEMPLATE_TEST_CASE("host softmax and losses match reference", "[host][loss]", float, double) {
    using T = TestType;
    const std::pair<std::size_t, std::size_t> shapes[] = {{1, 1}, {1, 10}, {7, 3}, {33, 10}, {64, 1000}, {5000, 10},
                                                          {3, 17}};
    std::uint64_t seed = 900;
    for (auto [rows, cols] : shapes) {
        const std::size_t n = rows * cols;
        auto x = random_vec<T>(n, ++seed, -8.0, 8.0);
        auto dy = random_vec<T>(n, ++seed);
        auto target = random_vec<T>(n, ++seed);
        for (std::size_t i = 0; i < n; i += 3) target[i] = x[i];  // exact zeros of p - t for mae
        std::vector<T> labels(rows);
        random_stream ls{++seed, 3};
        for (std::size_t r = 0; r < rows; ++r) labels[r] = static_cast<T>(ls.below(r, cols));
        std::vector<T> sm_ref(n), smb_ref(n);
        reference::softmax_forward(ref_ctx, x.data(), sm_ref.data(), rows, cols);
        reference::softmax_backward(ref_ctx, sm_ref.data(), dy.data(), smb_ref.data(), rows, cols);
        for (auto& ctx : contexts()) {
            const std::string t = "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) + " threads=" +
                                  std::to_string(ctx.thread_count());
            std::vector<T> sm(n), smb(n);
            host::softmax_forward(ctx, x.data(), sm.data(), rows, cols);
            host::softmax_backward(ctx, sm_ref.data(), dy.data(), smb.data(), rows, cols);
            check_close(sm, sm_ref, t + " softmax");
            check_close(smb, smb_ref, t + " softmax backward");
            for (T smoothing : {T(0), T(0.1)}) {
                std::vector<T> g_ref(n), l_ref(rows), g(n), l(rows);
                reference::softmax_cross_entropy(ref_ctx, x.data(), labels.data(), g_ref.data(), l_ref.data(), rows,
                                                 cols, smoothing, T(0.25));
                host::softmax_cross_entropy(ctx, x.data(), labels.data(), g.data(), l.data(), rows, cols, smoothing,
                                            T(0.25));
                check_close(g, g_ref, t + " cross-entropy gradient");
                // The loss sums cols terms in another order, relative to the row's loss.
                check_close(l, l_ref, t + " cross-entropy loss");
            }
            std::vector<T> g_ref(n), l_ref(rows), g(n), l(rows);
            reference::mse(ref_ctx, x.data(), target.data(), g_ref.data(), l_ref.data(), rows, cols, T(0.5));
            host::mse(ctx, x.data(), target.data(), g.data(), l.data(), rows, cols, T(0.5));
            check_close(g, g_ref, t + " mse gradient");
            check_close(l, l_ref, t + " mse loss");
            reference::mae(ref_ctx, x.data(), target.data(), g_ref.data(), l_ref.data(), rows, cols, T(0.5));
            host::mae(ctx, x.data(), target.data(), g.data(), l.data(), rows, cols, T(0.5));
            check_close(g, g_ref, t + " mae gradient");
            check_close(l, l_ref, t + " mae loss");
        }
    }
}

TEMPLATE_TEST_CASE("host channel bias matches reference", "[host][bias]", float, double) {
    using T = TestType;
    struct dims {
        std::size_t outer, channels, inner;
    };
    const dims shapes[] = {{1, 1, 1}, {7, 13, 1}, {64, 1000, 1}, {3, 5, 17}, {8, 32, 784}, {100, 3, 1}, {2, 9, 1}};
    std::uint64_t seed = 1300;
    for (const auto& d : shapes) {
        const std::size_t n = d.outer * d.channels * d.inner;
        auto y0 = random_vec<T>(n, ++seed);
        auto b = random_vec<T>(d.channels, ++seed);
        std::vector<T> y_ref = y0, db_ref(d.channels);
        reference::add_channel_bias(ref_ctx, y_ref.data(), b.data(), d.outer, d.channels, d.inner);
        reference::channel_bias_grad(ref_ctx, y0.data(), db_ref.data(), d.outer, d.channels, d.inner);
        for (auto& ctx : contexts()) {
            const std::string t = "outer=" + std::to_string(d.outer) + " channels=" + std::to_string(d.channels) +
                                  " inner=" + std::to_string(d.inner) + " threads=" + std::to_string(ctx.thread_count());
            std::vector<T> y = y0, db(d.channels, T(42));
            host::add_channel_bias(ctx, y.data(), b.data(), d.outer, d.channels, d.inner);
            host::channel_bias_grad(ctx, y0.data(), db.data(), d.outer, d.channels, d.inner);
            check_close(y, y_ref, t + " add bias");
            check_close(db, db_ref, t + " bias grad");
        }
    }
}

TEMPLATE_TEST_CASE("host dropout draws the reference mask", "[host][dropout]", float, double) {
    using T = TestType;
    for (std::size_t n : {std::size_t(1), std::size_t(13), std::size_t(100001)})
        for (T p : {T(0), T(0.25), T(0.5), T(0.9)}) {
            auto x = random_vec<T>(n, n + 3);
            random_stream s{1234, 77};
            std::vector<T> y_ref(n), m_ref(n);
            reference::dropout_forward(ref_ctx, x.data(), y_ref.data(), m_ref.data(), n, p, s);
            for (auto& ctx : contexts()) {
                std::vector<T> y(n), m(n);
                host::dropout_forward(ctx, x.data(), y.data(), m.data(), n, p, s);
                INFO("n=" << n << " p=" << p << " threads=" << ctx.thread_count());
                CHECK(m == m_ref);
                CHECK(y == y_ref);
            }
        }
}

TEMPLATE_TEST_CASE("host optimizer updates match reference", "[host][optimizer]", float, double) {
    using T = TestType;
    for (std::size_t n : {std::size_t(1), std::size_t(19), std::size_t(100003)}) {
        auto w0 = random_vec<T>(n, n), g = random_vec<T>(n, n + 1), v0 = random_vec<T>(n, n + 2);
        auto sq0 = random_vec<T>(n, n + 3, 0.0, 1.0);
        for (int variant = 0; variant < 4; ++variant) {
            sgd_step<T> s;
            s.lr = T(0.1);
            s.momentum = variant == 0 ? T(0) : T(0.9);
            s.weight_decay = variant >= 2 ? T(0.01) : T(0);
            s.nesterov = variant == 3;
            std::vector<T> w_ref = w0, v_ref = v0;
            reference::sgd_update(ref_ctx, w_ref.data(), g.data(), v_ref.data(), n, s);
            adam_step<T> a;
            a.lr = T(0.01);
            a.weight_decay = variant >= 2 ? T(0.05) : T(0);
            a.decoupled = variant == 3;
            a.bias_correction1 = T(0.19);
            a.bias_correction2 = T(0.0199);
            std::vector<T> aw_ref = w0, am_ref = v0, av_ref = sq0;
            reference::adam_update(ref_ctx, aw_ref.data(), g.data(), am_ref.data(), av_ref.data(), n, a);
            for (auto& ctx : contexts()) {
                const std::string t =
                    "n=" + std::to_string(n) + " variant=" + std::to_string(variant) + " threads=" +
                    std::to_string(ctx.thread_count());
                std::vector<T> w = w0, v = v0;
                host::sgd_update(ctx, w.data(), g.data(), v.data(), n, s);
                check_close(w, w_ref, t + " sgd w");
                check_close(v, v_ref, t + " sgd velocity");
                std::vector<T> aw = w0, am = v0, av = sq0;
                host::adam_update(ctx, aw.data(), g.data(), am.data(), av.data(), n, a);
                check_close(aw, aw_ref, t + " adam w");
                check_close(am, am_ref, t + " adam m");
                check_close(av, av_ref, t + " adam v");
            }
        }
    }
}

TEMPLATE_TEST_CASE("host elementwise kernels and reductions match reference", "[host][elementwise]", float, double) {
    using T = TestType;
    for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(5), std::size_t(1000), std::size_t(200003)}) {
        auto x = random_vec<T>(n, n + 10), y0 = random_vec<T>(n, n + 11);
        for (auto& ctx : contexts()) {
            const std::string t = "n=" + std::to_string(n) + " threads=" + std::to_string(ctx.thread_count());
            std::vector<T> a(n, T(1)), b(n, T(2));
            host::fill(ctx, a.data(), n, T(3.5));
            reference::fill(ref_ctx, b.data(), n, T(3.5));
            CHECK(a == b);
            host::copy(ctx, a.data(), x.data(), n);
            CHECK(a == x);
            std::vector<T> h = y0, r = y0;
            host::axpy(ctx, n, T(-1.5), x.data(), h.data());
            reference::axpy(ref_ctx, n, T(-1.5), x.data(), r.data());
            check_close(h, r, t + " axpy");
            host::scale(ctx, n, T(0.3), h.data());
            reference::scale(ref_ctx, n, T(0.3), r.data());
            check_close(h, r, t + " scale");
            host::multiply(ctx, n, x.data(), y0.data(), h.data());
            reference::multiply(ref_ctx, n, x.data(), y0.data(), r.data());
            check_close(h, r, t + " multiply");
            // Both accumulate in double: only the final rounding to T can differ.
            const T hs = host::sum(ctx, x.data(), n), rs = reference::sum(ref_ctx, x.data(), n);
            CHECK(std::abs(double(hs) - double(rs)) <= tol<T>::rel * (std::abs(double(rs)) + 1.0));
            std::vector<std::atomic<int>> hits(n);
            host::for_each_index(ctx, n, [&](std::size_t i) { hits[i].fetch_add(1); });
            bool each_once = true;
            for (auto& h1 : hits) each_once = each_once && h1.load() == 1;
            CHECK(each_once);
        }
    }
    const std::pair<std::size_t, std::size_t> shapes[] = {{1, 1}, {3, 10}, {1000, 7}, {20000, 10}};
    for (auto [rows, cols] : shapes) {
        auto x = random_vec<T>(rows * cols, rows + 77);
        for (std::size_t i = 0; i < x.size(); i += 4) x[i] = T(0.99);  // ties: first wins
        std::vector<std::int32_t> h(rows, -1), r(rows, -2);
        reference::argmax_rows(ref_ctx, x.data(), r.data(), rows, cols);
        for (auto& ctx : contexts()) {
            host::argmax_rows(ctx, x.data(), h.data(), rows, cols);
            CHECK(h == r);
        }
    }
    // upload / download
    auto src = random_vec<T>(37, 1);
    std::vector<T> dev(37), back(37);
    host::upload(contexts()[0], dev.data(), src.data(), 37);
    host::download(contexts()[0], back.data(), dev.data(), 37);
    CHECK(back == src);
}
