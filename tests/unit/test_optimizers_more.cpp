// RMSProp, Adadelta, LARS and LAMB driven through Optimizer::state<Backend, double> for three
// steps, against values derived by hand from the papers' and PyTorch's formulas (the steps are
// written out below; the 17-digit values are the same arithmetic carried out in double). Also
// the weight-decay scale of every optimizer (set_weight_decay_scale), save()/load() round trips
// and argument checks.
//
// RMSProp and Adadelta use the setup of tests/unit/test_optimizers.cpp:
//   w0 = (1, -2, 0.5); g1 = (0.5, 0.25, -1), g2 = (-0.3, 0.25, 2), g3 = (0.1, -0.5, 0)
//   lr1 = 0.1, lr2 = 0.05, lr3 = 0.02; segments "weight" = 0..1 (decay), "bias" = 2 (no decay)
// LARS and LAMB need tensors with norms, so they use four elements in three tensors:
//   w0 = (3, -4, 0, 0.5); A = 0..1 (decay, ||w|| = 5), B = 2 (decay, starts at 0), bias = 3 (no decay)
//   g1 = (0.6, 0.8, 0.5, -1) (||g_A|| = 1), g2 = (-0.3, 0.4, 0.2, 2) (||g_A|| = 0.5), g3 = (0, 0, -0.1, 0.5)
#include <catch2/catch.hpp>

#include "gradient_check.hpp"

#include <lamina/core/error.hpp>
#include <lamina/network/parameter_segment.hpp>
#include <lamina/optimizers/adadelta.hpp>
#include <lamina/optimizers/adam.hpp>
#include <lamina/optimizers/lamb.hpp>
#include <lamina/optimizers/lars.hpp>
#include <lamina/optimizers/rmsprop.hpp>
#include <lamina/optimizers/sgd.hpp>

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

namespace la = lamina;
namespace lt = lamina::test;
using vec = std::vector<double>;
using segments = std::vector<la::parameter_segment>;

namespace {

const vec w3{1.0, -2.0, 0.5};
const std::vector<vec> g3{{0.5, 0.25, -1.0}, {-0.3, 0.25, 2.0}, {0.1, -0.5, 0.0}};
const segments segs3{{"0:dense.weight", 0, 0, 2, true}, {"0:dense.bias", 0, 2, 1, false}};

const vec w4{3.0, -4.0, 0.0, 0.5};
const std::vector<vec> g4{{0.6, 0.8, 0.5, -1.0}, {-0.3, 0.4, 0.2, 2.0}, {0.0, 0.0, -0.1, 0.5}};
const segments segs4{{"0:conv.weight", 0, 0, 2, true}, {"1:conv.weight", 1, 2, 1, true}, {"1:conv.bias", 1, 3, 1, false}};

const vec lrs{0.1, 0.05, 0.02};

template <class B, class Opt>
struct driver {
    typename B::context ctx{};
    typename B::template buffer<double> w, g;
    typename Opt::template state<B, double> st;
    segments segs;

