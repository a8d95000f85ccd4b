// vae_sampling and loss::binary_cross_entropy_with_logits. The VAE node's gradient is checked
// against central differences of f = sum(z * r) + added_loss() (the KL term included) through
// the model API; its KL, KL gradient and sampling against hand-derived values; the BCE loss
// against hand-derived values, a naive (unstable) formula and central differences.
// Every backend of lamina::test::backends.
#include <catch2/catch.hpp>

#include "gradient_check.hpp"

#include <lamina/layers/dense.hpp>
#include <lamina/layers/merge.hpp>
#include <lamina/layers/vae_sampling.hpp>
#include <lamina/losses/binary_cross_entropy.hpp>
#include <lamina/network/composites.hpp>
#include <lamina/network/sequential.hpp>
#include <lamina/optimizers/sgd.hpp>
#include <lamina/train/trainer.hpp>

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

double max_abs_diff(const vec& a, const vec& b) {
    if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        double d = std::abs(a[i] - b[i]);
        if (!(d <= m)) m = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
    }
    return m;
}

/// Gradient check of f(x, w) = sum_i y_i r_i + added_loss() for network Net with a fixed step
/// (so the same eps in every evaluation): the analytic gradients come from backward with
/// output gradient r (the nodes add their loss terms' gradients themselves), the numeric ones
/// from central differences of f. Also: backward_accumulate adds dx into a given buffer.
template <class Net, class Backend>
void check_with_added_loss(std::size_t batch, std::uint64_t step) {
    using H = lt::network_harness<Net, Backend>;
    H h(batch);
    const std::size_t P = H::parameter_count, nx = batch * H::in_size, ny = batch * H::out_size;
    la::random_stream root{3, 17};
    const vec w = lt::uniform_vector(P, root.child(1), -0.5, 0.5);
    const vec x = lt::random_vector(nx, root.child(2));
    const vec r = lt::random_vector(ny, root.child(3));
    if (P) h.set_params(w);
    auto f = [&](const vec& xin) {
        const vec y = h.forward_train(xin, step);
        long double s = h.model().added_loss();
        for (std::size_t i = 0; i < ny; ++i) s += static_cast<long double>(y[i]) * r[i];
        return static_cast<double>(s);
    };
    h.forward_train(x, step);
    const double added = h.model().added_loss();
    h.poison_grads(-4242.0);
    const vec dx = h.backward(r);
    const vec dw = h.param_grads();
    h.forward_train(x, step);
    const vec base = lt::uniform_vector(nx, root.child(4), 50, 60);
    const vec acc = h.backward_accumulate(r, base);

    INFO(Net::layer_names() << ", batch " << batch << ", backend " << Backend::name << ", added loss " << added);
    CHECK(added > 0.01);  // the KL of random mu/logvar: the check is not vacuous
    const double step_h = 1e-6;
    std::size_t failed = 0;
    double worst = 0;
    auto compare = [&](double a, double n) {
        const double err = std::abs(a - n) / std::max({1.0, std::abs(a), std::abs(n)});
        worst = std::max(worst, err);
        if (!(err <= 1e-6)) ++failed;
    };
    for (std::size_t i = 0; i < nx; ++i) {
        vec xp = x;
        xp[i] = x[i] + step_h;
        const double fp = f(xp);
        xp[i] = x[i] - step_h;
        const double fm = f(xp);
        compare(dx[i], (fp - fm) / (2 * step_h));
        compare(acc[i] - base[i], dx[i]);
    }
    for (std::size_t i = 0; i < P; ++i) {
        h.set_param(i, w[i] + step_h);
        const double fp = f(x);
        h.set_param(i, w[i] - step_h);
        const double fm = f(x);
        h.set_param(i, w[i]);
        compare(dw[i], (fp - fm) / (2 * step_h));
    }
    INFO("worst relative error " << worst);
    CHECK(failed == 0);
}

using vae_net = la::sequential<la::input<8>, la::vae_sampling<>>;
using vae_half = la::sequential<la::input<4>, la::vae_sampling<std::ratio<1, 2>>>;
// ln 2, for hand-derived values
constexpr double ln2 = 0.69314718055994530942;

}  // namespace

// ================================================================================================
// vae_sampling
// ================================================================================================

