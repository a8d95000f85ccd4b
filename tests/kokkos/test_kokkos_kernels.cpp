// Every kernel of the Kokkos backend against the reference backend (the executable spec) on
// random inputs, on every execution space this Kokkos build has (Serial, OpenMP).
#include "kokkos_test_support.hpp"

#include <lamina/backends/reference/reference_backend.hpp>

#include <cmath>

namespace lm = lamina;
using ref = lm::reference;
using kt::dev;
using kt::random_vector;

#define KOKKOS_SPACES_TEST(name, tags) TEMPLATE_TEST_CASE(name, tags, LAMINA_KOKKOS_TEST_SPACES)

KOKKOS_SPACES_TEST("kokkos elementwise kernels and reductions match the reference", "[kokkos][elementwise]") {
    using B = lm::kokkos_backend<TestType>;
    typename B::context c;
    ref::context rc;
    for (std::size_t n : {std::size_t(1), std::size_t(7), std::size_t(1000), std::size_t(4099)}) {
        auto x = random_vector<float>(n, 1), y = random_vector<float>(n, 2);
        {
            dev<B, float> d(n);
            B::fill(c, d.data(), n, 2.5f);
            REQUIRE(d.host() == std::vector<float>(n, 2.5f));
        }
        {
            dev<B, float> dx(x), dy(n);
            B::copy(c, dy.data(), dx.data(), n);
            REQUIRE(dy.host() == x);
        }
        {
            auto r = y;
            ref::axpy(rc, n, 0.75f, x.data(), r.data());
            dev<B, float> dx(x), dy(y);
            B::axpy(c, n, 0.75f, dx.data(), dy.data());
            KT_REQUIRE_CLOSE(dy.host(), r);
        }
        {
            auto r = x;
            ref::scale(rc, n, -1.5f, r.data());
            dev<B, float> dx(x);
            B::scale(c, n, -1.5f, dx.data());
            KT_REQUIRE_CLOSE(dx.host(), r);
        }
        {
            std::vector<float> r(n);
            ref::multiply(rc, n, x.data(), y.data(), r.data());
            dev<B, float> dx(x), dy(y), dz(n);
            B::multiply(c, n, dx.data(), dy.data(), dz.data());
            KT_REQUIRE_CLOSE(dz.host(), r);
        }
        {
            dev<B, float> dx(x);
            float s = B::sum(c, static_cast<const float*>(dx.data()), n), r = ref::sum(rc, x.data(), n);
            KT_REQUIRE_CLOSE(std::vector<float>{s}, std::vector<float>{r});
        }
        {
            dev<B, double> dx(random_vector<double>(n, 9));
            std::vector<double> hx = dx.host();
            double s = B::sum(c, static_cast<const double*>(dx.data()), n), r = ref::sum(rc, hx.data(), n);
            KT_REQUIRE_CLOSE(std::vector<double>{s}, std::vector<double>{r});
        }
    }
    // argmax_rows, with ties (first one wins)
    for (std::size_t cols : {std::size_t(1), std::size_t(10), std::size_t(37)}) {
        std::size_t rows = 33;
        auto x = random_vector<float>(rows * cols, 3);
        for (std::size_t r = 0; r < rows; r += 3) x[r * cols + cols / 2] = x[r * cols] = 5.0f;
        std::vector<std::int32_t> want(rows);
        ref::argmax_rows(rc, x.data(), want.data(), rows, cols);
        dev<B, float> dx(x);
        dev<B, std::int32_t> di(rows);
        B::argmax_rows(c, static_cast<const float*>(dx.data()), di.data(), rows, cols);
        REQUIRE(di.host() == want);
    }
    // for_each_index with a device-callable functor
    {
        std::size_t n = 777;
        dev<B, float> d(n);
        float* p = d.data();
        B::for_each_index(c, n, KOKKOS_LAMBDA(std::size_t i) { p[i] = static_cast<float>(i) * 0.5f; });
        auto h = d.host();
        for (std::size_t i = 0; i < n; ++i) REQUIRE(h[i] == static_cast<float>(i) * 0.5f);
    }
}

