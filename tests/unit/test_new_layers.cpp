// layer_norm, gaussian_noise, upsample_nearest and zero_pad2d: gradient checks (central
// differences against each layer's backward, alone and inside chains and residuals that make
// the model alias or accumulate their gradients), forward values against naive loops and
// hand-computed examples, and the noise's statistics. The device-callable normal draw of
// core/philox.hpp is checked against the host one. Every backend of lamina::test::backends.
// (vae_sampling and the BCE loss: tests/unit/test_vae_bce.cpp.)
#include <catch2/catch.hpp>

#include "gradient_check.hpp"

#include <lamina/layers/activations.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/layers/dense.hpp>
#include <lamina/layers/gaussian_noise.hpp>
#include <lamina/layers/layer_norm.hpp>
#include <lamina/layers/upsample.hpp>
#include <lamina/layers/zero_pad.hpp>
#include <lamina/network/composites.hpp>
#include <lamina/network/sequential.hpp>

#include <cmath>
#include <limits>
#include <ratio>
#include <string>
#include <type_traits>
#include <vector>

namespace la = lamina;
namespace lt = lamina::test;
using vec = std::vector<double>;

namespace {

// ---- helpers (as in tests/unit/test_layer_gradients.cpp) -----------------------------------

template <class L, class In, class Backend>
void require_gradients(lt::gradient_check_options o = {}) {
    auto r = lt::check_layer_gradients<L, In, Backend>(o);
    INFO(L::name() << " on " << In::str() << ", batch " << o.batch << ", backend " << Backend::name << ": "
                   << r.describe());
    CHECK(r.ok());
    CHECK(r.checked > 0);
    CHECK(r.max_abs_dx > 1e-3);  // not vacuous
}

template <class In, class Backend, class... Layers>
void require_chain_gradients(lt::gradient_check_options o = {}) {
    auto r = lt::check_chain_gradients<In, Backend, Layers...>(o);
    std::string names;
    ((names += Layers::name() + " "), ...);
    INFO("chain " << names << "on " << In::str() << ", backend " << Backend::name << ": " << r.describe());
    CHECK(r.ok());
    CHECK(r.max_abs_dx > 1e-3);
}

double max_abs_diff(const vec& a, const vec& b) {
    if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        double d = std::abs(a[i] - b[i]);
        if (!(d <= m)) m = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
    }
    return m;
}

/// Forward (inference and training) of layer L on random x and params vs `naive(x, w, batch)`.
template <class L, class In, class Backend, class Naive>
void check_forward(Naive naive, std::size_t batch = 2) {
    using harness = lt::node_harness<L, In, Backend>;
    harness h(batch);
    la::random_stream s{99, 7};
    vec w = lt::uniform_vector(harness::parameter_count, s.child(1), -1, 1);
    vec x = lt::random_vector(batch * In::size, s.child(2));
    h.set_params(w);
    vec expected = naive(x, w, batch);
    INFO(L::name() << " on " << In::str() << ", backend " << Backend::name);
    CHECK(max_abs_diff(h.forward(x), expected) < 1e-12);
    CHECK(max_abs_diff(h.forward_train(x, 0), expected) < 1e-12);
}

/// Training forward then backward of one node on given values: {y, dx}.
template <class L, class In, class Backend>
std::pair<vec, vec> run_node(const vec& x, const vec& dy, std::size_t batch) {
    lt::node_harness<L, In, Backend> h(batch);
    vec y = h.forward_train(x, 3);
    vec dx = h.backward(dy);
    return {y, dx};
}

vec iota(std::size_t n, double first = 1) {
    vec v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = first + static_cast<double>(i);
    return v;
}

// ---- naive reference computations, written independently of lamina's kernels --------------

