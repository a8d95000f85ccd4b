// Batch norm: train and eval semantics and running statistics against hand-computed values
// (PyTorch's conventions: biased variance to normalise, unbiased in the running estimate,
// running = (1 - m) running + m batch), gradients against central differences, per channel
// for images and per feature for vectors, on the reference and host backends.
#include <catch2/catch.hpp>

#include "gradient_check.hpp"

#include <lamina/layers/activations.hpp>
#include <lamina/layers/batch_norm.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/layers/dense.hpp>
#include <lamina/layers/flatten.hpp>

#include <cmath>
#include <vector>

namespace la = lamina;
namespace lt = lamina::test;
using vec = std::vector<double>;

TEMPLATE_LIST_TEST_CASE("batch_norm: hand-computed train and eval outputs and running statistics",
                        "[layers][batch_norm]", lt::backends) {
    using B = TestType;
    // two channels of 1x2 pixels, batch 2; x[n][c][w]
    lt::node_harness<la::batch_norm, la::shape<2, 1, 2>, B> h(2);
    const vec x{1, 2, 0, 0,   // sample 0: channel 0 = {1, 2}, channel 1 = {0, 0}
                3, 4, 0, 4};  // sample 1: channel 0 = {3, 4}, channel 1 = {0, 4}
    h.set_params({2.0, 0.5, 1.0, -1.0});  // gamma = {2, 0.5}, beta = {1, -1}
    // channel 0: mean 2.5, biased var 1.25 (unbiased 5/3); channel 1: mean 1, var 3 (unbiased 4)
    const double e = 1e-5, is0 = 1 / std::sqrt(1.25 + e), is1 = 1 / std::sqrt(3.0 + e);
    auto y = h.forward_train(x, 0);
    const vec expect{2 * (1 - 2.5) * is0 + 1, 2 * (2 - 2.5) * is0 + 1, 0.5 * (0 - 1) * is1 - 1, 0.5 * (0 - 1) * is1 - 1,
                     2 * (3 - 2.5) * is0 + 1, 2 * (4 - 2.5) * is0 + 1, 0.5 * (0 - 1) * is1 - 1, 0.5 * (4 - 1) * is1 - 1};
    for (std::size_t i = 0; i < 8; ++i) CHECK(y[i] == Approx(expect[i]).epsilon(1e-12));
    // running statistics after one step, momentum 0.1, from mean 0 and variance 1
    auto st = h.model().get_state();
    REQUIRE(st.size() == 4);  // running_mean[2], running_var[2]
    CHECK(st[0] == Approx(0.25).epsilon(1e-12));
    CHECK(st[1] == Approx(0.1).epsilon(1e-12));
    CHECK(st[2] == Approx(0.9 + 0.1 * 5.0 / 3.0).epsilon(1e-12));
    CHECK(st[3] == Approx(0.9 + 0.1 * 4.0).epsilon(1e-12));
    // a second step moves them again
    h.forward_train(x, 1);
    st = h.model().get_state();
    CHECK(st[0] == Approx(0.9 * 0.25 + 0.25).epsilon(1e-12));
    CHECK(st[3] == Approx(0.9 * 1.3 + 0.4).epsilon(1e-12));
    // eval mode (predict) normalises with the running statistics
    auto z = h.forward(x);
    for (std::size_t i = 0; i < 8; ++i) {
        const std::size_t c = (i / 2) % 2;
        const double g = c ? 0.5 : 2.0, b = c ? -1.0 : 1.0;
        CHECK(z[i] == Approx((x[i] - st[c]) / std::sqrt(st[2 + c] + e) * g + b).epsilon(1e-12));
    }
    // the state tensors are listed as running state, gamma/beta as trainable without decay
    const auto& segs = h.model().parameter_segments();
    REQUIRE(segs.size() == 2);
    CHECK(segs[0].name == "0:batch_norm.gamma");
    CHECK_FALSE(segs[0].decay);
    CHECK(h.model().state_segments()[1].name == "0:batch_norm.running_var");
}

TEMPLATE_LIST_TEST_CASE("batch_norm: per feature on vectors", "[layers][batch_norm]", lt::backends) {
    using B = TestType;
    lt::node_harness<la::batch_norm, la::shape<2>, B> h(3);
    h.set_params({1, 1, 0, 0});
    auto y = h.forward_train({1, 10, 2, 20, 3, 60}, 0);
    // feature 0: {1,2,3} mean 2 var 2/3; feature 1: {10,20,60} mean 30 var 1400/3
    const double a = 1 / std::sqrt(2.0 / 3 + 1e-5), b = 1 / std::sqrt(1400.0 / 3 + 1e-5);
    const vec expect{-a, -20 * b, 0, -10 * b, a, 30 * b};
    for (std::size_t i = 0; i < 6; ++i) CHECK(y[i] == Approx(expect[i]).epsilon(1e-12));
}

TEMPLATE_LIST_TEST_CASE("batch_norm: gradients in train mode", "[layers][batch_norm][gradient]", lt::backends) {
    using B = TestType;
    lt::gradient_check_options o;
    o.batch = 3;
    o.inference_matches_train = false;  // eval mode uses the running statistics
    o.param_scale = 1.0;
    SECTION("images, per channel") {
        auto r = lt::check_layer_gradients<la::batch_norm, la::shape<3, 4, 5>, B>(o);
        INFO(r.describe());
        CHECK(r.ok());
        CHECK(r.max_abs_dx > 1e-3);
    }
    SECTION("vectors, per feature") {
        auto r = lt::check_layer_gradients<la::batch_norm, la::shape<7>, B>(o);
        INFO(r.describe());
        CHECK(r.ok());
    }
    SECTION("conv -> batch norm -> relu (relu runs in place over the batch norm output)") {
        o.input = lt::input_kind::away_from_zero;
        auto r = lt::check_chain_gradients<la::shape<2, 5, 5>, B, la::conv2d<3, 3, 1, 1, la::init::he_uniform, false>,
                                           la::batch_norm, la::relu, la::flatten, la::dense<4>>(o);
        INFO(r.describe());
        CHECK(r.ok());
        CHECK(r.max_abs_dw > 1e-3);
    }
}

TEMPLATE_LIST_TEST_CASE("batch_norm_zero_gamma starts as beta and keeps training gamma", "[layers][batch_norm]",
                        lt::backends) {
    using B = TestType;
    lt::node_harness<la::batch_norm_zero_gamma, la::shape<2, 2, 2>, B> h(2);
    auto p = h.params();
    CHECK(p == vec{0, 0, 0, 0});  // gamma 0, beta 0
    auto y = h.forward_train(lt::uniform_vector(16, {1, 2}, -1, 1), 0);
    for (double v : y) CHECK(v == 0.0);
    auto dx = h.backward(vec(16, 1.0));
    auto g = h.param_grads();
    CHECK(g[2] == Approx(8.0));  // dbeta = sum of dy over the channel's 8 values
    for (double v : dx) CHECK(v == 0.0);  // gamma = 0: nothing flows back
}