KOKKOS_SPACES_TEST("kokkos channel bias kernels match the reference", "[kokkos][bias]") {
    using B = lm::kokkos_backend<TestType>;
    typename B::context c;
    ref::context rc;
    struct dims { std::size_t outer, channels, inner; };
    for (auto d : {dims{64, 10, 1}, dims{3, 6, 576}, dims{5, 1, 7}, dims{1, 33, 2}}) {
        std::size_t n = d.outer * d.channels * d.inner;
        auto y = random_vector<float>(n, 4), b = random_vector<float>(d.channels, 5);
        auto r = y;
        ref::add_channel_bias(rc, r.data(), b.data(), d.outer, d.channels, d.inner);
        dev<B, float> dy(y), db(b);
        B::add_channel_bias(c, dy.data(), static_cast<const float*>(db.data()), d.outer, d.channels, d.inner);
        KT_REQUIRE_CLOSE(dy.host(), r);

        std::vector<float> rg(d.channels);
        ref::channel_bias_grad(rc, y.data(), rg.data(), d.outer, d.channels, d.inner);
        dev<B, float> dy2(y), dg(random_vector<float>(d.channels, 6));  // overwritten
        B::channel_bias_grad(c, static_cast<const float*>(dy2.data()), dg.data(), d.outer, d.channels, d.inner);
        KT_REQUIRE_CLOSE(dg.host(), rg);
    }
}

KOKKOS_SPACES_TEST("kokkos tiled GEMM and fused epilogue match the reference", "[kokkos][gemm]") {
    using B = lm::kokkos_backend<TestType>;
    typename B::context c;
    ref::context rc;
    struct dims { std::size_t m, n, k; };
    const lm::activation acts[] = {{lm::activation_kind::identity, 0}, {lm::activation_kind::relu, 0},
                                   {lm::activation_kind::leaky_relu, 0.1}, {lm::activation_kind::sigmoid, 0},
                                   {lm::activation_kind::tanh, 0}, {lm::activation_kind::gelu, 0}};
    int round = 0;
    for (auto d : {dims{1, 1, 1}, dims{7, 5, 3}, dims{64, 10, 84}, dims{33, 65, 97}, dims{100, 31, 1}, dims{5, 40, 0}}) {
        for (auto ta : {lm::transpose::no, lm::transpose::yes})
            for (auto tb : {lm::transpose::no, lm::transpose::yes})
                for (float beta : {0.0f, 0.5f}) {
                    ++round;
                    INFO("M " << d.m << " N " << d.n << " K " << d.k << " ta " << int(ta) << " tb " << int(tb)
                              << " beta " << beta);
                    // leading dimensions larger than needed
                    std::size_t lda = (ta == lm::transpose::no ? d.k : d.m) + 3;
                    std::size_t ldb = (tb == lm::transpose::no ? d.n : d.k) + 2;
                    std::size_t ldc = d.n + 1;
                    std::size_t arows = ta == lm::transpose::no ? d.m : d.k;
                    std::size_t brows = tb == lm::transpose::no ? d.k : d.n;
                    auto A = random_vector<float>(std::max<std::size_t>(arows * lda, 1), 10 + round);
                    auto Bm = random_vector<float>(std::max<std::size_t>(brows * ldb, 1), 20 + round);
                    auto C0 = random_vector<float>(d.m * ldc, 30 + round);
                    if (beta == 0.0f)
                        for (std::size_t i = 0; i < d.m; ++i) C0[i * ldc] = std::nanf("");  // must not be read
                    auto bias = random_vector<float>(d.n, 40 + round);
                    {
                        auto r = C0;
                        ref::gemm(rc, ta, tb, d.m, d.n, d.k, 1.25f, A.data(), lda, Bm.data(), ldb, beta, r.data(), ldc);
                        dev<B, float> da(A), db(Bm), dc(C0);
                        B::gemm(c, ta, tb, d.m, d.n, d.k, 1.25f, static_cast<const float*>(da.data()), lda,
                                static_cast<const float*>(db.data()), ldb, beta, dc.data(), ldc);
                        KT_REQUIRE_CLOSE(dc.host(), r);
                    }
                    const auto& act = acts[round % 6];
                    for (bool with_bias : {false, true}) {
                        auto r = C0;
                        ref::gemm_bias_act(rc, ta, tb, d.m, d.n, d.k, 0.75f, A.data(), lda, Bm.data(), ldb, beta, r.data(),
                                           ldc, with_bias ? bias.data() : nullptr, act);
                        dev<B, float> da(A), db(Bm), dc(C0), dbias(bias);
                        B::gemm_bias_act(c, ta, tb, d.m, d.n, d.k, 0.75f, static_cast<const float*>(da.data()), lda,
                                         static_cast<const float*>(db.data()), ldb, beta, dc.data(), ldc,
                                         with_bias ? static_cast<const float*>(dbias.data()) : nullptr, act);
                        KT_REQUIRE_CLOSE(dc.host(), r);
                    }
                }
    }
    // double precision
    {
        std::size_t m = 45, n = 37, k = 70;
        auto A = random_vector<double>(m * k, 1), Bm = random_vector<double>(k * n, 2);
        std::vector<double> r(m * n);
        ref::gemm(rc, lm::transpose::no, lm::transpose::no, m, n, k, 1.0, A.data(), k, Bm.data(), n, 0.0, r.data(), n);
        dev<B, double> da(A), db(Bm), dc(m * n);
        B::gemm(c, lm::transpose::no, lm::transpose::no, m, n, k, 1.0, static_cast<const double*>(da.data()), k,
                static_cast<const double*>(db.data()), n, 0.0, dc.data(), n);
        KT_REQUIRE_CLOSE(dc.host(), r);
    }
}