TEST_CASE("vae_sampling: names, shapes, contract flags", "[layers][vae]") {
    STATIC_REQUIRE(std::is_same_v<vae_net::output_shape, la::shape<4>>);
    STATIC_REQUIRE(la::vae_sampling<>::accepts<la::shape<8>>);
    STATIC_REQUIRE_FALSE(la::vae_sampling<>::accepts<la::shape<7>>);     // odd: not [mu, logvar]
    STATIC_REQUIRE_FALSE(la::vae_sampling<>::accepts<la::shape<2, 2, 2>>);  // not a vector
    using impl = la::vae_sampling<>::impl<la::shape<8>, la::reference, double>;
    STATIC_REQUIRE(impl::adds_loss);
    STATIC_REQUIRE(impl::traits.accumulates);
    CHECK(la::vae_sampling<>::name() == "vae_sampling");
    CHECK(la::vae_sampling<std::ratio<1, 2>>::name() == "vae_sampling<beta=0.5000>");
}

TEMPLATE_LIST_TEST_CASE("vae_sampling: gradient of sum(z r) + added_loss against central differences",
                        "[layers][vae][gradient]", lt::backends) {
    using B = TestType;
    check_with_added_loss<vae_net, B>(3, 5);
    check_with_added_loss<vae_half, B>(2, 9);
    // through layers with parameters: the dense layer before the node receives the KL's gradient
    check_with_added_loss<la::sequential<la::input<6>, la::dense<8>, la::vae_sampling<std::ratio<1, 2>>, la::dense<3>>,
                          B>(2, 4);
    check_with_added_loss<la::sequential<la::input<5>, la::dense<6>, la::vae_sampling<>>, B>(1, 1);
}

TEMPLATE_LIST_TEST_CASE("vae_sampling with Beta = 0: the plain sampling path passes the generic check",
                        "[layers][vae][gradient]", lt::backends) {
    using B = TestType;
    lt::gradient_check_options o;
    o.batch = 3;
    o.step = 2;
    o.inference_matches_train = false;  // inference is z = mu
    auto r = lt::check_layer_gradients<la::vae_sampling<std::ratio<0>>, la::shape<10>, B>(o);
    INFO(r.describe());
    CHECK(r.ok());
    CHECK(r.max_abs_dx > 1e-3);
}

TEMPLATE_LIST_TEST_CASE("vae_sampling: hand-derived KL, its gradient, z = mu at inference", "[layers][vae]",
                        lt::backends) {
    using B = TestType;
    // Z = 2, batch 2; a sample is [mu0, mu1, logvar0, logvar1].
    //   sample 0: mu = 0, logvar = 0:           KL = 0
    //   sample 1: mu = (1, -2), logvar = (ln 2, 0):
    //     KL = -0.5 [(1 + ln 2 - 1 - 2) + (1 + 0 - 4 - 1)] = 3 - ln 2 / 2
    // added loss = Beta * (0 + 3 - ln 2 / 2) / 2 (the batch mean)
    const vec x{0, 0, 0, 0, 1, -2, ln2, 0};
    const double kl_mean = (3 - ln2 / 2) / 2;
    {
        lt::network_harness<vae_half, B> h(2);
        h.forward_train(x, 5);
        CHECK(h.model().added_loss() == Approx(0.5 * kl_mean).epsilon(1e-12));
        // with dz = 0 only the KL's gradient remains: d mu = Beta mu / batch,
        // d logvar = Beta 0.5 (exp(logvar) - 1) / batch
        const vec dx = h.backward(vec(4, 0.0));
        CHECK(max_abs_diff(dx, {0, 0, 0, 0, 0.25, -0.5, 0.125, 0}) < 1e-12);
        // inference: z = mu
        CHECK(h.forward(x) == vec{0, 0, 1, -2});
    }
    {
        using net = la::sequential<la::input<4>, la::vae_sampling<>>;
        lt::network_harness<net, B> h(2);
        h.forward_train(x, 5);
        CHECK(h.model().added_loss() == Approx(kl_mean).epsilon(1e-12));
        const vec dx = h.backward(vec(4, 0.0));
        CHECK(max_abs_diff(dx, {0, 0, 0, 0, 0.5, -1, 0.25, 0}) < 1e-12);
    }
}