/// PyTorch LayerNorm over D features per sample: w = gamma[D], beta[D].
vec naive_layer_norm(const vec& x, const vec& w, std::size_t N, std::size_t D, double eps = 1e-5) {
    vec y(x.size());
    for (std::size_t n = 0; n < N; ++n) {
        double mean = 0, var = 0;
        for (std::size_t j = 0; j < D; ++j) mean += x[n * D + j];
        mean /= static_cast<double>(D);
        for (std::size_t j = 0; j < D; ++j) var += (x[n * D + j] - mean) * (x[n * D + j] - mean);
        var /= static_cast<double>(D);  // biased, as PyTorch
        for (std::size_t j = 0; j < D; ++j)
            y[n * D + j] = (x[n * D + j] - mean) / std::sqrt(var + eps) * w[j] + w[D + j];
    }
    return y;
}

/// Nearest upsampling of N*C planes of H x W by F.
vec naive_upsample(const vec& x, std::size_t NC, std::size_t H, std::size_t W, std::size_t F) {
    vec y(NC * H * F * W * F);
    for (std::size_t p = 0; p < NC; ++p)
        for (std::size_t i = 0; i < H * F; ++i)
            for (std::size_t j = 0; j < W * F; ++j) y[(p * H * F + i) * W * F + j] = x[(p * H + i / F) * W + j / F];
    return y;
}

/// Zero padding of N*C planes of H x W.
vec naive_pad(const vec& x, std::size_t NC, std::size_t H, std::size_t W, std::size_t t, std::size_t b, std::size_t l,
              std::size_t r) {
    const std::size_t OH = H + t + b, OW = W + l + r;
    vec y(NC * OH * OW, 0.0);
    for (std::size_t p = 0; p < NC; ++p)
        for (std::size_t i = 0; i < H; ++i)
            for (std::size_t j = 0; j < W; ++j) y[(p * OH + i + t) * OW + j + l] = x[(p * H + i) * W + j];
    return y;
}

struct moments {
    double mean = 0, var = 0, within_one_sd = 0;  // fraction of |v - mean| < sd
};
moments moments_of(const vec& v, double sd) {
    moments m;
    for (double a : v) m.mean += a;
    m.mean /= static_cast<double>(v.size());
    for (double a : v) {
        m.var += (a - m.mean) * (a - m.mean);
        if (std::abs(a - m.mean) < sd) m.within_one_sd += 1;
    }
    m.var /= static_cast<double>(v.size());
    m.within_one_sd /= static_cast<double>(v.size());
    return m;
}

}  // namespace

// ================================================================================================
// core/philox.hpp: the device-callable normal draw
// ================================================================================================

TEST_CASE("random_stream::gaussian equals the host normal() and is standard normal", "[rng][gaussian]") {
    la::random_stream s{42, 9};
    vec v(20000);
    for (std::size_t i = 0; i < v.size(); ++i) {
        v[i] = s.gaussian(i);
        if (i < 2000) REQUIRE(v[i] == s.normal(i));  // bit-identical on the host
    }
    auto m = moments_of(v, 1.0);
    // 20000 draws: the mean's sd is 0.007, the variance's 0.01; bounds at about 5 sd
    CHECK(std::abs(m.mean) < 0.035);
    CHECK(std::abs(m.var - 1.0) < 0.05);
    CHECK(std::abs(m.within_one_sd - 0.6827) < 0.02);  // a normal, not a uniform (0.577) or worse
}

// ================================================================================================
// layer_norm
// ================================================================================================

TEMPLATE_LIST_TEST_CASE("layer_norm: gradients on images and vectors", "[layers][layer_norm][gradient]",
                        lt::backends) {
    using B = TestType;
    lt::gradient_check_options o;
    o.batch = 3;
    require_gradients<la::layer_norm, la::shape<3, 4, 5>, B>(o);
    require_gradients<la::layer_norm, la::shape<37>, B>(o);
    o.batch = 1;
    require_gradients<la::layer_norm_t<std::ratio<1, 10>>, la::shape<2, 3, 3>, B>(o);
    // in chains: dense's output gradient aliased by layer_norm's (in-place backward), and a
    // residual whose join makes layer_norm ADD into its input gradient
    o.batch = 2;
    require_chain_gradients<la::shape<7>, B, la::dense<12>, la::layer_norm, la::tanh, la::dense<5>>(o);
    require_chain_gradients<la::shape<2, 3, 4>, B, la::residual<la::layer_norm>, la::layer_norm>(o);
}