// Awkward sizes for the packed host GEMM (host_space_gemm.hpp): edges of the 6 x 16 micro-tile,
// several M / N blocks and several reduction slices (beta applied once, epilogue once).
KOKKOS_SPACES_TEST("kokkos GEMM at awkward sizes matches the reference", "[kokkos][gemm]") {
    using B = lm::kokkos_backend<TestType>;
    typename B::context c;
    ref::context rc;
    struct dims { std::size_t m, n, k; bool all; };
    int round = 0;
    for (auto d : {dims{1, 17, 7, true}, dims{17, 1, 255, true}, dims{7, 255, 17, true}, dims{255, 7, 600, true},
                   dims{97, 385, 257, true}, dims{1000, 17, 1, true}, dims{1, 1000, 300, true},
                   dims{200, 1001, 513, false}, dims{513, 100, 1025, false}}) {
        for (auto ta : {lm::transpose::no, lm::transpose::yes})
            for (auto tb : {lm::transpose::no, lm::transpose::yes})
                for (float beta : {0.0f, -0.5f}) {
                    ++round;
                    if (!d.all && (ta != tb || beta != 0.0f)) continue;  // the large ones: fewer combinations
                    INFO("M " << d.m << " N " << d.n << " K " << d.k << " ta " << int(ta) << " tb " << int(tb)
                              << " beta " << beta);
                    std::size_t lda = (ta == lm::transpose::no ? d.k : d.m) + 1;
                    std::size_t ldb = (tb == lm::transpose::no ? d.n : d.k) + 3;
                    std::size_t ldc = d.n + 2;
                    std::size_t arows = ta == lm::transpose::no ? d.m : d.k;
                    std::size_t brows = tb == lm::transpose::no ? d.k : d.n;
                    auto A = random_vector<float>(arows * lda, 110 + round);
                    auto Bm = random_vector<float>(brows * ldb, 120 + round);
                    auto C0 = random_vector<float>(d.m * ldc, 130 + round);
                    if (beta == 0.0f)
                        for (std::size_t i = 0; i < d.m; ++i) C0[i * ldc + d.n - 1] = std::nanf("");  // never read
                    auto bias = random_vector<float>(d.n, 140 + round);
                    // activations that keep the pre-activation's scale (the tolerance is relative to max|ref|)
                    lm::activation act = round % 2 ? lm::activation{lm::activation_kind::relu, 0}
                                                   : lm::activation{lm::activation_kind::leaky_relu, 0.1};
                    {
                        auto r = C0;
                        ref::gemm(rc, ta, tb, d.m, d.n, d.k, -0.75f, A.data(), lda, Bm.data(), ldb, beta, r.data(), ldc);
                        dev<B, float> da(A), db(Bm), dc(C0);
                        B::gemm(c, ta, tb, d.m, d.n, d.k, -0.75f, static_cast<const float*>(da.data()), lda,
                                static_cast<const float*>(db.data()), ldb, beta, dc.data(), ldc);
                        KT_REQUIRE_CLOSE(dc.host(), r);
                    }
                    {
                        auto r = C0;
                        ref::gemm_bias_act(rc, ta, tb, d.m, d.n, d.k, 1.5f, A.data(), lda, Bm.data(), ldb, beta, r.data(),
                                           ldc, bias.data(), act);
                        dev<B, float> da(A), db(Bm), dc(C0), dbias(bias);
                        B::gemm_bias_act(c, ta, tb, d.m, d.n, d.k, 1.5f, static_cast<const float*>(da.data()), lda,
                                         static_cast<const float*>(db.data()), ldb, beta, dc.data(), ldc,
                                         static_cast<const float*>(dbias.data()), act);
                        KT_REQUIRE_CLOSE(dc.host(), r);
                    }
                }
    }
    // double precision, every transpose, several reduction slices
    for (auto ta : {lm::transpose::no, lm::transpose::yes})
        for (auto tb : {lm::transpose::no, lm::transpose::yes}) {
            std::size_t m = 31, n = 19, k = 700;
            auto A = random_vector<double>(m * k, 3), Bm = random_vector<double>(k * n, 4), C0 = random_vector<double>(m * n, 5);
            auto r = C0;
            std::size_t lda = ta == lm::transpose::no ? k : m, ldb = tb == lm::transpose::no ? n : k;
            ref::gemm(rc, ta, tb, m, n, k, 0.5, A.data(), lda, Bm.data(), ldb, 2.0, r.data(), n);
            dev<B, double> da(A), db(Bm), dc(C0);
            B::gemm(c, ta, tb, m, n, k, 0.5, static_cast<const double*>(da.data()), lda,
                    static_cast<const double*>(db.data()), ldb, 2.0, dc.data(), n);
            KT_REQUIRE_CLOSE(dc.host(), r);
        }
}