TEMPLATE_LIST_TEST_CASE("vae_sampling: the model's added_loss() is what the nodes report", "[layers][vae]",
                        lt::backends) {
    using B = TestType;
    const vec x{0.5, -1, 0.25, -0.5, 1, 2, -0.75, 0.3};  // batch 2, Z = 2
    // the node alone, called through the node contract on host memory (reference backend)
    using node_type = la::vae_sampling<>::impl<la::shape<4>, la::reference, double>;
    node_type node;
    node.set_stream(la::random_stream{1, 2});
    la::reference::context c;
    vec xin = x, y(4), saved(node.saved_bytes(2) / sizeof(double));
    la::node_io<double> io;
    io.x[0] = xin.data();
    io.y = y.data();
    io.saved = saved.data();
    io.batch = 2;
    node.forward_train(c, io, 3);
    const double node_loss = node.added_loss(c, io);
    // hand: KL = -0.5 sum (1 + logvar - mu^2 - exp(logvar)) per sample, batch mean
    double kl = 0;
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t j = 0; j < 2; ++j) {
            const double mu = x[b * 4 + j], lv = x[b * 4 + 2 + j];
            kl += -0.5 * (1 + lv - mu * mu - std::exp(lv));
        }
    kl /= 2;
    CHECK(node_loss == Approx(kl).epsilon(1e-12));

    lt::network_harness<la::sequential<la::input<4>, la::vae_sampling<>>, B> one(2);
    one.forward_train(x, 3);
    CHECK(one.model().added_loss() == Approx(node_loss).epsilon(1e-12));

    // two nodes on the same input: the model adds both reports (Beta 1 and 1/2)
    using two = la::sequential<la::input<4>, la::branches<la::concat, la::vae_sampling<>, la::vae_sampling<std::ratio<1, 2>>>>;
    lt::network_harness<two, B> h2(2);
    h2.forward_train(x, 3);
    CHECK(h2.model().added_loss() == Approx(1.5 * node_loss).epsilon(1e-12));
}

TEMPLATE_LIST_TEST_CASE("vae_sampling: z = mu + exp(logvar / 2) eps with eps ~ N(0, 1) per step", "[layers][vae]",
                        lt::backends) {
    using B = TestType;
    constexpr std::size_t Z = 500, batch = 8;
    using net = la::sequential<la::input<2 * Z>, la::vae_sampling<>>;
    lt::network_harness<net, B> h(batch);
    vec zero(batch * 2 * Z, 0.0), shifted(batch * 2 * Z);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t j = 0; j < Z; ++j) {
            shifted[b * 2 * Z + j] = 3.0;                  // mu
            shifted[b * 2 * Z + Z + j] = std::log(4.0);  // logvar: sd 2
        }
    const vec eps = h.forward_train(zero, 6);  // mu = 0, logvar = 0: z = eps
    CHECK(h.model().added_loss() == Approx(0.0).margin(1e-12));
    const vec z = h.forward_train(shifted, 6);
    // KL per sample = -0.5 Z (1 + ln 4 - 9 - 4) = 250 (12 - ln 4), the same for every sample
    CHECK(h.model().added_loss() == Approx(250 * (12 - std::log(4.0))).epsilon(1e-12));
    vec expect(z.size());
    for (std::size_t i = 0; i < z.size(); ++i) expect[i] = 3 + 2 * eps[i];
    CHECK(max_abs_diff(z, expect) < 1e-12);
    // eps: standard normal (4000 draws: the mean's sd 0.016, the variance's 0.022; ~5 sd bounds)
    double mean = 0, var = 0, within = 0;
    for (double e : eps) mean += e;
    mean /= static_cast<double>(eps.size());
    for (double e : eps) {
        var += (e - mean) * (e - mean);
        within += std::abs(e) < 1.0;
    }
    var /= static_cast<double>(eps.size());
    within /= static_cast<double>(eps.size());
    CHECK(std::abs(mean) < 0.08);
    CHECK(std::abs(var - 1) < 0.11);
    CHECK(std::abs(within - 0.6827) < 0.04);
    // the same step draws the same eps, another step other eps; the reference backend agrees
    CHECK(h.forward_train(zero, 6) == eps);
    const vec other = h.forward_train(zero, 7);
    std::size_t same = 0;
    for (std::size_t i = 0; i < eps.size(); ++i) same += other[i] == eps[i];
    CHECK(same == 0);
    lt::network_harness<net, la::reference> r(batch);
    CHECK(max_abs_diff(r.forward_train(zero, 6), eps) < 1e-15);
    // inference: z = mu
    CHECK(h.forward(shifted) == vec(batch * Z, 3.0));
}

