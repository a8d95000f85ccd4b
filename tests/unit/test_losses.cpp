// Losses: softmax_cross_entropy (with and without label smoothing), mse, mae. Values and
// gradients against hand-derived numbers, gradients against central differences of the
// returned loss, and the batch-mean semantics (loss = mean of the rows, grad = d mean / d pred).
#include <catch2/catch.hpp>

#include "gradient_check.hpp"

#include <lamina/core/error.hpp>
#include <lamina/losses/mae.hpp>
#include <lamina/losses/mse.hpp>
#include <lamina/losses/softmax_cross_entropy.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

namespace la = lamina;
namespace lt = lamina::test;
using vec = std::vector<double>;

namespace {

struct loss_result {
    double loss;
    vec grad, rows;
};

/// Calls loss L on backend B with host vectors (device copies in between).
template <class B, class L>
loss_result eval(const L& loss, const vec& pred, const vec& targets, std::size_t rows, std::size_t cols) {
    typename B::context c{};
    typename B::template buffer<double> p, t, g, lr;
    p.allocate(pred.size());
    t.allocate(targets.size());
    g.allocate(pred.size());
    lr.allocate(rows);
    B::upload(c, p.data(), pred.data(), pred.size());
    B::upload(c, t.data(), targets.data(), targets.size());
    B::fill(c, g.data(), pred.size(), 999.0);  // must be overwritten
    loss_result r;
    r.loss = loss.template operator()<B, double>(c, p.data(), t.data(), g.data(), lr.data(), rows, cols);
    r.grad.resize(pred.size());
    r.rows.resize(rows);
    B::download(c, r.grad.data(), g.data(), pred.size());
    B::download(c, r.rows.data(), lr.data(), rows);
    return r;
}

/// Gradient of the returned (batch-mean) loss vs central differences, h = 1e-6.
template <class B, class L>
void check_numeric_gradient(const L& loss, const vec& pred, const vec& targets, std::size_t rows, std::size_t cols) {
    auto r = eval<B>(loss, pred, targets, rows, cols);
    const double h = 1e-6;
    for (std::size_t i = 0; i < pred.size(); ++i) {
        vec pp = pred;
        pp[i] += h;
        double fp = eval<B>(loss, pp, targets, rows, cols).loss;
        pp[i] = pred[i] - h;
        double fm = eval<B>(loss, pp, targets, rows, cols).loss;
        double n = (fp - fm) / (2 * h);
        INFO("entry " << i << ": analytic " << r.grad[i] << ", numeric " << n);
        CHECK(std::abs(r.grad[i] - n) <= 1e-7 * std::max({1.0, std::abs(n), std::abs(r.grad[i])}));
    }
}

void require_close(const vec& got, const vec& expected, double rel = 1e-12) {
    REQUIRE(got.size() == expected.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i);
        CHECK(got[i] == Approx(expected[i]).epsilon(rel).margin(1e-15));
    }
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("softmax_cross_entropy: hand-computed values and gradients", "[loss][ce]", lt::backends) {
    using B = TestType;
    // Row 0: logits (1, 2, 3), label 2. LSE = log(e + e^2 + e^3) = 3 + log(1 + e^-1 + e^-2)
    //   loss0 = LSE - 3 = log(1.3678794411714423 + 0.1353352832366127) = log(1.503214724408055)
    //         = 0.40760596444438013
    //   softmax = e^k / sum = (0.09003057317038046, 0.24472847105479767, 0.6652409557748219)
    const vec p0{0.09003057317038046, 0.24472847105479767, 0.6652409557748219};
    const double loss0 = 0.40760596444438013;
    SECTION("one row") {
        auto r = eval<B>(la::loss::softmax_cross_entropy{}, {1, 2, 3}, {2}, 1, 3);
        CHECK(r.loss == Approx(loss0).epsilon(1e-13));
        // d loss / d logit_c = softmax_c - onehot_c
        require_close(r.grad, {p0[0], p0[1], p0[2] - 1});
        // invariant under a shift of the logits (and no overflow at 1000)
        auto big = eval<B>(la::loss::softmax_cross_entropy{}, {1001, 1002, 1003}, {2}, 1, 3);
        CHECK(big.loss == Approx(loss0).epsilon(1e-12));
        require_close(big.grad, {p0[0], p0[1], p0[2] - 1}, 1e-11);
    }
    // Row 1: logits (0.5, -1, 2), label 1. LSE = 0.5 + log(1 + e^-1.5 + e^1.5) = 2.241311296657157
    //   loss1 = LSE - (-1) = 3.241311296657157
    //   softmax = (0.1752903921400367, 0.039112573270687456, 0.7855970345892759)
    const vec p1{0.1752903921400367, 0.039112573270687456, 0.7855970345892759};
    const double loss1 = 3.241311296657157;
    SECTION("batch of two: mean loss, gradient divided by the batch") {
        auto r = eval<B>(la::loss::softmax_cross_entropy{}, {1, 2, 3, 0.5, -1, 2}, {2, 1}, 2, 3);
        // (0.40760596444438013 + 3.241311296657157) / 2 = 1.8244586305507686
        CHECK(r.loss == Approx(1.8244586305507686).epsilon(1e-13));
        require_close(r.rows, {loss0, loss1});
        require_close(r.grad, {p0[0] / 2, p0[1] / 2, (p0[2] - 1) / 2, p1[0] / 2, (p1[1] - 1) / 2, p1[2] / 2});
    }
    SECTION("label smoothing 0.1") {
        // target = 0.9 onehot + 0.1/3 everywhere; loss = -sum_c t_c (x_c - LSE) = LSE - sum_c t_c x_c
        //   = LSE - (0.9 x_label + 0.1 mean(x))
        // row 0: mean(x) = 2: loss = LSE - (2.7 + 0.2) = loss0 + 0.1 = 0.5076059644443801
        // row 1: mean(x) = 0.5: loss = LSE - (-0.9 + 0.05) = 2.241311296657157 + 0.85 = 3.091311296657157
        // gradient = (softmax - target) / rows
        la::loss::softmax_cross_entropy ls{0.1};
        auto r = eval<B>(ls, {1, 2, 3, 0.5, -1, 2}, {2, 1}, 2, 3);
        require_close(r.rows, {0.5076059644443801, 3.091311296657157});
        CHECK(r.loss == Approx((0.5076059644443801 + 3.091311296657157) / 2).epsilon(1e-13));
        const double lo = 0.1 / 3, hi = 0.9 + 0.1 / 3;
        require_close(r.grad, {(p0[0] - lo) / 2, (p0[1] - lo) / 2, (p0[2] - hi) / 2, (p1[0] - lo) / 2,
                               (p1[1] - hi) / 2, (p1[2] - lo) / 2});
    }
    SECTION("invalid smoothing is rejected") {
        CHECK_THROWS_AS(eval<B>(la::loss::softmax_cross_entropy{1.0}, {1, 2}, {0}, 1, 2), la::argument_error);
        CHECK_THROWS_AS(eval<B>(la::loss::softmax_cross_entropy{-0.1}, {1, 2}, {0}, 1, 2), la::argument_error);
    }
    STATIC_REQUIRE(la::loss::softmax_cross_entropy::target_size(10) == 1);
    STATIC_REQUIRE(la::loss::softmax_cross_entropy::classification);
}

TEMPLATE_LIST_TEST_CASE("softmax_cross_entropy: gradient vs central differences", "[loss][ce][gradient]",
                        lt::backends) {
    using B = TestType;
    const std::size_t rows = 4, cols = 7;
    vec logits = lt::random_vector(rows * cols, {11, 1});
    for (auto& v : logits) v *= 2;
    const vec labels{0, 6, 3, 3};
    check_numeric_gradient<B>(la::loss::softmax_cross_entropy{}, logits, labels, rows, cols);
    check_numeric_gradient<B>(la::loss::softmax_cross_entropy{0.2}, logits, labels, rows, cols);
    // the batch-mean loss equals the mean of the single-row losses
    double sum = 0;
    for (std::size_t r = 0; r < rows; ++r)
        sum += eval<B>(la::loss::softmax_cross_entropy{}, vec(logits.begin() + r * cols, logits.begin() + (r + 1) * cols),
                       {labels[r]}, 1, cols)
                   .loss;
    CHECK(eval<B>(la::loss::softmax_cross_entropy{}, logits, labels, rows, cols).loss ==
          Approx(sum / rows).epsilon(1e-13));
}

TEMPLATE_LIST_TEST_CASE("mse: hand-computed values and gradients", "[loss][mse]", lt::backends) {
    using B = TestType;
    // pred = [[1, 2, 3], [0, -1, 0.5]], target = [[0, 4, 3], [1, -1, -0.5]]
    // d = p - t = [[1, -2, 0], [-1, 0, 1]]
    // rows: (1 + 4 + 0)/3 = 5/3, (1 + 0 + 1)/3 = 2/3; loss = (5/3 + 2/3)/2 = 7/6
    // grad = d(loss)/dp = 2 d / (cols * rows) = d / 3
    auto r = eval<B>(la::loss::mse{}, {1, 2, 3, 0, -1, 0.5}, {0, 4, 3, 1, -1, -0.5}, 2, 3);
    CHECK(r.loss == Approx(7.0 / 6.0).epsilon(1e-14));
    require_close(r.rows, {5.0 / 3.0, 2.0 / 3.0});
    require_close(r.grad, {1.0 / 3, -2.0 / 3, 0, -1.0 / 3, 0, 1.0 / 3});
    // numeric
    vec pred = lt::random_vector(15, {12, 1}), target = lt::random_vector(15, {12, 2});
    check_numeric_gradient<B>(la::loss::mse{}, pred, target, 3, 5);
    STATIC_REQUIRE(la::loss::mse::target_size(10) == 10);
}

TEMPLATE_LIST_TEST_CASE("mae: hand-computed values and gradients", "[loss][mae]", lt::backends) {
    using B = TestType;
    // same data as mse: |d| = [[1, 2, 0], [1, 0, 1]]
    // rows: 3/3 = 1, 2/3; loss = (1 + 2/3)/2 = 5/6
    // grad = sign(d) / (cols * rows) = sign(d) / 6, 0 where d == 0 (PyTorch's subgradient)
    auto r = eval<B>(la::loss::mae{}, {1, 2, 3, 0, -1, 0.5}, {0, 4, 3, 1, -1, -0.5}, 2, 3);
    CHECK(r.loss == Approx(5.0 / 6.0).epsilon(1e-14));
    require_close(r.rows, {1.0, 2.0 / 3.0});
    require_close(r.grad, {1.0 / 6, -1.0 / 6, 0, -1.0 / 6, 0, 1.0 / 6});
    // numeric, away from the kink d = 0
    vec pred = lt::random_vector(15, {13, 1}, lt::input_kind::away_from_zero, 0.1);
    vec target(15, 0.0);
    check_numeric_gradient<B>(la::loss::mae{}, pred, target, 5, 3);
}