KOKKOS_SPACES_TEST("kokkos activations and softmax match the reference", "[kokkos][activation]") {
    using B = lm::kokkos_backend<TestType>;
    typename B::context c;
    ref::context rc;
    std::size_t n = 3001;
    auto x = random_vector<float>(n, 7, -4, 4), dy = random_vector<float>(n, 8);
    for (auto k : {lm::activation_kind::identity, lm::activation_kind::relu, lm::activation_kind::leaky_relu,
                   lm::activation_kind::sigmoid, lm::activation_kind::tanh, lm::activation_kind::gelu}) {
        INFO(lm::to_string(k));
        lm::activation a{k, 0.01};
        std::vector<float> ry(n), rdx(n);
        ref::activation_forward(rc, a, x.data(), ry.data(), n);
        ref::activation_backward(rc, a, x.data(), ry.data(), dy.data(), rdx.data(), n);
        dev<B, float> dx(x), dyv(n), ddy(dy), ddx(n);
        B::activation_forward(c, a, static_cast<const float*>(dx.data()), dyv.data(), n);
        KT_REQUIRE_CLOSE(dyv.host(), ry);
        B::activation_backward(c, a, static_cast<const float*>(dx.data()), static_cast<const float*>(dyv.data()),
                               static_cast<const float*>(ddy.data()), ddx.data(), n);
        KT_REQUIRE_CLOSE(ddx.host(), rdx);
    }
    for (std::size_t cols : {std::size_t(1), std::size_t(10), std::size_t(300)}) {
        std::size_t rows = 17;
        auto xs = random_vector<float>(rows * cols, 11, -6, 6), g = random_vector<float>(rows * cols, 12);
        std::vector<float> ry(rows * cols), rdx(rows * cols);
        ref::softmax_forward(rc, xs.data(), ry.data(), rows, cols);
        ref::softmax_backward(rc, ry.data(), g.data(), rdx.data(), rows, cols);
        dev<B, float> dx(xs), dyv(rows * cols), dg(g), ddx(rows * cols);
        B::softmax_forward(c, static_cast<const float*>(dx.data()), dyv.data(), rows, cols);
        KT_REQUIRE_CLOSE(dyv.host(), ry);
        B::softmax_backward(c, static_cast<const float*>(dyv.data()), static_cast<const float*>(dg.data()), ddx.data(),
                            rows, cols);
        KT_REQUIRE_CLOSE(ddx.host(), rdx);
    }
}