// ================================================================================================
// binary_cross_entropy_with_logits
// ================================================================================================

namespace {

struct loss_result {
    double loss;
    vec grad, rows;
};

/// Calls loss L on backend B with host vectors (device copies in between).
template <class B, class T = double>
loss_result eval_bce(const std::vector<T>& pred, const std::vector<T>& targets, std::size_t rows, std::size_t cols) {
    typename B::context c{};
    typename B::template buffer<T> p, t, g, lr;
    p.allocate(pred.size());
    t.allocate(targets.size());
    g.allocate(pred.size());
    lr.allocate(rows);
    B::upload(c, p.data(), pred.data(), pred.size());
    B::upload(c, t.data(), targets.data(), targets.size());
    B::fill(c, g.data(), pred.size(), T(999));  // must be overwritten
    B::fill(c, lr.data(), rows, T(999));
    loss_result r;
    r.loss = la::loss::binary_cross_entropy_with_logits{}.template operator()<B, T>(c, p.data(), t.data(), g.data(),
                                                                                   lr.data(), rows, cols);
    std::vector<T> gh(pred.size()), rh(rows);
    B::download(c, gh.data(), g.data(), pred.size());
    B::download(c, rh.data(), lr.data(), rows);
    r.grad.assign(gh.begin(), gh.end());
    r.rows.assign(rh.begin(), rh.end());
    return r;
}

/// The textbook formula, -(t log s + (1 - t) log(1 - s)) with s = 1 / (1 + exp(-x)): fine
/// for moderate |x|, where it is the independent check of lamina's stable form.
double naive_bce(double x, double t) {
    const double s = 1 / (1 + std::exp(-x));
    return -(t * std::log(s) + (1 - t) * std::log(1 - s));
}

}  // namespace

TEST_CASE("binary_cross_entropy_with_logits: interface", "[loss][bce]") {
    using L = la::loss::binary_cross_entropy_with_logits;
    STATIC_REQUIRE_FALSE(L::classification);
    STATIC_REQUIRE(L::target_size(7) == 7);
    CHECK(L::name() == "binary_cross_entropy_with_logits");
}

TEMPLATE_LIST_TEST_CASE("binary_cross_entropy_with_logits: hand-derived value and gradient", "[loss][bce]",
                        lt::backends) {
    using B = TestType;
    // x = (0, ln 3), t = (1, 0): sigmoid = (1/2, 3/4); losses ln 2 and -ln(1/4) = 2 ln 2, mean 1.5 ln 2;
    // gradient (sigmoid - t) / 2 = (-1/4, 3/8)
    auto r = eval_bce<B>({0.0, std::log(3.0)}, {1.0, 0.0}, 1, 2);
    CHECK(r.loss == Approx(1.5 * ln2).epsilon(1e-14));
    CHECK(r.rows[0] == Approx(1.5 * ln2).epsilon(1e-14));
    CHECK(r.grad[0] == Approx(-0.25).epsilon(1e-14));
    CHECK(r.grad[1] == Approx(0.375).epsilon(1e-14));
    // a logit of 0 costs ln 2 whatever the target
    auto z = eval_bce<B>({0.0, 0.0, 0.0}, {0.0, 0.3, 1.0}, 3, 1);
    CHECK(z.loss == Approx(ln2).epsilon(1e-14));
    CHECK(max_abs_diff(z.grad, {0.5 / 3, 0.2 / 3, -0.5 / 3}) < 1e-15);
}