TEMPLATE_LIST_TEST_CASE("layer_norm: forward against a naive computation", "[layers][layer_norm]", lt::backends) {
    using B = TestType;
    check_forward<la::layer_norm, la::shape<3, 4, 5>, B>(
        [](const vec& x, const vec& w, std::size_t n) { return naive_layer_norm(x, w, n, 60); }, 3);
    check_forward<la::layer_norm, la::shape<37>, B>(
        [](const vec& x, const vec& w, std::size_t n) { return naive_layer_norm(x, w, n, 37); }, 2);
    check_forward<la::layer_norm_t<std::ratio<1, 2>>, la::shape<5>, B>(
        [](const vec& x, const vec& w, std::size_t n) { return naive_layer_norm(x, w, n, 5, 0.5); }, 4);
}

TEMPLATE_LIST_TEST_CASE("layer_norm: a hand-computed sample, initial gamma/beta, no weight decay",
                        "[layers][layer_norm]", lt::backends) {
    using B = TestType;
    lt::node_harness<la::layer_norm, la::shape<4>, B> h(2);
    // gamma starts at 1 and beta at 0
    CHECK(h.params() == vec{1, 1, 1, 1, 0, 0, 0, 0});
    for (const auto& s : h.parameter_specs()) CHECK_FALSE(s.decay);
    // x = 1 2 3 4: mean 2.5, biased variance 1.25, y = (x - 2.5) / sqrt(1.25 + 1e-5);
    // the second sample (x + 10) * 3: mean 37.5, variance 11.25, y = (x - 37.5) / sqrt(11.25 + 1e-5)
    // (eps weighs less at the larger variance: the values differ from the first sample's in the 6th digit)
    vec x{1, 2, 3, 4, 33, 36, 39, 42};
    vec want{-1.3416354199689269, -0.447211806656309, 0.447211806656309, 1.3416354199689269};
    vec want2{-1.3416401902154773, -0.4472133967384924, 0.4472133967384924, 1.3416401902154773};
    vec y = h.forward(x);
    for (std::size_t j = 0; j < 4; ++j) {
        CHECK(y[j] == Approx(want[j]).epsilon(1e-12));
        CHECK(y[4 + j] == Approx(want2[j]).epsilon(1e-12));
        CHECK(std::abs(y[4 + j] - want[j]) > 1e-6);
    }
    // A constant upstream gradient with gamma = 1: dbeta[j] = batch, dgamma[j] = the sum of the
    // samples' x-hat[j], and dx = 0 (shifting a sample does not move its normalised output).
    h.forward_train(x, 0);
    vec dx = h.backward(vec(8, 1.0));
    vec g = h.param_grads();
    for (std::size_t j = 0; j < 4; ++j) {
        CHECK(g[4 + j] == Approx(2.0));
        CHECK(g[j] == Approx(want[j] + want2[j]).epsilon(1e-12));
    }
    CHECK(max_abs_diff(dx, vec(8, 0.0)) < 1e-12);
    // gamma = (1, 2, 3, 4), beta = (0, 0, 0, 1): y = x-hat * gamma + beta
    h.set_params({1, 2, 3, 4, 0, 0, 0, 1});
    y = h.forward_train(x, 0);
    CHECK(y[1] == Approx(2 * want[1]).epsilon(1e-12));
    CHECK(y[3] == Approx(4 * want[3] + 1).epsilon(1e-12));
}

// ================================================================================================
// gaussian_noise
// ================================================================================================

using noise = la::gaussian_noise<std::ratio<1, 2>>;  // sigma 0.5