KOKKOS_SPACES_TEST("kokkos losses match the reference", "[kokkos][loss]") {
    using B = lm::kokkos_backend<TestType>;
    typename B::context c;
    ref::context rc;
    std::size_t rows = 37, cols = 10;
    auto logits = random_vector<float>(rows * cols, 13, -5, 5), target = random_vector<float>(rows * cols, 14);
    std::vector<float> labels(rows);
    for (std::size_t r = 0; r < rows; ++r) labels[r] = static_cast<float>((r * 7) % cols);
    for (float smoothing : {0.0f, 0.1f}) {
        std::vector<float> rg(rows * cols), rl(rows);
        ref::softmax_cross_entropy(rc, logits.data(), labels.data(), rg.data(), rl.data(), rows, cols, smoothing,
                                   1.0f / rows);
        dev<B, float> dl(logits), dlab(labels), dg(rows * cols), dloss(rows);
        B::softmax_cross_entropy(c, static_cast<const float*>(dl.data()), static_cast<const float*>(dlab.data()), dg.data(),
                                 dloss.data(), rows, cols, smoothing, 1.0f / rows);
        KT_REQUIRE_CLOSE(dg.host(), rg);
        KT_REQUIRE_CLOSE(dloss.host(), rl);
    }
    auto pred = logits;
    pred[3] = target[3];  // the zero subgradient of MAE
    {
        std::vector<float> rg(rows * cols), rl(rows);
        ref::mse(rc, pred.data(), target.data(), rg.data(), rl.data(), rows, cols, 0.5f);
        dev<B, float> dp(pred), dt(target), dg(rows * cols), dloss(rows);
        B::mse(c, static_cast<const float*>(dp.data()), static_cast<const float*>(dt.data()), dg.data(), dloss.data(), rows,
               cols, 0.5f);
        KT_REQUIRE_CLOSE(dg.host(), rg);
        KT_REQUIRE_CLOSE(dloss.host(), rl);
    }
    {
        std::vector<float> rg(rows * cols), rl(rows);
        ref::mae(rc, pred.data(), target.data(), rg.data(), rl.data(), rows, cols, 0.5f);
        dev<B, float> dp(pred), dt(target), dg(rows * cols), dloss(rows);
        B::mae(c, static_cast<const float*>(dp.data()), static_cast<const float*>(dt.data()), dg.data(), dloss.data(), rows,
               cols, 0.5f);
        KT_REQUIRE_CLOSE(dg.host(), rg);
        KT_REQUIRE_CLOSE(dloss.host(), rl);
    }
}

namespace {
lm::pool_geometry pool(std::size_t n, std::size_t ch, std::size_t h, std::size_t w, std::size_t k, std::size_t s,
                       std::size_t p) {
    lm::pool_geometry g;
    g.n = n; g.c = ch; g.h = h; g.w = w; g.kh = g.kw = k; g.stride_h = g.stride_w = s; g.pad_h = g.pad_w = p;
    g.p = (h + 2 * p - k) / s + 1;
    g.q = (w + 2 * p - k) / s + 1;
    return g;
}
lm::conv_geometry conv(std::size_t n, std::size_t ch, std::size_t h, std::size_t w, std::size_t k, std::size_t r,
                       std::size_t s, std::size_t pad) {
    lm::conv_geometry g;
    g.n = n; g.c = ch; g.h = h; g.w = w; g.k = k; g.r = g.s = r; g.stride_h = g.stride_w = s; g.pad_h = g.pad_w = pad;
    g.p = lm::conv_geometry::out_extent(h, r, s, pad);
    g.q = lm::conv_geometry::out_extent(w, r, s, pad);
    return g;
}
}  // namespace