TEMPLATE_LIST_TEST_CASE("binary_cross_entropy_with_logits: the naive formula and central differences", "[loss][bce]",
                        lt::backends) {
    using B = TestType;
    const std::size_t rows = 3, cols = 4;
    const vec x = lt::random_vector(rows * cols, la::random_stream{8, 1});
    const vec t = lt::uniform_vector(rows * cols, la::random_stream{8, 2}, 0.0, 1.0);
    auto r = eval_bce<B>(x, t, rows, cols);
    double total = 0;
    for (std::size_t i = 0; i < rows; ++i) {
        double row = 0;
        for (std::size_t k = 0; k < cols; ++k) row += naive_bce(x[i * cols + k], t[i * cols + k]);
        CHECK(r.rows[i] == Approx(row / cols).epsilon(1e-12));  // each row: its mean over outputs
        total += row;
    }
    CHECK(r.loss == Approx(total / (rows * cols)).epsilon(1e-12));
    const double h = 1e-6;
    for (std::size_t i = 0; i < x.size(); ++i) {
        vec xp = x;
        xp[i] = x[i] + h;
        const double fp = eval_bce<B>(xp, t, rows, cols).loss;
        xp[i] = x[i] - h;
        const double fm = eval_bce<B>(xp, t, rows, cols).loss;
        CHECK(r.grad[i] == Approx((fp - fm) / (2 * h)).margin(1e-8));
    }
}

TEMPLATE_LIST_TEST_CASE("binary_cross_entropy_with_logits: stable at large logits, NaN propagates", "[loss][bce]",
                        lt::backends) {
    using B = TestType;
    // x = 100, t = 0 and x = -100, t = 1 cost 100 each (the naive formula overflows to inf);
    // x = 50, t = 1 costs log(1 + e^-50) ~ 1.9e-22
    auto r = eval_bce<B>({100.0, -100.0, 50.0}, {0.0, 1.0, 1.0}, 1, 3);
    CHECK(r.loss == Approx(200.0 / 3).epsilon(1e-14));
    CHECK(max_abs_diff(r.grad, {1.0 / 3, -1.0 / 3, 0.0}) < 1e-15);
    auto f = eval_bce<B, float>({100.0f, -100.0f, 50.0f}, {0.0f, 1.0f, 1.0f}, 1, 3);
    CHECK(f.loss == Approx(200.0 / 3).epsilon(1e-6));
    CHECK(std::isfinite(f.grad[0]));
    CHECK(std::isfinite(f.grad[1]));
    // NaN: the row's loss and that gradient entry are NaN; the other row stays finite
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto n = eval_bce<B>({nan, 1.0, 0.5, -0.5}, {0.0, 1.0, 1.0, 0.0}, 2, 2);
    CHECK(std::isnan(n.loss));
    CHECK(std::isnan(n.rows[0]));
    CHECK(std::isnan(n.grad[0]));
    CHECK(std::isfinite(n.grad[1]));
    CHECK(n.rows[1] == Approx(0.5 * (naive_bce(0.5, 1) + naive_bce(-0.5, 0))).epsilon(1e-12));
    auto nt = eval_bce<B>({1.0, 1.0}, {nan, 0.0}, 1, 2);  // a NaN target too
    CHECK(std::isnan(nt.loss));
    CHECK(std::isnan(nt.grad[0]));
}

TEST_CASE("binary_cross_entropy_with_logits trains a logistic regression through the trainer", "[loss][bce][train]") {
    // two outputs, each the sign of one input: separable, so training drives the loss down
    la::dataset<float> d(64, 2, 2);
    la::random_stream r{4, 4};
    for (std::size_t i = 0; i < 64; ++i)
        for (std::size_t k = 0; k < 2; ++k) {
            const float v = 2 * r.uniform(i * 2 + k) - 1;
            d.sample(i)[k] = v;
            d.target(i)[k] = v > 0 ? 1.0f : 0.0f;
        }
    using net_t = la::sequential<la::input<2>, la::dense<2>>;
    net_t::model<la::reference> net{la::seed{1}};
    la::trainer fit{net, la::loss::binary_cross_entropy_with_logits{}, la::optim::sgd{1.0}};
    const double before = fit.evaluate(d).loss;
    fit.run(d, la::epochs{20}, la::batch{16});
    const double after = fit.evaluate(d).loss;
    INFO("loss before " << before << ", after " << after);
    CHECK(before > 0.4);
    CHECK(after < 0.5 * before);
    // the logits' signs now match the targets
    std::vector<float> logits(64 * 2);
    net.predict(d.view().inputs, logits.data(), 64);
    std::size_t right = 0;
    for (std::size_t i = 0; i < 64; ++i)
        for (std::size_t k = 0; k < 2; ++k) right += (logits[i * 2 + k] > 0) == (d.target(i)[k] > 0.5f);
    CHECK(right >= 124);  // of 128
}
