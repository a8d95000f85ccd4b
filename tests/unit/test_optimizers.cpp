// Optimizer updates (sgd plain/momentum/Nesterov/weight decay, adam, adamw) driven through
// Optimizer::state<Backend, double> for three steps on a three-element parameter vector, with
// per-step gradients and learning rates fixed in advance, against values derived by hand from
// PyTorch's formulas (below, step by step). Also save()/load() round trips.
//
// Common setup for every case:
//   w0 = (1, -2, 0.5)
//   g1 = (0.5, 0.25, -1), g2 = (-0.3, 0.25, 2), g3 = (0.1, -0.5, 0)
//   lr1 = 0.1, lr2 = 0.05, lr3 = 0.02     (a schedule hands each step its rate)
//   segments: "weight" = elements 0..1 (decay = true), "bias" = element 2 (decay = false)
#include <catch2/catch.hpp>

#include "gradient_check.hpp"

#include <lamina/core/error.hpp>
#include <lamina/network/parameter_segment.hpp>
#include <lamina/optimizers/adam.hpp>
#include <lamina/optimizers/sgd.hpp>

#include <cmath>
#include <vector>

namespace la = lamina;
namespace lt = lamina::test;
using vec = std::vector<double>;

namespace {

const vec w0{1.0, -2.0, 0.5};
const std::vector<vec> grads{{0.5, 0.25, -1.0}, {-0.3, 0.25, 2.0}, {0.1, -0.5, 0.0}};
const vec lrs{0.1, 0.05, 0.02};
const std::vector<la::parameter_segment> segs{{"0:dense.weight", 0, 0, 2, true}, {"0:dense.bias", 0, 2, 1, false}};

/// Device buffers for w and g, and one optimizer state over them.
template <class B, class Opt>
struct driver {
    typename B::context ctx{};
    typename B::template buffer<double> w, g;
    typename Opt::template state<B, double> st;