KOKKOS_SPACES_TEST("kokkos pooling matches the reference", "[kokkos][pooling]") {
    using B = lm::kokkos_backend<TestType>;
    typename B::context c;
    ref::context rc;
    for (auto g : {pool(4, 6, 24, 24, 2, 2, 0), pool(2, 3, 7, 9, 3, 2, 1), pool(3, 2, 8, 8, 3, 1, 1),
                   pool(1, 1, 5, 5, 5, 1, 2), pool(2, 4, 10, 6, 2, 3, 0),
                   pool(2, 3, 9, 40, 3, 2, 1), pool(1, 2, 6, 37, 2, 1, 1),  // wide rows: 8 outputs at a time
                   pool(3, 2, 7, 9, 2, 2, 0), pool(2, 2, 8, 8, 2, 2, 0)}) {  // 2x2/2 path, odd sizes
      for (bool ties : {false, true}) {
        INFO("h " << g.h << " w " << g.w << " k " << g.kh << " s " << g.stride_h << " p " << g.pad_h << " ties "
                  << ties);
        auto x = random_vector<float>(g.input_size(), 15), dy = random_vector<float>(g.output_size(), 16);
        // Ties: values on a coarse grid, so windows hold equal maxima and the first one must win.
        if (ties)
            for (auto& v : x) v = std::round(v * 2.0f) / 2.0f;
        std::vector<float> ry(g.output_size()), rdx(g.input_size());
        std::vector<std::int32_t> ridx(g.output_size());
        ref::max_pool_forward(rc, g, x.data(), ry.data(), ridx.data());
        ref::max_pool_backward(rc, g, dy.data(), ridx.data(), rdx.data());
        dev<B, float> dx(x), dyv(g.output_size()), ddy(dy), ddx(random_vector<float>(g.input_size(), 99));
        dev<B, std::int32_t> didx(g.output_size());
        B::max_pool_forward(c, g, static_cast<const float*>(dx.data()), dyv.data(), didx.data());
        REQUIRE(dyv.host() == ry);
        REQUIRE(didx.host() == ridx);
        dev<B, float> dyv2(g.output_size());
        B::max_pool_forward(c, g, static_cast<const float*>(dx.data()), dyv2.data(), static_cast<std::int32_t*>(nullptr));
        REQUIRE(dyv2.host() == ry);
        B::max_pool_backward(c, g, static_cast<const float*>(ddy.data()), static_cast<const std::int32_t*>(didx.data()),
                             ddx.data());
        KT_REQUIRE_CLOSE(ddx.host(), rdx);

        std::vector<float> ay(g.output_size()), adx(g.input_size());
        ref::avg_pool_forward(rc, g, x.data(), ay.data());
        ref::avg_pool_backward(rc, g, dy.data(), adx.data());
        dev<B, float> day(g.output_size()), dadx(random_vector<float>(g.input_size(), 98));
        B::avg_pool_forward(c, g, static_cast<const float*>(dx.data()), day.data());
        KT_REQUIRE_CLOSE(day.host(), ay);
        B::avg_pool_backward(c, g, static_cast<const float*>(ddy.data()), dadx.data());
        KT_REQUIRE_CLOSE(dadx.host(), adx);
      }
    }
}