TEMPLATE_LIST_TEST_CASE("gaussian_noise: gradients with a fixed step", "[layers][gaussian_noise][gradient]",
                        lt::backends) {
    using B = TestType;
    lt::gradient_check_options o;
    o.batch = 3;
    o.step = 11;
    o.inference_matches_train = false;  // inference adds no noise
    require_gradients<noise, la::shape<2, 5, 7>, B>(o);
    require_gradients<noise, la::shape<37>, B>(o);
    // in place over dense's output, its gradient aliased to the next dense's input gradient;
    // inside a residual its input gradient accumulates
    require_chain_gradients<la::shape<7>, B, la::dense<12>, noise, la::dense<5>>(o);
    require_chain_gradients<la::shape<6>, B, la::residual<noise>, la::dense<3>>(o);
}

TEMPLATE_LIST_TEST_CASE("gaussian_noise: N(0, sigma^2) per step and layer, identity at inference",
                        "[layers][gaussian_noise]", lt::backends) {
    using B = TestType;
    constexpr std::size_t batch = 4, n = 2500;
    lt::node_harness<noise, la::shape<n>, B> h(batch);
    const vec zeros(batch * n, 0.0);
    const vec x = lt::random_vector(batch * n, la::random_stream{5, 5});

    const vec n7 = h.forward_train(zeros, 7);
    auto m = moments_of(n7, 0.5);
    // 10000 draws of sd 0.5: the mean's sd is 0.005, the variance's 0.0035; bounds at ~5 sd
    CHECK(std::abs(m.mean) < 0.025);
    CHECK(std::abs(m.var - 0.25) < 0.018);
    CHECK(std::abs(m.within_one_sd - 0.6827) < 0.025);

    // additive and independent of x; the same step gives the same noise, another step other noise
    const vec y7 = h.forward_train(x, 7);
    vec diff(y7.size());
    for (std::size_t i = 0; i < y7.size(); ++i) diff[i] = y7[i] - x[i];
    CHECK(max_abs_diff(diff, n7) < 1e-12);
    CHECK(h.forward_train(zeros, 7) == n7);
    const vec n8 = h.forward_train(zeros, 8);
    std::size_t same = 0;
    double dot = 0;
    for (std::size_t i = 0; i < n7.size(); ++i) {
        same += n7[i] == n8[i];
        dot += n7[i] * n8[i];
    }
    CHECK(same == 0);
    CHECK(std::abs(dot / (0.25 * static_cast<double>(n7.size()))) < 0.05);  // uncorrelated

    // inference: the identity
    CHECK(h.forward(x) == x);

    // the same noise on the reference backend (counter-based: a pure function of seed, layer, step)
    lt::node_harness<noise, la::shape<n>, la::reference> r(batch);
    CHECK(max_abs_diff(r.forward_train(zeros, 7), n7) < 1e-15);

    // two noise layers draw independent noise: the sum's variance is 2 sigma^2 (4 sigma^2 if
    // both drew the same numbers)
    lt::network_harness<la::sequential<la::input<n>, noise, noise>, B> two(batch);
    auto m2 = moments_of(two.forward_train(zeros, 7), std::sqrt(0.5));
    CHECK(std::abs(m2.var - 0.5) < 0.036);
}

// ================================================================================================
// upsample_nearest
// ================================================================================================

TEMPLATE_LIST_TEST_CASE("upsample_nearest: gradients and forward against naive loops", "[layers][upsample][gradient]",
                        lt::backends) {
    using B = TestType;
    STATIC_REQUIRE(std::is_same_v<la::sequential<la::input<2, 3, 4>, la::upsample_nearest<3>>::output_shape,
                                  la::shape<2, 9, 12>>);
    lt::gradient_check_options o;
    o.batch = 2;
    require_gradients<la::upsample_nearest<2>, la::shape<2, 3, 4>, B>(o);
    require_gradients<la::upsample_nearest<3>, la::shape<1, 2, 3>, B>(o);
    require_gradients<la::upsample_nearest<1>, la::shape<2, 2, 2>, B>(o);
    require_chain_gradients<la::shape<2, 5, 5>, B, la::conv2d<3, 3>, la::zero_pad2d<1>, la::upsample_nearest<2>,
                            la::conv2d<2, 3>>(o);
    check_forward<la::upsample_nearest<2>, la::shape<2, 3, 4>, B>(
        [](const vec& x, const vec&, std::size_t n) { return naive_upsample(x, n * 2, 3, 4, 2); }, 3);
    check_forward<la::upsample_nearest<3>, la::shape<3, 2, 5>, B>(
        [](const vec& x, const vec&, std::size_t n) { return naive_upsample(x, n * 3, 2, 5, 3); }, 2);
}