    driver(const Opt& o, const vec& w_init) : st(o, w_init.size()) {
        w.allocate(w_init.size());
        g.allocate(w_init.size());
        B::upload(ctx, w.data(), w_init.data(), w_init.size());
    }
    void step(const vec& grad, double lr) {
        B::upload(ctx, g.data(), grad.data(), grad.size());
        st.step(ctx, w.data(), g.data(), segs, lr);
    }
    vec weights() const {
        vec h(w.size());
        B::download(ctx, h.data(), w.data(), h.size());
        return h;
    }
};

/// Runs the three steps; returns w after each step.
template <class B, class Opt>
std::vector<vec> run3(const Opt& o) {
    driver<B, Opt> d(o, w0);
    std::vector<vec> out;
    for (std::size_t t = 0; t < 3; ++t) {
        d.step(grads[t], lrs[t]);
        out.push_back(d.weights());
    }
    CHECK(d.st.steps() == 3);
    return out;
}

void require_close(const vec& got, const vec& expected, double rel = 1e-12) {
    REQUIRE(got.size() == expected.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i);
        CHECK(got[i] == Approx(expected[i]).epsilon(rel).margin(1e-14));
    }
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("sgd: plain", "[optim][sgd]", lt::backends) {
    // w <- w - lr * g
    // step 1: (1 - 0.1*0.5, -2 - 0.1*0.25, 0.5 + 0.1*1)      = (0.95, -2.025, 0.6)
    // step 2: (0.95 + 0.05*0.3, -2.025 - 0.05*0.25, 0.6 - 0.05*2) = (0.965, -2.0375, 0.5)
    // step 3: (0.965 - 0.02*0.1, -2.0375 + 0.02*0.5, 0.5 - 0)  = (0.963, -2.0275, 0.5)
    auto w = run3<TestType>(la::optim::sgd(0.1));
    require_close(w[0], {0.95, -2.025, 0.6});
    require_close(w[1], {0.965, -2.0375, 0.5});
    require_close(w[2], {0.963, -2.0275, 0.5});
}

TEMPLATE_LIST_TEST_CASE("sgd: momentum (PyTorch: v = mu v + g, w -= lr v)", "[optim][sgd]", lt::backends) {
    // mu = 0.9, v0 = 0
    // step 1: v = g1 = (0.5, 0.25, -1);            w = w0 - 0.1 v  = (0.95, -2.025, 0.6)
    // step 2: v = 0.9 v + g2 = (0.45-0.3, 0.225+0.25, -0.9+2) = (0.15, 0.475, 1.1)
    //         w = w - 0.05 v = (0.95-0.0075, -2.025-0.02375, 0.6-0.055) = (0.9425, -2.04875, 0.545)
    // step 3: v = 0.9 v + g3 = (0.135+0.1, 0.4275-0.5, 0.99+0) = (0.235, -0.0725, 0.99)
    //         w = w - 0.02 v = (0.9425-0.0047, -2.04875+0.00145, 0.545-0.0198) = (0.9378, -2.0473, 0.5252)
    // (with v = mu v + lr g instead, step 3 would differ: the rate is not folded into v)
    auto w = run3<TestType>(la::optim::sgd(0.1, 0.9));
    require_close(w[0], {0.95, -2.025, 0.6});
    require_close(w[1], {0.9425, -2.04875, 0.545});
    require_close(w[2], {0.9378, -2.0473, 0.5252});
}

TEMPLATE_LIST_TEST_CASE("sgd: Nesterov (update g + mu v)", "[optim][sgd]", lt::backends) {
    // v as in the momentum case: v1 = (0.5, 0.25, -1), v2 = (0.15, 0.475, 1.1), v3 = (0.235, -0.0725, 0.99)
    // step 1: u = g1 + 0.9 v1 = (0.95, 0.475, -1.9);   w = w0 - 0.1 u = (0.905, -2.0475, 0.69)
    // step 2: u = g2 + 0.9 v2 = (-0.165, 0.6775, 2.99); w = w - 0.05 u = (0.91325, -2.081375, 0.5405)
    // step 3: u = g3 + 0.9 v3 = (0.3115, -0.56525, 0.891); w = w - 0.02 u = (0.90702, -2.07007, 0.52268)
    auto w = run3<TestType>(la::optim::sgd(0.1, 0.9, true));
    require_close(w[0], {0.905, -2.0475, 0.69});
    require_close(w[1], {0.91325, -2.081375, 0.5405});
    require_close(w[2], {0.90702, -2.07007, 0.52268});
}

TEMPLATE_LIST_TEST_CASE("sgd: weight decay, skipped on decay = false segments", "[optim][sgd]", lt::backends) {
    SECTION("without momentum") {
        // wd = 0.1 on elements 0, 1 only: g' = g + 0.1 w (element 2: g' = g)
        // step 1: g' = (0.5+0.1, 0.25-0.2, -1) = (0.6, 0.05, -1); w = w0 - 0.1 g' = (0.94, -2.005, 0.6)
        // step 2: g' = (-0.3+0.094, 0.25-0.2005, 2) = (-0.206, 0.0495, 2); w = w - 0.05 g' = (0.9503, -2.007475, 0.5)
        // step 3: g' = (0.1+0.09503, -0.5-0.2007475, 0) = (0.19503, -0.7007475, 0);
        //         w = w - 0.02 g' = (0.9503-0.0039006, -2.007475+0.01401495, 0.5) = (0.9463994, -1.99346005, 0.5)
        auto w = run3<TestType>(la::optim::sgd(0.1, 0.0, false, 0.1));
        require_close(w[0], {0.94, -2.005, 0.6});
        require_close(w[1], {0.9503, -2.007475, 0.5});
        require_close(w[2], {0.9463994, -1.99346005, 0.5});
    }
    SECTION("with momentum 0.9 (decay added before the velocity)") {
        // step 1: g' = (0.6, 0.05, -1) = v;          w = w0 - 0.1 v = (0.94, -2.005, 0.6)
        // step 2: g' = (-0.206, 0.0495, 2); v = 0.9 v + g' = (0.54-0.206, 0.045+0.0495, -0.9+2) = (0.334, 0.0945, 1.1)
        //         w = w - 0.05 v = (0.94-0.0167, -2.005-0.004725, 0.6-0.055) = (0.9233, -2.009725, 0.545)
        // step 3: g' = (0.1+0.09233, -0.5-0.2009725, 0) = (0.19233, -0.7009725, 0)
        //         v = 0.9 v + g' = (0.3006+0.19233, 0.08505-0.7009725, 0.99) = (0.49293, -0.6159225, 0.99)
        //         w = w - 0.02 v = (0.9233-0.0098586, -2.009725+0.01231845, 0.545-0.0198)
        //           = (0.9134414, -1.99740655, 0.5252)
        auto w = run3<TestType>(la::optim::sgd(0.1, 0.9, false, 0.1));
        require_close(w[0], {0.94, -2.005, 0.6});
        require_close(w[1], {0.9233, -2.009725, 0.545});
        require_close(w[2], {0.9134414, -1.99740655, 0.5252});
    }
}

TEMPLATE_LIST_TEST_CASE("adam: bias-corrected moments, eps after sqrt(vhat)", "[optim][adam]", lt::backends) {
    // beta1 = 0.9, beta2 = 0.999; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    // mhat = m / (1 - b1^t); vhat = v / (1 - b2^t); w -= lr * mhat / (sqrt(vhat) + eps)
    // Bias corrections: t=1: 0.1, 0.001; t=2: 0.19, 0.001999; t=3: 0.271, 0.002997001
    // step 1: m = 0.1 g1 = (0.05, 0.025, -0.1); v = 0.001 g1^2 = (0.00025, 0.0000625, 0.001)
    //         mhat = g1, vhat = g1^2: w = w0 - 0.1 * g1 / (|g1| + eps) = w0 - 0.1 sign(g1) (1 - eps/|g1|)
    //         = (1 - 0.1 + 2e-9, -2 - 0.1 + 4e-9, 0.5 + 0.1 - 1e-9) = (0.900000002, -2.099999996, 0.599999999)
    // step 2: m = 0.9 m + 0.1 g2 = (0.045-0.03, 0.0225+0.025, -0.09+0.2) = (0.015, 0.0475, 0.11)
    //         v = 0.999 v + 0.001 g2^2 = (0.00024975+0.00009, 0.0000624375+0.0000625, 0.000999+0.004)
    //           = (0.00033975, 0.0001249375, 0.004999)
    //         element 0: mhat = 0.015/0.19 = 0.0789474, vhat = 0.00033975/0.001999 = 0.169960,
    //         sqrt = 0.412262: w0 = 0.900000002 - 0.05 * 0.0789474/0.412262 = 0.8904251005
    //         element 1: mhat = 0.25 = g2[1] (g constant), vhat = 0.0625: step 0.05 -> -2.149999994
    //         element 2: mhat = 0.578947, vhat = 2.500750, sqrt = 1.581376: w = 0.599999999 - 0.0183052 = 0.5816948228
    // step 3: m = (0.0235, -0.00725, 0.099), v = (0.00034941025, 0.0003748125625, 0.004994001)
    //         element 0: mhat = 0.0867159, vhat = 0.116587, sqrt = 0.341448: w = 0.8904251005 - 0.02*0.253965 = 0.8853457968
    //         element 1: mhat = -0.0267528, vhat = 0.125063, sqrt = 0.353643: w = -2.149999994 + 0.00151298 = -2.1484870074
    //         element 2: mhat = 0.365314, vhat = 1.666333, sqrt = 1.290865: w = 0.5816948228 - 0.00565999 = 0.5760348411
    auto w = run3<TestType>(la::optim::adam(0.1));
    require_close(w[0], {0.90000000199999997, -2.0999999960000002, 0.59999999900000001});
    require_close(w[1], {0.89042510047088763, -2.1499999939999999, 0.58169482276396256});
    require_close(w[2], {0.88534579680580627, -2.148487007427649, 0.57603484105819147});

    SECTION("eps = 0.01 makes its placement visible") {
        // step 1: w = w0 - 0.1 g1 / (|g1| + 0.01) = (1 - 0.05/0.51, -2 - 0.025/0.26, 0.5 + 0.1/1.01)
        //         = (0.9019607843, -2.0961538462, 0.5990099010)   (eps inside the sqrt would give
        //         1 - 0.05/sqrt(0.26) = 0.90194 for element 0: different in the 4th digit)
        // steps 2, 3 as above with + 0.01 in every denominator.
        auto w2 = run3<TestType>(la::optim::adam(0.1, 0.9, 0.999, 0.01));
        require_close(w2[0], {0.90196078431372551, -2.0961538461538463, 0.59900990099009899});
        require_close(w2[1], {0.89261263516375622, -2.1442307692307692, 0.58081975198056524});
        require_close(w2[2], {0.88767785645885922, -2.1427593891224639, 0.57520327959736917});
    }
}

TEMPLATE_LIST_TEST_CASE("adam: L2 weight decay added to the gradient, skipped on bias", "[optim][adam]",
                        lt::backends) {
    // wd = 0.1 on elements 0, 1: g' = g + 0.1 w before the moments (element 2 as in plain adam)
    // step 1: g' = (0.6, 0.05, -1): mhat = g', vhat = g'^2 -> w = w0 - 0.1 sign(g') (1 - eps/|g'|)
    //         = (0.9000000016667, -2.09999998, 0.599999999)
    // step 2: g' = (-0.3 + 0.09000000016667, 0.25 - 0.209999998, 2) = (-0.2099999998, 0.040000002, 2)
    //         m = (0.054 - 0.021, 0.0045 + 0.004, 0.11) = (0.033, 0.0085, 0.11) (to 1e-10)
    //         v = (0.00035964 + 0.0000441, 0.0000024975 + 0.0000016, 0.004999) = (0.00040374, 0.0000040975, 0.004999)
    //         w = (0.8806764994, -2.1494062595, 0.5816948228)
    // step 3: g' = (0.1 + 0.08806764994, -0.5 - 0.21494062595, 0) -> w = (0.8713198618, -2.1380424851, 0.5760348411)
    auto w = run3<TestType>(la::optim::adam(0.1, 0.9, 0.999, 1e-8, 0.1));
    require_close(w[0], {0.9000000016666666, -2.0999999800000042, 0.59999999900000001});
    require_close(w[1], {0.88067649943840898, -2.1494062594914243, 0.58169482276396256});
    require_close(w[2], {0.87131986180777898, -2.1380424850503386, 0.57603484105819147});
}

TEMPLATE_LIST_TEST_CASE("adamw: decoupled decay w -= lr wd w before the Adam step", "[optim][adam]", lt::backends) {
    // wd = 0.1 on elements 0, 1; the moments see the plain gradient, so m, v are those of plain adam
    // step 1: w = w0 * (1 - 0.1*0.1) on 0, 1 = (0.99, -1.98, 0.5); then the adam step of plain adam:
    //         (0.99 - 0.099999998, -1.98 - 0.099999996, 0.599999999) = (0.890000002, -2.079999996, 0.599999999)
    // step 2: w *= (1 - 0.05*0.1) = 0.995 on 0, 1: (0.88555000199, -2.06959999602); then minus the
    //         plain-adam step 2 increments (0.0095749015, 0.049999998, 0.0183051762):
    //         = (0.8759751005, -2.1195999940, 0.5816948228)
    // step 3: w *= 0.998 on 0, 1, then the plain-adam step 3 increments:
    //         = (0.8691438466, -2.1138478075, 0.5760348411)
    auto w = run3<TestType>(la::optim::adamw(0.1, 0.1));
    require_close(w[0], {0.89000000199999996, -2.0799999960000002, 0.59999999900000001});
    require_close(w[1], {0.87597510046088767, -2.1195999940199997, 0.58169482276396256});
    require_close(w[2], {0.86914384659488453, -2.1138478074596088, 0.57603484105819147});
    CHECK(la::optim::adamw().weight_decay == 0.01);  // PyTorch's default
    CHECK(la::optim::adamw().decoupled);
    CHECK_FALSE(la::optim::adam().decoupled);
}

TEMPLATE_LIST_TEST_CASE("optimizers: save()/load() round trip resumes identically", "[optim][checkpoint]",
                        lt::backends) {
    using B = TestType;
    auto round_trip = [](const auto& opt) {
        using Opt = std::decay_t<decltype(opt)>;
        // uninterrupted: three steps
        driver<B, Opt> a(opt, w0);
        for (std::size_t t = 0; t < 3; ++t) a.step(grads[t], lrs[t]);
        // interrupted after two: save weights and state, load into fresh ones, do the third
        driver<B, Opt> b(opt, w0);
        for (std::size_t t = 0; t < 2; ++t) b.step(grads[t], lrs[t]);
        auto saved = b.st.save(b.ctx);
        driver<B, Opt> c(opt, b.weights());
        c.st.load(c.ctx, saved, b.st.steps());
        CHECK(c.st.steps() == 2);
        CHECK(c.st.save(c.ctx) == saved);
        c.step(grads[2], lrs[2]);
        CHECK(c.weights() == a.weights());
        // a state that was not restored differs (so the comparison above has teeth)
        driver<B, Opt> fresh(opt, b.weights());
        fresh.step(grads[2], lrs[2]);
        CHECK(fresh.weights() != a.weights());
        // mismatched state is rejected
        auto bad = saved;
        bad[0].second.push_back(0.0);
        CHECK_THROWS_AS(c.st.load(c.ctx, bad, 2), la::checkpoint_error);
        auto renamed = saved;
        renamed[0].first = "other";
        CHECK_THROWS_AS(c.st.load(c.ctx, renamed, 2), la::checkpoint_error);
        return saved;
    };
    SECTION("sgd momentum") {
        auto s = round_trip(la::optim::sgd(0.1, 0.9));
        REQUIRE(s.size() == 1);
        CHECK(s[0].first == "velocity");
        // v after two steps (see the momentum test): (0.15, 0.475, 1.1)
        require_close(s[0].second, {0.15, 0.475, 1.1});
    }
    SECTION("sgd nesterov with decay") { round_trip(la::optim::sgd(0.1, 0.9, true, 0.1)); }
    SECTION("adam") {
        auto s = round_trip(la::optim::adam(0.1));
        REQUIRE(s.size() == 2);
        CHECK(s[0].first == "m");
        CHECK(s[1].first == "v");
        // after two steps (see the adam test): m = (0.015, 0.0475, 0.11), v = (0.00033975, 0.0001249375, 0.004999)
        require_close(s[0].second, {0.015, 0.0475, 0.11});
        require_close(s[1].second, {0.00033975, 0.0001249375, 0.004999});
    }
    SECTION("adamw") { round_trip(la::optim::adamw(0.1, 0.1)); }
}

TEST_CASE("optimizers: argument validation", "[optim]") {
    CHECK_THROWS_AS(la::optim::sgd(0.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::sgd(0.1, 1.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::sgd(0.1, -0.1), la::argument_error);
    CHECK_THROWS_AS(la::optim::sgd(0.1, 0.0, true), la::argument_error);  // Nesterov needs momentum
    CHECK_THROWS_AS(la::optim::sgd(0.1, 0.0, false, -1.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::adam(-1e-3), la::argument_error);
    CHECK_THROWS_AS(la::optim::adam(1e-3, 1.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::adam(1e-3, 0.9, 1.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::adam(1e-3, 0.9, 0.999, 0.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::adamw(1e-3, -0.1), la::argument_error);
    CHECK_NOTHROW(la::optim::sgd(0.1, 0.9, true, 1e-4));
}