KOKKOS_SPACES_TEST("kokkos convolution matches the reference", "[kokkos][conv]") {
    using B = lm::kokkos_backend<TestType>;
    typename B::context c;
    ref::context rc;
    for (auto g : {conv(4, 1, 28, 28, 6, 5, 1, 0), conv(3, 6, 12, 12, 16, 5, 1, 0), conv(2, 3, 9, 7, 4, 3, 2, 1),
                   conv(2, 2, 6, 6, 3, 3, 1, 2), conv(1, 5, 8, 8, 7, 1, 1, 0), conv(2, 3, 11, 11, 2, 4, 3, 1),
                   conv(2, 2, 12, 12, 3, 8, 1, 3), conv(1, 3, 40, 21, 2, 3, 1, 1),
                   // odd shapes for the host implicit GEMM: 7x7 stride 2, 1x1 stride 2, more output
                   // channels than one M block, C*R*S over one reduction slice, rows longer than a panel
                   conv(2, 3, 17, 15, 5, 7, 2, 3), conv(3, 4, 9, 10, 7, 1, 2, 0), conv(1, 2, 9, 9, 100, 3, 1, 1),
                   conv(2, 30, 10, 10, 8, 3, 1, 1), conv(2, 1, 5, 37, 3, 3, 1, 1), conv(1, 3, 6, 6, 2, 6, 3, 2)}) {
        INFO("n " << g.n << " c " << g.c << " h " << g.h << " k " << g.k << " r " << g.r << " stride " << g.stride_h
                  << " pad " << g.pad_h);
        REQUIRE(B::template conv2d_workspace<float>(g) == 0);
        auto x = random_vector<float>(g.input_size(), 17), w = random_vector<float>(g.weight_size(), 18);
        auto b = random_vector<float>(g.k, 19), dy = random_vector<float>(g.output_size(), 20);
        for (bool with_bias : {false, true}) {
            std::vector<float> ry(g.output_size());
            ref::conv2d_forward(rc, g, x.data(), w.data(), with_bias ? b.data() : nullptr, ry.data(), static_cast<float*>(nullptr));
            dev<B, float> dx(x), dw(w), db(b), dyv(g.output_size());
            B::conv2d_forward(c, g, static_cast<const float*>(dx.data()), static_cast<const float*>(dw.data()),
                              with_bias ? static_cast<const float*>(db.data()) : nullptr, dyv.data(),
                              static_cast<float*>(nullptr));
            KT_REQUIRE_CLOSE(dyv.host(), ry);
        }
        std::vector<float> rdx(g.input_size()), rdw(g.weight_size()), rdb(g.k);
        ref::conv2d_backward_data(rc, g, dy.data(), w.data(), rdx.data(), static_cast<float*>(nullptr));
        ref::conv2d_backward_weights(rc, g, x.data(), dy.data(), rdw.data(), rdb.data(), static_cast<float*>(nullptr));
        dev<B, float> dx(x), dw(w), ddy(dy), ddx(random_vector<float>(g.input_size(), 97)),
            ddw(random_vector<float>(g.weight_size(), 96)), ddb(random_vector<float>(g.k, 95));
        B::conv2d_backward_data(c, g, static_cast<const float*>(ddy.data()), static_cast<const float*>(dw.data()),
                                ddx.data(), static_cast<float*>(nullptr));
        KT_REQUIRE_CLOSE(ddx.host(), rdx);
        B::conv2d_backward_weights(c, g, static_cast<const float*>(dx.data()), static_cast<const float*>(ddy.data()),
                                   ddw.data(), ddb.data(), static_cast<float*>(nullptr));
        KT_REQUIRE_CLOSE(ddw.host(), rdw);
        KT_REQUIRE_CLOSE(ddb.host(), rdb);
        dev<B, float> ddw2(g.weight_size());
        B::conv2d_backward_weights(c, g, static_cast<const float*>(dx.data()), static_cast<const float*>(ddy.data()),
                                   ddw2.data(), static_cast<float*>(nullptr), static_cast<float*>(nullptr));
        KT_REQUIRE_CLOSE(ddw2.host(), rdw);
    }
}