TEMPLATE_LIST_TEST_CASE("upsample_nearest: a hand-computed 2x2 image", "[layers][upsample]", lt::backends) {
    using B = TestType;
    // [1 2; 3 4] -> each pixel a 2x2 block; backward sums each block of dy = 1..16
    auto [y, dx] = run_node<la::upsample_nearest<2>, la::shape<1, 2, 2>, B>({1, 2, 3, 4}, iota(16), 1);
    CHECK(y == vec{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
    CHECK(dx == vec{1 + 2 + 5 + 6, 3 + 4 + 7 + 8, 9 + 10 + 13 + 14, 11 + 12 + 15 + 16});
}

// ================================================================================================
// zero_pad2d
// ================================================================================================

TEMPLATE_LIST_TEST_CASE("zero_pad2d: gradients and forward against naive loops", "[layers][zero_pad][gradient]",
                        lt::backends) {
    using B = TestType;
    using tblr = la::zero_pad2d_tblr<2, 1, 0, 3>;
    STATIC_REQUIRE(std::is_same_v<la::sequential<la::input<3, 4, 5>, tblr>::output_shape, la::shape<3, 7, 8>>);
    STATIC_REQUIRE(std::is_same_v<la::sequential<la::input<3, 4, 5>, la::zero_pad2d<2>>::output_shape,
                                  la::shape<3, 8, 9>>);
    CHECK(la::zero_pad2d<2>::name() == "zero_pad2d<2>");
    CHECK(tblr::name() == "zero_pad2d<2,1,0,3>");
    lt::gradient_check_options o;
    o.batch = 2;
    require_gradients<la::zero_pad2d<1>, la::shape<2, 3, 4>, B>(o);
    require_gradients<tblr, la::shape<3, 4, 5>, B>(o);
    require_gradients<la::zero_pad2d_tblr<0, 0, 0, 0>, la::shape<1, 2, 2>, B>(o);
    check_forward<la::zero_pad2d<1>, la::shape<2, 3, 4>, B>(
        [](const vec& x, const vec&, std::size_t n) { return naive_pad(x, n * 2, 3, 4, 1, 1, 1, 1); }, 2);
    check_forward<tblr, la::shape<3, 4, 5>, B>(
        [](const vec& x, const vec&, std::size_t n) { return naive_pad(x, n * 3, 4, 5, 2, 1, 0, 3); }, 3);
}

TEMPLATE_LIST_TEST_CASE("zero_pad2d: hand-computed examples", "[layers][zero_pad]", lt::backends) {
    using B = TestType;
    {
        auto [y, dx] = run_node<la::zero_pad2d<1>, la::shape<1, 2, 2>, B>({1, 2, 3, 4}, iota(16), 1);
        CHECK(y == vec{0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0});
        CHECK(dx == vec{6, 7, 10, 11});  // the inner 2x2 of dy = 1..16
    }
    {
        // top 1, bottom 0, left 2, right 1: (1, 2, 2) -> (1, 3, 5)
        auto [y, dx] = run_node<la::zero_pad2d_tblr<1, 0, 2, 1>, la::shape<1, 2, 2>, B>({1, 2, 3, 4}, iota(15), 1);
        CHECK(y == vec{0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 3, 4, 0});
        CHECK(dx == vec{8, 9, 13, 14});
    }
}