    driver(const Opt& o, const vec& w_init, segments s) : st(o, w_init.size()), segs(std::move(s)) {
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

/// Three steps; w after each (and the trust ratios after each, for LARS and LAMB).
template <class B, class Opt>
struct run {
    std::vector<vec> w, ratios;
    run(const Opt& o, const vec& w0, const std::vector<vec>& grads, const segments& s, const vec& rates = lrs) {
        driver<B, Opt> d(o, w0, s);
        for (std::size_t t = 0; t < 3; ++t) {
            d.step(grads[t], rates[t]);
            w.push_back(d.weights());
            if constexpr (std::is_same_v<Opt, la::optim::lars> || std::is_same_v<Opt, la::optim::lamb>)
                ratios.push_back(d.st.trust_ratios(d.ctx));
        }
        CHECK(d.st.steps() == 3);
    }
};

void require_close(const vec& got, const vec& expected, double rel = 1e-12) {
    REQUIRE(got.size() == expected.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i);
        CHECK(got[i] == Approx(expected[i]).epsilon(rel).margin(1e-14));
    }
}

}  // namespace

// ---- RMSProp -------------------------------------------------------------------------------------

TEMPLATE_LIST_TEST_CASE("rmsprop: s = a s + (1-a) g^2, w -= lr g / (sqrt(s) + eps)", "[optim][rmsprop]", lt::backends) {
    // alpha = 0.9, eps = 1e-8, no decay, no momentum.
    // step 1: s = 0.1 g1^2 = (0.025, 0.00625, 0.1): g / sqrt(s) = sign(g) sqrt(10) = +-3.16227766 for every element,
    //         w = w0 - 0.1 * (3.16227766, 3.16227766, -3.16227766) = (0.683772234, -2.316227766, 0.816227766)
    //         (eps after the root: the step is 0.1 sqrt(10) (1 - eps / sqrt(s)), i.e. 0.683772254 for element 0)
    // step 2: s = 0.9 s + 0.1 g2^2 = (0.0225 + 0.009, 0.005625 + 0.00625, 0.09 + 0.4) = (0.0315, 0.011875, 0.49)
    //         w -= 0.05 g2 / sqrt(s) = 0.05 (-0.3/0.177482, 0.25/0.108972, 2/0.7) = (-0.084515, 0.114708, 0.142857)
    //         w = (0.768287675, -2.430935582, 0.673370615)
    // step 3: s = (0.02835 + 0.001, 0.0106875 + 0.025, 0.441) = (0.02935, 0.0356875, 0.441)
    //         w -= 0.02 (0.1/0.171318, -0.5/0.188911, 0) = (0.011674, -0.052935, 0): w = (0.756613507, -2.378000705, 0.673370615)
    run<TestType, la::optim::rmsprop> r(la::optim::rmsprop(0.1, 0.9, 1e-8), w3, g3, segs3);
    require_close(r.w[0], {0.6837722539831608, -2.316227726016843, 0.8162277560168383});
    require_close(r.w[1], {0.768287674694108, -2.430935582425809, 0.6733706152005117});
    require_close(r.w[2], {0.7566135072671833, -2.378000704703042, 0.6733706152005117});
}

TEMPLATE_LIST_TEST_CASE("rmsprop: momentum buffer and L2 decay skipped on the bias", "[optim][rmsprop]", lt::backends) {
    // alpha = 0.9, momentum 0.5, wd 0.1 on elements 0, 1: g' = g + 0.1 w; b = 0.5 b + g' / (sqrt(s) + eps); w -= lr b
    // step 1: g' = (0.6, 0.05, -1); s = 0.1 g'^2 = (0.036, 0.00025, 0.1); b = g'/sqrt(s) = (3.1622775, 3.1622757, -3.1622776)
    //         (the eps term is relatively larger for element 1, |g'| = 0.05), w = w0 - 0.1 b = (0.683772251, -2.316227566, 0.816227756)
    // step 2: g' = (-0.3 + 0.0683772, 0.25 - 0.2316228, 2) = (-0.2316228, 0.0183772, 2)
    //         s = (0.0324 + 0.0053649, 0.000225 + 0.0000338, 0.09 + 0.4) = (0.0377649, 0.00025877, 0.49)
    //         b = 0.5 b + g'/sqrt(s) = (1.5811387 - 1.1918923, 1.5811378 + 1.1424079, -1.5811388 + 2.8571429)
    //           = (0.3892465, 2.7235457, 1.2760040); w -= 0.05 b = (0.664309927, -2.452404853, 0.752427554)
    // step 3: g' = (0.1 + 0.0664310, -0.5 - 0.2452405, 0) = (0.1664310, -0.7452405, 0)
    //         s = (0.0339884 + 0.0027699, 0.0002329 + 0.0555383, 0.441) = (0.0367583, 0.0557712, 0.441)
    //         b = (0.1946232 + 0.8680729, 1.3617729 - 3.1556680, 0.6380020) = (1.0626961, -1.7938951, 0.6380020)
    //         w -= 0.02 b = (0.643056005, -2.416526951, 0.739667514)
    run<TestType, la::optim::rmsprop> r(la::optim::rmsprop(0.1, 0.9, 1e-8, 0.1, 0.5), w3, g3, segs3);
    require_close(r.w[0], {0.6837722506498278, -2.3162275660169644, 0.8162277560168383});
    require_close(r.w[1], {0.6643099271028369, -2.452404852587769, 0.7524275542047213});
    require_close(r.w[2], {0.6430560046531458, -2.416526951064079, 0.7396675138422979});
}

TEMPLATE_LIST_TEST_CASE("rmsprop: centered (sqrt(s - a^2))", "[optim][rmsprop]", lt::backends) {
    SECTION("no momentum, no decay") {
        // a = 0.9 a + 0.1 g; d = sqrt(s - a^2) + eps
        // step 1: s = 0.1 g^2, a = 0.1 g: s - a^2 = 0.09 g^2, d = 0.3 |g|: w = w0 - 0.1 sign(g) / 0.3
        //         = (1 - 1/3, -2 - 1/3, 0.5 + 1/3) = (0.666666689, -2.333333289, 0.833333322) with eps
        // step 2: s = (0.0315, 0.011875, 0.49), a = (0.045 - 0.03, 0.0225 + 0.025, -0.09 + 0.2) = (0.015, 0.0475, 0.11)
        //         s - a^2 = (0.03127500, 0.00961875, 0.4779); w -= 0.05 g2 / sqrt(.) = 0.05 (-1.6963, 2.5491, 2.8931)
        //         w = (0.751485577, -2.460786461, 0.688678979)
        // step 3: s = (0.02935, 0.0356875, 0.441), a = (0.0235, -0.00725, 0.099)
        //         s - a^2 = (0.02879775, 0.03563494, 0.431199); w -= 0.02 (0.1/0.169699, -0.5/0.188772, 0)
        //         w = (0.739700004, -2.407812558, 0.688678979)
        run<TestType, la::optim::rmsprop> r(la::optim::rmsprop(0.1, 0.9, 1e-8, 0.0, 0.0, true), w3, g3, segs3);
        require_close(r.w[0], {0.6666666888888874, -2.3333332888888947, 0.8333333222222226});
        require_close(r.w[1], {0.7514855770607216, -2.46078646137709, 0.6886789787804617});
        require_close(r.w[2], {0.7397000043524914, -2.4078125578514293, 0.6886789787804617});
    }
    SECTION("with momentum 0.5 and decay 0.1") {
        // step 1: g' = (0.6, 0.05, -1): d = 0.3 |g'|, b = g'/d = (3.333333, 3.333331, -3.333333): w = w0 - 0.1 b
        // steps 2, 3: as in the two cases above, combined (same formulas, values carried in double)
        run<TestType, la::optim::rmsprop> r(la::optim::rmsprop(0.1, 0.9, 1e-8, 0.1, 0.5, true), w3, g3, segs3);
        require_close(r.w[0], {0.6666666851851841, -2.3333331111112594, 0.8333333222222226});
        require_close(r.w[1], {0.6440643020918829, -2.47353235255466, 0.7720123093360174});
        require_close(r.w[2], {0.6219235222058382, -2.4355758126731604, 0.7597481067587764});
    }
}

// ---- Adadelta ------------------------------------------------------------------------------------

TEMPLATE_LIST_TEST_CASE("adadelta: delta = sqrt(acc + eps) / sqrt(s + eps) g", "[optim][adadelta]", lt::backends) {
    SECTION("rho 0.9, eps 1e-6, lr 1 (Zeiler's method)") {
        // step 1: s = 0.1 g1^2 = (0.025, 0.00625, 0.1); delta = sqrt(1e-6) / sqrt(s + 1e-6) g1
        //         = 1e-3 (0.5/0.1581170, 0.25/0.0790633, -1/0.3162294) = (0.00316221, 0.00316198, -0.00316226)
        //         acc = 0.1 delta^2 = (9.99960e-7, 9.99840e-7, 9.99990e-7); w = w0 - delta = (0.996837786, -2.003162025, 0.503162262)
        // step 2: s = (0.0315, 0.011875, 0.49); delta = sqrt(acc + 1e-6) / sqrt(s + 1e-6) g2
        //         = (1.41420e-3 * -0.3/0.1774852, 1.41416e-3 * 0.25/0.1089772, 1.41421e-3 * 2/0.7000007)
        //         = (-0.00239040, 0.00324418, 0.00404060): w = (0.999228181, -2.006406187, 0.499121666)
        //         acc = 0.9 acc + 0.1 delta^2 = (1.47136e-6, 1.95231e-6, 2.53263e-6)
        // step 3: s = (0.02935, 0.0356875, 0.441); delta = (1.57205e-3 * 0.1/0.171322, 1.71811e-3 * -0.5/0.188914, 0)
        //         = (0.00091761, -0.00454765, 0): w = (0.998310574, -2.001858535, 0.499121666)
        run<TestType, la::optim::adadelta> r(la::optim::adadelta(1.0, 0.9, 1e-6), w3, g3, segs3, {1.0, 1.0, 1.0});
        require_close(r.w[0], {0.9968377855834876, -2.0031620247083093, 0.5031622618488987});
        require_close(r.w[1], {0.9992281809559382, -2.006406186778532, 0.49912166589518187});
        require_close(r.w[2], {0.9983105737415305, -2.001858535162875, 0.49912166589518187});
    }
    SECTION("L2 decay 0.1 (not on the bias) and a changing rate (1, 0.5, 2)") {
        // step 1: g' = (0.6, 0.05, -1): delta = 1e-3 g' / sqrt(0.1 g'^2 + 1e-6) = (0.00316223, 0.00315597, -0.00316226)
        //         w = w0 - delta = (0.996837766, -2.003155972, 0.503162262)
        // step 2: g' = (-0.3 + 0.0996838, 0.25 - 0.2003156, 2) = (-0.2003162, 0.0496844, 2), lr 0.5
        // step 3: lr 2 (same formulas; values carried in double)
        run<TestType, la::optim::adadelta> r(la::optim::adadelta(1.0, 0.9, 1e-6, 0.1), w3, g3, segs3, {1.0, 0.5, 2.0});
        require_close(r.w[0], {0.9968377662594397, -2.003155972015489, 0.5031622618488987});
        require_close(r.w[1], {0.9975800431673653, -2.0047699906792107, 0.5011419638720402});
        require_close(r.w[2], {0.9945459026688068, -1.9939752432430329, 0.5011419638720402});
    }
}

// ---- LARS ----------------------------------------------------------------------------------------

TEMPLATE_LIST_TEST_CASE("lars: per-tensor trust ratio eta ||w|| / (||g|| + wd ||w||), momentum", "[optim][lars]",
                        lt::backends) {
    SECTION("eta 0.1, wd 0.1, momentum 0.9, eps 0") {
        // step 1: A: ||w|| = 5, ||g|| = 1: trust = 0.1 * 5 / (1 + 0.5) = 1/3
        //            u = (0.6 + 0.3, 0.8 - 0.4) / 3 = (0.3, 0.133333); v = u; w = (3 - 0.03, -4 - 0.0133333) = (2.97, -4.0133333)
        //         B: ||w|| = 0: trust 1, u = 0.5 + 0.1 * 0 = 0.5; w = -0.05
        //         bias: no trust ratio, no decay: u = g = -1; w = 0.5 + 0.1 = 0.6
        // step 2: A: ||w|| = sqrt(2.97^2 + 4.0133333^2) = 4.9927688, ||g|| = 0.5:
        //            trust = 0.49927688 / (0.5 + 0.49927688) = 0.4996382
        //            u = 0.4996382 (-0.3 + 0.297, 0.4 - 0.4013333) = (-0.0014989, -0.0006662)
        //            v = 0.9 v + u = (0.2685011, 0.1193338); w -= 0.05 v = (2.9565749, -4.0193000)
        //         B: ||w|| = 0.05, ||g|| = 0.2: trust = 0.005 / (0.2 + 0.005) = 0.0243902; u = 0.0243902 (0.2 - 0.005)
        //            = 0.0047561; v = 0.45 + 0.0047561 = 0.4547561; w = -0.05 - 0.0227378 = -0.0727378
        //         bias: v = -0.9 + 2 = 1.1; w = 0.6 - 0.055 = 0.545
        // step 3: A: g = 0: trust 1 (as PyTorch implementations), u = 0.1 w = (0.2956575, -0.4019300)
        //            v = (0.2416510 + 0.2956575, 0.1074004 - 0.4019300) = (0.5373085, -0.2945296); w -= 0.02 v
        //         B: trust = 0.1 * 0.0727378 / (0.1 + 0.00727378) = 0.0678058
        //         bias: v = 0.99 + 0.5 = 1.49; w = 0.545 - 0.0298 = 0.5152
        run<TestType, la::optim::lars> r(la::optim::lars(0.1, 0.9, 0.1, 0.1, 0.0), w4, g4, segs4);
        require_close(r.ratios[0], {1.0 / 3.0, 1.0, 1.0});
        require_close(r.ratios[1], {0.49963819919068797, 0.02439024390243903, 1.0});
        require_close(r.ratios[2], {1.0, 0.06780576255193858, 1.0});
        require_close(r.w[0], {2.97, -4.013333333333334, -0.05, 0.6});
        require_close(r.w[1], {2.9565749457298787, -4.019300024120054, -0.07273780487804879, 0.5449999999999999});
        require_close(r.w[2], {2.945828776301175, -4.013409432755033, -0.08077793902439026, 0.5151999999999999});
    }
    SECTION("eps 1e-8 in the denominator") {
        // step 1: trust_A = 0.5 / (1.5 + 1e-8) = 0.333333331111: u_A = (0.2999999980, 0.1333333324)
        run<TestType, la::optim::lars> r(la::optim::lars(0.1, 0.9, 0.1, 0.1, 1e-8), w4, g4, segs4);
        require_close(r.ratios[0], {0.33333333111111113, 1.0, 1.0});
        require_close(r.w[0], {2.9700000002, -4.013333333244445, -0.05, 0.6});
        require_close(r.w[1], {2.9565749460186295, -4.019300023991721, -0.07273780486644854, 0.5449999999999999});
        require_close(r.w[2], {2.945828776621299, -4.0134094326127565, -0.08077793902219826, 0.5151999999999999});
    }
    SECTION("defaults: eta 0.001, no decay, no momentum") {
        // step 1: trust_A = 0.001 * 5 / (1 + 1e-8) = 0.005: w_A = (3 - 0.1 * 0.003, -4 - 0.1 * 0.004) = (2.9997, -4.0004)
        // step 3: g_A = 0: the trust ratio is 1 and u = 0, so A does not move
        run<TestType, la::optim::lars> r(la::optim::lars(0.1, 0.0), w4, g4, segs4);
        require_close(r.ratios[0], {0.004999999950000001, 1.0, 1.0});
        require_close(r.w[0], {2.999700000003, -4.000399999996, -0.05, 0.6});
        require_close(r.w[1], {2.9998500042006913, -4.000600005592921, -0.050002499999875, 0.5});
        require_close(r.w[2], {2.9998500042006913, -4.000600005592921, -0.050001499949975006, 0.49});
        CHECK(la::optim::lars(0.1).trust_coefficient == 0.001);
        CHECK(la::optim::lars(0.1).momentum == 0.9);
    }
}

// ---- LAMB ----------------------------------------------------------------------------------------

TEMPLATE_LIST_TEST_CASE("lamb: Adam direction plus decoupled decay, scaled by ||w|| / ||u|| per tensor", "[optim][lamb]",
                        lt::backends) {
    SECTION("wd 0.1, beta 0.9 / 0.999, eps 1e-6") {
        // step 1: bias corrections 0.1, 0.001: mhat = g1, vhat = g1^2, r = g1 / (|g1| + 1e-6) = sign(g1) (1 - 1e-6/|g1|)
        //         A: u = r + 0.1 w = (0.9999983 + 0.3, 0.9999988 - 0.4) = (1.2999983, 0.5999988)
        //            ||u|| = sqrt(1.69 + 0.36) = 1.4317821 (to 1e-6), ||w|| = 5: trust 3.4921564
        //            w = (3 - 0.1 * 3.4921564 * 1.2999983, -4 - 0.1 * 3.4921564 * 0.5999988) = (2.5460202, -4.2095290)
        //         B: ||w|| = 0: trust 1, u = 0.999998: w = -0.0999998
        //         bias: no decay, no trust ratio: w = 0.5 + 0.1 * 0.999999 = 0.5999999
        // step 2: bias corrections 0.19, 0.001999; m_A = (0.054 - 0.03, 0.072 + 0.04) = (0.024, 0.112)
        //         v_A = (0.00035964 + 0.00009, 0.00063936 + 0.00016) = (0.00044964, 0.00079936)
        //         r_A = (0.126316 / 0.474270, 0.589474 / 0.632355) = (0.266336, 0.932178)
        //         u_A = r_A + 0.1 w_A = (0.5209385, 0.5112253); trust_A = ||w_A|| / ||u_A|| = 4.9219535 / 0.7302375 = 6.7402492
        //         w_A -= 0.05 * 6.7402492 u_A = (2.3704575, -4.3818182)
        //         B: r = 0.898573, u = 0.898573 - 0.0099999800 = 0.8885729; trust = 0.0999998 / 0.8885729 = 0.1125398
        // step 3: same formulas (bias corrections 0.271, 0.002997001); trust_A = 9.4841236, trust_B = 0.1889615
        run<TestType, la::optim::lamb> r(la::optim::lamb(0.1, 0.1), w4, g4, segs4);
        require_close(r.ratios[0], {3.4921564473552507, 1.0, 1.0});
        require_close(r.ratios[1], {6.740249188735694, 0.1125397859977215, 1.0});
        require_close(r.ratios[2], {9.484123554497701, 0.18896154326507977, 1.0});
        require_close(r.w[0], {2.546020243868922, -4.209528950322305, -0.0999998000004, 0.5999999000001});
        require_close(r.w[1], {2.3704574779340306, -4.381818235774913, -0.10499979000041999, 0.5816947352237735});
        require_close(r.w[2], {2.286442460552035, -4.435383492581243, -0.1070997858004284, 0.5733817175104892});
    }
    SECTION("no decay: u is Adam's direction") {
        // step 1: u_A = (0.9999983, 0.9999988), ||u_A|| = 1.4142124: trust 5 / 1.4142124 = 3.5355391
        //         w_A = (3 - 0.3535536, -4 - 0.3535535) = (2.6464467, -4.3535535)
        run<TestType, la::optim::lamb> r(la::optim::lamb(0.1, 0.0), w4, g4, segs4);
        require_close(r.ratios[0], {3.5355390619194536, 1.0, 1.0});
        require_close(r.w[0], {2.6464466830635827, -4.3535534642501155, -0.0999998000004, 0.5999999000001});
        require_close(r.w[1], {2.576464094241811, -4.598492654239711, -0.10499979000041999, 0.5816947352237735});
        require_close(r.w[2], {2.5475025615269384, -4.699858084198898, -0.1070997858004284, 0.5733817175104892});
    }
}

TEMPLATE_LIST_TEST_CASE("lars, lamb: tensors of many chunks and empty tensors", "[optim][lars][lamb]", lt::backends) {
    // A tensor of 1000 elements spans several of segment_norms' 256-element chunks; its norm
    // must still be the whole tensor's. Naive loop here: trust = eta ||w|| / (||g|| + wd ||w||).
    const std::size_t n = 1003;
    vec w(n), g(n);
    for (std::size_t i = 0; i < n; ++i) {
        w[i] = std::sin(0.37 * double(i)) + 0.1;
        g[i] = std::cos(0.11 * double(i)) * 0.01;
    }
    const segments s{{"a", 0, 0, 1000, true}, {"empty", 0, 1000, 0, true}, {"b", 1, 1000, 3, false}};
    double wn = 0, gn = 0;
    for (std::size_t i = 0; i < 1000; ++i) {
        wn += w[i] * w[i];
        gn += g[i] * g[i];
    }
    wn = std::sqrt(wn);
    gn = std::sqrt(gn);
    {
        driver<TestType, la::optim::lars> d(la::optim::lars(0.5, 0.9, 0.01, 0.02, 0.0), w, s);
        d.step(g, 0.5);
        const double trust = 0.02 * wn / (gn + 0.01 * wn);
        const auto r = d.st.trust_ratios(d.ctx);
        REQUIRE(r.size() == 3);
        CHECK(r[0] == Approx(trust).epsilon(1e-12));
        CHECK(r[1] == 1.0);
        CHECK(r[2] == 1.0);
        const vec after = d.weights();
        for (std::size_t i : {std::size_t(0), std::size_t(255), std::size_t(256), std::size_t(999), std::size_t(1002)}) {
            INFO("element " << i);
            const double u = i < 1000 ? trust * (g[i] + 0.01 * w[i]) : g[i];
            CHECK(after[i] == Approx(w[i] - 0.5 * u).epsilon(1e-12));
        }
    }
    {
        driver<TestType, la::optim::lamb> d(la::optim::lamb(0.5, 0.01), w, s);
        d.step(g, 0.5);
        // step 1: r = g / (|g| + 1e-6), u = r + 0.01 w on "a"
        double un = 0;
        for (std::size_t i = 0; i < 1000; ++i) {
            const double u = g[i] / (std::abs(g[i]) + 1e-6) + 0.01 * w[i];
            un += u * u;
        }
        un = std::sqrt(un);
        const auto r = d.st.trust_ratios(d.ctx);
        CHECK(r[0] == Approx(wn / un).epsilon(1e-12));
        const vec after = d.weights();
        for (std::size_t i : {std::size_t(3), std::size_t(600), std::size_t(1001)}) {
            INFO("element " << i);
            const double rr = g[i] / (std::abs(g[i]) + 1e-6);
            const double u = i < 1000 ? (wn / un) * (rr + 0.01 * w[i]) : rr;
            CHECK(after[i] == Approx(w[i] - 0.5 * u).epsilon(1e-12));
        }
    }
}

// ---- weight-decay scale --------------------------------------------------------------------------

TEMPLATE_LIST_TEST_CASE("set_weight_decay_scale(s) acts as weight decay s * wd from the next step", "[optim][decay]",
                        lt::backends) {
    using B = TestType;
    // Two steps with decay wd, then scale 2 for the third, equal a third step taken by the
    // optimizer built with decay 2 wd from the same state (0.1 * 2 is 0.2 exactly, so the
    // comparison is bit for bit). Scale 0 from the start equals the optimizer built with decay 0.
    auto check = [](const auto& with_wd, const auto& with_2wd, const auto& with_0, const vec& w0,
                    const std::vector<vec>& grads, const segments& s) {
        using Opt = std::decay_t<decltype(with_wd)>;
        driver<B, Opt> a(with_wd, w0, s);
        for (std::size_t t = 0; t < 2; ++t) a.step(grads[t], lrs[t]);
        driver<B, Opt> b(with_2wd, a.weights(), s);
        b.st.load(b.ctx, a.st.save(a.ctx), a.st.steps());
        CHECK(a.st.weight_decay_scale() == 1.0);
        a.st.set_weight_decay_scale(2.0);
        CHECK(a.st.weight_decay_scale() == 2.0);
        a.step(grads[2], lrs[2]);
        b.step(grads[2], lrs[2]);
        CHECK(a.weights() == b.weights());
        driver<B, Opt> c(with_wd, w0, s), d(with_wd, w0, s), e(with_0, w0, s);
        c.st.set_weight_decay_scale(0.0);
        for (std::size_t t = 0; t < 3; ++t) {
            c.step(grads[t], lrs[t]);
            d.step(grads[t], lrs[t]);
            e.step(grads[t], lrs[t]);
        }
        CHECK(c.weights() == e.weights());
        CHECK(c.weights() != d.weights());  // the decay does something in d
        CHECK_THROWS_AS(a.st.set_weight_decay_scale(-1.0), la::argument_error);
        CHECK_THROWS_AS(a.st.set_weight_decay_scale(std::numeric_limits<double>::quiet_NaN()), la::argument_error);
        CHECK_THROWS_AS(a.st.set_weight_decay_scale(std::numeric_limits<double>::infinity()), la::argument_error);
        CHECK(a.st.weight_decay_scale() == 2.0);  // unchanged by the refused values
    };
    namespace o = la::optim;
    SECTION("sgd") { check(o::sgd(0.1, 0.9, false, 0.1), o::sgd(0.1, 0.9, false, 0.2), o::sgd(0.1, 0.9), w3, g3, segs3); }
    SECTION("adam") {
        check(o::adam(0.1, 0.9, 0.999, 1e-8, 0.1), o::adam(0.1, 0.9, 0.999, 1e-8, 0.2), o::adam(0.1), w3, g3, segs3);
    }
    SECTION("adamw") { check(o::adamw(0.1, 0.1), o::adamw(0.1, 0.2), o::adamw(0.1, 0.0), w3, g3, segs3); }
    SECTION("rmsprop") {
        check(o::rmsprop(0.1, 0.9, 1e-8, 0.1, 0.5), o::rmsprop(0.1, 0.9, 1e-8, 0.2, 0.5),
              o::rmsprop(0.1, 0.9, 1e-8, 0.0, 0.5), w3, g3, segs3);
    }
    SECTION("adadelta") {
        check(o::adadelta(1.0, 0.9, 1e-6, 0.1), o::adadelta(1.0, 0.9, 1e-6, 0.2), o::adadelta(1.0, 0.9, 1e-6), w3, g3,
              segs3);
    }
    SECTION("lars") { check(o::lars(0.1, 0.9, 0.1, 0.1), o::lars(0.1, 0.9, 0.2, 0.1), o::lars(0.1, 0.9, 0.0, 0.1), w4, g4, segs4); }
    SECTION("lamb") { check(o::lamb(0.1, 0.1), o::lamb(0.1, 0.2), o::lamb(0.1, 0.0), w4, g4, segs4); }
}

// ---- checkpoints ---------------------------------------------------------------------------------

TEMPLATE_LIST_TEST_CASE("new optimizers: save()/load() round trip resumes identically", "[optim][checkpoint]",
                        lt::backends) {
    using B = TestType;
    auto round_trip = [](const auto& opt, const vec& w0, const std::vector<vec>& grads, const segments& s) {
        using Opt = std::decay_t<decltype(opt)>;
        driver<B, Opt> a(opt, w0, s);
        for (std::size_t t = 0; t < 3; ++t) a.step(grads[t], lrs[t]);
        driver<B, Opt> b(opt, w0, s);
        for (std::size_t t = 0; t < 2; ++t) b.step(grads[t], lrs[t]);
        auto saved = b.st.save(b.ctx);
        auto layout = b.st.layout();
        REQUIRE(layout.size() == saved.size());
        for (std::size_t k = 0; k < saved.size(); ++k) {
            CHECK(layout[k].first == saved[k].first);
            CHECK(layout[k].second == saved[k].second.size());
        }
        driver<B, Opt> c(opt, b.weights(), s);
        c.st.load(c.ctx, saved, b.st.steps());
        CHECK(c.st.steps() == 2);
        CHECK(c.st.save(c.ctx) == saved);
        c.step(grads[2], lrs[2]);
        CHECK(c.weights() == a.weights());
        driver<B, Opt> fresh(opt, b.weights(), s);  // without the state the third step differs
        fresh.step(grads[2], lrs[2]);
        CHECK(fresh.weights() != a.weights());
        auto bad = saved;
        bad[0].second.push_back(0.0);
        CHECK_THROWS_AS(c.st.load(c.ctx, bad, 2), la::checkpoint_error);
        auto renamed = saved;
        renamed[0].first = "other";
        CHECK_THROWS_AS(c.st.load(c.ctx, renamed, 2), la::checkpoint_error);
        auto fewer = saved;
        fewer.pop_back();
        CHECK_THROWS_AS(c.st.load(c.ctx, fewer, 2), la::checkpoint_error);
        return saved;
    };
    SECTION("rmsprop plain") {
        auto s = round_trip(la::optim::rmsprop(0.1, 0.9), w3, g3, segs3);
        REQUIRE(s.size() == 1);
        CHECK(s[0].first == "square_avg");
        // after two steps (see the plain rmsprop test): s = (0.0315, 0.011875, 0.49)
        require_close(s[0].second, {0.0315, 0.011875, 0.49});
    }
    SECTION("rmsprop centered with momentum") {
        auto s = round_trip(la::optim::rmsprop(0.1, 0.9, 1e-8, 0.1, 0.5, true), w3, g3, segs3);
        REQUIRE(s.size() == 3);
        CHECK(s[1].first == "momentum_buffer");
        CHECK(s[2].first == "grad_avg");
    }
    SECTION("adadelta") {
        auto s = round_trip(la::optim::adadelta(1.0, 0.9, 1e-6, 0.1), w3, g3, segs3);
        REQUIRE(s.size() == 2);
        CHECK(s[0].first == "square_avg");
        CHECK(s[1].first == "acc_delta");
    }
    SECTION("lars") {
        auto s = round_trip(la::optim::lars(0.1, 0.9, 0.1, 0.1), w4, g4, segs4);
        REQUIRE(s.size() == 1);
        CHECK(s[0].first == "velocity");
        // v after two steps with eps 1e-8 (see the lars test): (0.2685011, 0.1193338, 0.4547561, 1.1)
        require_close(s[0].second, {0.2685010836274136, 0.11933381494551713, 0.4547560973289709, 1.1});
    }
    SECTION("lamb") {
        auto s = round_trip(la::optim::lamb(0.1, 0.1), w4, g4, segs4);
        REQUIRE(s.size() == 2);
        // m after two steps: 0.9 * 0.1 g1 + 0.1 g2
        require_close(s[0].second, {0.024, 0.112, 0.065, 0.11});
    }
}

// ---- argument checks -----------------------------------------------------------------------------

TEST_CASE("new optimizers: argument validation", "[optim]") {
    CHECK_THROWS_AS(la::optim::rmsprop(0.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::rmsprop(0.1, 1.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::rmsprop(0.1, 0.9, 0.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::rmsprop(0.1, 0.9, 1e-8, -1.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::rmsprop(0.1, 0.9, 1e-8, 0.0, 1.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::adadelta(0.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::adadelta(1.0, 1.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::adadelta(1.0, 0.9, 0.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::adadelta(1.0, 0.9, 1e-6, -0.1), la::argument_error);
    CHECK_THROWS_AS(la::optim::lars(0.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::lars(0.1, 1.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::lars(0.1, 0.9, -0.1), la::argument_error);
    CHECK_THROWS_AS(la::optim::lars(0.1, 0.9, 0.0, 0.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::lars(0.1, 0.9, 0.0, 0.001, -1e-8), la::argument_error);
    CHECK_THROWS_AS(la::optim::lamb(0.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::lamb(1e-3, -0.01), la::argument_error);
    CHECK_THROWS_AS(la::optim::lamb(1e-3, 0.01, 1.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::lamb(1e-3, 0.01, 0.9, 1.0), la::argument_error);
    CHECK_THROWS_AS(la::optim::lamb(1e-3, 0.01, 0.9, 0.999, 0.0), la::argument_error);
    CHECK(la::optim::rmsprop().alpha == 0.99);  // PyTorch's defaults
    CHECK(la::optim::adadelta().lr == 1.0);
    CHECK(la::optim::lamb().eps == 1e-6);
    CHECK(la::optim::lamb().weight_decay == 0.01);
    CHECK(la::optim::lars::name() == "lars");
    CHECK(la::optim::lamb::name() == "lamb");
    CHECK(la::optim::rmsprop::name() == "rmsprop");
    CHECK(la::optim::adadelta::name() == "adadelta");

    // A segment outside the parameters is named in the error.
    const segments bad{{"0:dense.weight", 0, 0, 2, true}, {"0:dense.bias", 0, 2, 5, false}};
    const vec g{0.1, 0.2, 0.3};
    auto outside = [&](const auto& opt) {
        driver<la::reference, std::decay_t<decltype(opt)>> d(opt, w3, bad);
        CHECK_THROWS_WITH(d.step(g, 0.1), Catch::Contains("0:dense.bias") && Catch::Contains("outside"));
        CHECK(d.weights() == w3);  // nothing changed
    };
    outside(la::optim::lars(0.1));
    outside(la::optim::lamb(0.1));
    outside(la::optim::rmsprop(0.1, 0.9, 1e-8, 0.1));
    outside(la::optim::adadelta(1.0, 0.9, 1e-6, 0.1));
}