KOKKOS_SPACES_TEST("kokkos dropout draws the reference's mask", "[kokkos][dropout]") {
    using B = lm::kokkos_backend<TestType>;
    typename B::context c;
    ref::context rc;
    std::size_t n = 10007;
    auto x = random_vector<float>(n, 21);
    for (float p : {0.1f, 0.5f, 0.9f}) {
        lm::random_stream s = lm::random_stream{42, 3}.child(7);
        std::vector<float> ry(n), rm(n);
        ref::dropout_forward(rc, x.data(), ry.data(), rm.data(), n, p, s);
        dev<B, float> dx(x), dyv(n), dm(n);
        B::dropout_forward(c, static_cast<const float*>(dx.data()), dyv.data(), dm.data(), n, p, s);
        REQUIRE(dm.host() == rm);  // bit-identical mask
        KT_REQUIRE_CLOSE(dyv.host(), ry);
    }
}

KOKKOS_SPACES_TEST("kokkos optimizer updates match the reference", "[kokkos][optimizer]") {
    using B = lm::kokkos_backend<TestType>;
    typename B::context c;
    ref::context rc;
    std::size_t n = 2049;
    auto w0 = random_vector<float>(n, 22), g = random_vector<float>(n, 23), v0 = random_vector<float>(n, 24);
    auto m0 = random_vector<float>(n, 25), s0 = random_vector<float>(n, 26, 0, 1);
    for (float momentum : {0.0f, 0.9f})
        for (bool nesterov : {false, true})
            for (float wd : {0.0f, 5e-4f}) {
                lm::sgd_step<float> st;
                st.lr = 0.05f; st.momentum = momentum; st.nesterov = nesterov; st.weight_decay = wd;
                auto rw = w0, rv = v0;
                dev<B, float> dw(w0), dg(g), dv(v0);
                for (int step = 0; step < 3; ++step) {
                    ref::sgd_update(rc, rw.data(), g.data(), rv.data(), n, st);
                    B::sgd_update(c, dw.data(), static_cast<const float*>(dg.data()), dv.data(), n, st);
                }
                KT_REQUIRE_CLOSE(dw.host(), rw);
                KT_REQUIRE_CLOSE(dv.host(), rv);
            }
    for (bool decoupled : {false, true}) {
        lm::adam_step<float> st;
        st.lr = 1e-3f; st.weight_decay = 1e-2f; st.decoupled = decoupled;
        st.bias_correction1 = 1 - 0.9f * 0.9f; st.bias_correction2 = 1 - 0.999f * 0.999f;
        auto rw = w0, rm = m0, rv = s0;
        dev<B, float> dw(w0), dg(g), dm(m0), dv(s0);
        for (int step = 0; step < 3; ++step) {
            ref::adam_update(rc, rw.data(), g.data(), rm.data(), rv.data(), n, st);
            B::adam_update(c, dw.data(), static_cast<const float*>(dg.data()), dm.data(), dv.data(), n, st);
        }
        KT_REQUIRE_CLOSE(dw.host(), rw);
        KT_REQUIRE_CLOSE(dm.host(), rm);
        KT_REQUIRE_CLOSE(dv.host(), rv);
    }
}

KOKKOS_SPACES_TEST("kokkos buffers are zeroed, movable views and upload/download round-trip", "[kokkos][buffer]") {
    using B = lm::kokkos_backend<TestType>;
    static_assert(!B::host_accessible, "Kokkos memory is handled as device memory");
    typename B::context c;
    CHECK(c.thread_count() >= 1);
    typename B::template buffer<float> a(100);
    REQUIRE(a.size() == 100);
    std::vector<float> h(100, 1.0f);
    B::download(c, h.data(), a.data(), 100);
    REQUIRE(h == std::vector<float>(100, 0.0f));
    auto x = random_vector<float>(100, 1);
    B::upload(c, a.data(), x.data(), 100);
    typename B::template buffer<float> b(std::move(a));
    REQUIRE(a.size() == 0);
    REQUIRE(a.data() == nullptr);
    B::download(c, h.data(), b.data(), 100);
    REQUIRE(h == x);
    std::vector<typename B::template buffer<float>> many;
    for (int i = 0; i < 5; ++i) many.emplace_back(10);
    REQUIRE(many[4].size() == 10);
}
