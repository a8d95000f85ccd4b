// Non-finite values: NaN and +-Inf propagate through every layer and loss as the mathematics
// and PyTorch do (on the reference and host backends), a diverging run stops with a clear
// error by default (or skips / carries on when asked), labels and batch sizes are validated
// on every training entry point.
//
// Expected values come from the definitions (PyTorch's documented results for relu(NaN),
// gelu(-inf), max_pool over a NaN, ...) and from a naive double-precision computation in this
// file, never from lamina's output.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <lamina/lamina.hpp>

namespace lm = lamina;

namespace {

const float nan_f = std::numeric_limits<float>::quiet_NaN();
const float inf_f = std::numeric_limits<float>::infinity();

/// Same class of value: both NaN, both the same infinity, or finite and close.
bool same_kind(double a, double b, double tol = 1e-4) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    if (std::isinf(a) || std::isinf(b)) return a == b;
    return std::abs(a - b) <= tol * std::max(1.0, std::abs(b));
}

std::string show(double v) { return std::to_string(v); }

/// Runs a one-layer network on x (inference and training forward) on Backend.
template <class Net, class Backend>
std::pair<std::vector<float>, std::vector<float>> run_both(const std::vector<float>& x, std::size_t batch,
                                                           const std::vector<float>& params = {}) {
    typename Net::template model<Backend> net{lm::seed{3}, lm::threads{2}};
    if (!params.empty()) net.set_parameters(params);
    constexpr std::size_t out = Net::output_shape::size;
    std::vector<float> y_inf(batch * out);
    net.predict(x.data(), y_inf.data(), batch);
    const float* yt = net.forward_train(x.data(), batch, 7);
    std::vector<float> y_train(yt, yt + batch * out);
    return {y_inf, y_train};
}

/// Host and reference agree value class by value class, in inference and training.
template <class Net>
void check_host_matches_reference(const std::vector<float>& x, std::size_t batch,
                                  const std::vector<float>& params = {}) {
    auto ref = run_both<Net, lm::reference>(x, batch, params);
    auto host = run_both<Net, lm::host>(x, batch, params);
    for (std::size_t i = 0; i < ref.first.size(); ++i) {
        INFO("output " << i << ": reference " << ref.first[i] << ", host " << host.first[i]);
        CHECK(same_kind(host.first[i], ref.first[i]));
    }
    for (std::size_t i = 0; i < ref.second.size(); ++i) {
        INFO("training output " << i << ": reference " << ref.second[i] << ", host " << host.second[i]);
        CHECK(same_kind(host.second[i], ref.second[i]));
    }
}

}  // namespace

TEMPLATE_TEST_CASE("activations map NaN and +-Inf as PyTorch does", "[nonfinite][activation]", lm::reference,
                   lm::host) {
    // x = NaN, +inf, -inf, 0, 2, -3 (then padding so the host's vector and tail paths both run)
    std::vector<float> x{nan_f, inf_f, -inf_f, 0.0f, 2.0f, -3.0f};
    for (int i = 0; i < 14; ++i) x.push_back(i % 2 ? nan_f : 1.0f);
    auto expect_with = [&](auto f) {
        std::vector<double> e;
        for (float v : x) e.push_back(f(double(v)));
        return e;
    };
    auto check = [&](auto net_tag, std::vector<double> expect, const char* name) {
        using Net = decltype(net_tag);
        auto [yi, yt] = run_both<Net, TestType>(x, 1);
        for (std::size_t i = 0; i < x.size(); ++i) {
            INFO(name << "(" << x[i] << "): expected " << show(expect[i]) << ", inference " << yi[i] << ", training "
                      << yt[i]);
            CHECK(same_kind(yi[i], expect[i]));
            CHECK(same_kind(yt[i], expect[i]));
        }
    };
    const double nan = std::numeric_limits<double>::quiet_NaN();
    // PyTorch: relu(nan) = nan, relu(inf) = inf, relu(-inf) = 0
    check(lm::sequential<lm::input<20>, lm::relu>{}, expect_with([&](double v) { return std::isnan(v) ? nan : v < 0 ? 0.0 : v; }),
          "relu");
    check(lm::sequential<lm::input<20>, lm::leaky_relu>{},
          expect_with([&](double v) { return std::isnan(v) ? nan : v < 0 ? 0.01 * v : v; }), "leaky_relu");
    check(lm::sequential<lm::input<20>, lm::sigmoid>{},
          expect_with([&](double v) { return std::isnan(v) ? nan : 1.0 / (1.0 + std::exp(-v)); }), "sigmoid");
    check(lm::sequential<lm::input<20>, lm::tanh>{}, expect_with([&](double v) { return std::tanh(v); }), "tanh");
    // gelu(-inf) = -inf * 0.5 * (1 + erf(-inf)) = -inf * 0 = NaN (PyTorch gives nan too)
    check(lm::sequential<lm::input<20>, lm::gelu>{},
          expect_with([&](double v) {
              if (std::isnan(v) || v == -INFINITY) return nan;
              return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
          }),
          "gelu");
    // inference is the identity; training keeps NaN (x * mask, 0 * NaN = NaN) and infinities
    {
        auto [yi, yt] = run_both<lm::sequential<lm::input<20>, lm::dropout_p<50>>, TestType>(x, 1);
        for (std::size_t i = 0; i < x.size(); ++i) {
            CHECK(same_kind(yi[i], x[i]));
            if (std::isnan(x[i])) CHECK(std::isnan(yt[i]));
        }
    }
}

TEMPLATE_TEST_CASE("relu's backward selects, as PyTorch's threshold_backward", "[nonfinite][activation]", lm::reference,
                   lm::host) {
    // d relu: 0 where x <= 0 (even for a NaN upstream gradient), dy elsewhere (NaN x passes dy)
    using net_t = lm::sequential<lm::input<4>, lm::relu>;
    typename net_t::template model<TestType> net{lm::seed{1}, lm::threads{1}};
    std::vector<float> x{nan_f, -1.0f, 2.0f, 0.0f}, dx(4);
    net.forward_train(x.data(), 1, 0);
    float* dy = net.output_gradient();
    float upstream[4] = {5.0f, nan_f, nan_f, nan_f};
    for (int i = 0; i < 4; ++i) dy[i] = upstream[i];
    net.backward(dx.data());
    CHECK(dx[0] == 5.0f);
    CHECK(dx[1] == 0.0f);
    CHECK(std::isnan(dx[2]));
    CHECK(dx[3] == 0.0f);
}

TEMPLATE_TEST_CASE("pooling, dense, conv, flatten and softmax propagate NaN", "[nonfinite][layers]", lm::reference,
                   lm::host) {
    SECTION("max_pool: a NaN anywhere in the window makes the max NaN; +inf wins") {
        using net_t = lm::sequential<lm::input<1, 4, 4>, lm::max_pool<2>>;
        std::vector<float> x(16, 1.0f);
        x[5] = nan_f;   // window (0,0): rows 0-1, cols 0-1 -> cell (1,1)
        x[3] = inf_f;   // window (0,1)
        x[10] = -inf_f; // window (1,1) also holds 1s: max 1
        x[12] = 4.0f;
        x[13] = nan_f;  // window (1,0): 4, NaN, 1, 1 -> NaN even after a larger value
        auto [yi, yt] = run_both<net_t, TestType>(x, 1);
        for (auto* y : {&yi, &yt}) {
            CHECK(std::isnan((*y)[0]));
            CHECK((*y)[1] == inf_f);
            CHECK(std::isnan((*y)[2]));
            CHECK((*y)[3] == 1.0f);
        }
    }
    SECTION("max_pool 3x3 stride 1 (the general path): NaN reaches every window that covers it") {
        using net_t = lm::sequential<lm::input<1, 5, 5>, lm::max_pool<3, 1>>;
        std::vector<float> x(25);
        for (int i = 0; i < 25; ++i) x[i] = float(i);
        x[0] = nan_f;  // only window (0,0) covers (0,0)
        auto [yi, yt] = run_both<net_t, TestType>(x, 1);
        for (auto* y : {&yi, &yt}) {
            CHECK(std::isnan((*y)[0]));
            for (int i = 1; i < 9; ++i) CHECK_FALSE(std::isnan((*y)[i]));
        }
    }
    SECTION("avg_pool: NaN and infinities enter the average") {
        using net_t = lm::sequential<lm::input<1, 2, 4>, lm::avg_pool<2>>;
        std::vector<float> x{nan_f, 1, inf_f, 1, 1, 1, -inf_f, 1};  // windows: {NaN,1,1,1}, {inf,1,-inf,1}
        auto [yi, yt] = run_both<net_t, TestType>(x, 1);
        CHECK(std::isnan(yi[0]));
        CHECK(std::isnan(yi[1]));  // inf + -inf
    }
    SECTION("dense: a NaN input makes its whole output row NaN, other rows stay finite") {
        using net_t = lm::sequential<lm::input<6>, lm::dense<5>>;
        std::vector<float> x(12, 0.5f);
        x[8] = nan_f;  // sample 1
        auto [yi, yt] = run_both<net_t, TestType>(x, 2);
        for (int j = 0; j < 5; ++j) {
            CHECK_FALSE(std::isnan(yi[j]));
            CHECK(std::isnan(yi[5 + j]));
            CHECK(std::isnan(yt[5 + j]));
        }
    }
    SECTION("dense + relu (fused epilogue): relu keeps the NaN") {
        using net_t = lm::sequential<lm::input<6>, lm::dense<5>, lm::relu>;
        std::vector<float> x(6, 0.5f);
        x[2] = nan_f;
        auto [yi, yt] = run_both<net_t, TestType>(x, 1);
        for (int j = 0; j < 5; ++j) {
            CHECK(std::isnan(yi[j]));
            CHECK(std::isnan(yt[j]));
        }
    }
    SECTION("conv2d: NaN reaches exactly the outputs whose receptive field holds it") {
        using net_t = lm::sequential<lm::input<1, 6, 6>, lm::conv2d<2, 3>>;  // 4x4 outputs
        std::vector<float> x(36, 0.25f);
        x[0] = nan_f;  // covered by output (0,0) only
        auto [yi, yt] = run_both<net_t, TestType>(x, 1);
        for (int k = 0; k < 2; ++k)
            for (int o = 0; o < 16; ++o) {
                CHECK(std::isnan(yi[k * 16 + o]) == (o == 0));
                CHECK(std::isnan(yt[k * 16 + o]) == (o == 0));
            }
    }
    SECTION("flatten and softmax: NaN or +inf in a row makes the softmax row NaN; -inf gives 0") {
        using net_t = lm::sequential<lm::input<1, 1, 3>, lm::flatten, lm::softmax>;
        std::vector<float> x{1.0f, nan_f, 2.0f, inf_f, 1.0f, 2.0f, -inf_f, 1.0f, 2.0f};
        auto [yi, yt] = run_both<net_t, TestType>(x, 3);
        for (int j = 0; j < 6; ++j) CHECK(std::isnan(yi[j]));
        CHECK(yi[6] == 0.0f);
        CHECK(yi[7] == Approx(1.0 / (1.0 + std::exp(1.0))));
    }
}

TEST_CASE("host and reference agree on NaN/Inf-laden inputs through every layer", "[nonfinite][layers]") {
    std::vector<float> img(2 * 2 * 6 * 6);
    for (std::size_t i = 0; i < img.size(); ++i) img[i] = float((i * 37) % 11) / 5.0f - 1.0f;
    img[3] = nan_f;
    img[40] = inf_f;
    img[77] = -inf_f;
    img[100] = nan_f;
    check_host_matches_reference<lm::sequential<lm::input<2, 6, 6>, lm::conv2d<3, 3, 1, 1>>>(img, 2);
    check_host_matches_reference<lm::sequential<lm::input<2, 6, 6>, lm::conv2d<3, 3, 2, 0>>>(img, 2);
    check_host_matches_reference<lm::sequential<lm::input<2, 6, 6>, lm::max_pool<2>>>(img, 2);
    check_host_matches_reference<lm::sequential<lm::input<2, 6, 6>, lm::max_pool<3, 2, 1>>>(img, 2);
    check_host_matches_reference<lm::sequential<lm::input<2, 6, 6>, lm::avg_pool<3, 1, 1>>>(img, 2);
    check_host_matches_reference<lm::sequential<lm::input<2, 6, 6>, lm::flatten, lm::dense<7>, lm::relu>>(img, 2);
    check_host_matches_reference<lm::sequential<lm::input<2, 6, 6>, lm::flatten, lm::dense<7>, lm::gelu>>(img, 2);
    check_host_matches_reference<lm::sequential<lm::input<2, 6, 6>, lm::flatten, lm::softmax>>(img, 2);
    check_host_matches_reference<lm::sequential<lm::input<2, 6, 6>, lm::flatten, lm::dense<9>, lm::leaky_relu>>(img, 2);
}

TEMPLATE_TEST_CASE("losses propagate NaN and infinities", "[nonfinite][loss]", lm::reference, lm::host) {
    typename TestType::context c{lm::threads{2}};
    std::vector<float> grad(6), rows(2);
    SECTION("cross-entropy: a NaN logit or a +inf logit gives a NaN loss") {
        std::vector<float> logits{1.0f, nan_f, 2.0f, 1.0f, inf_f, 2.0f}, labels{0.0f, 2.0f};
        float l = lm::loss::softmax_cross_entropy{}.operator()<TestType, float>(c, logits.data(), labels.data(),
                                                                                  grad.data(), rows.data(), 2, 3);
        CHECK(std::isnan(l));
        CHECK(std::isnan(rows[0]));
        CHECK(std::isnan(rows[1]));
    }
    SECTION("mse and mae: a NaN prediction gives NaN loss and gradient; inf gives inf") {
        std::vector<float> pred{nan_f, 1.0f, 1.0f, inf_f, 1.0f, 1.0f}, target(6, 0.0f);
        float l = lm::loss::mse{}.operator()<TestType, float>(c, pred.data(), target.data(), grad.data(), rows.data(), 2, 3);
        CHECK(std::isnan(l));
        CHECK(std::isnan(grad[0]));
        CHECK(rows[1] == inf_f);
        float m = lm::loss::mae{}.operator()<TestType, float>(c, pred.data(), target.data(), grad.data(), rows.data(), 2, 3);
        CHECK(std::isnan(m));
        CHECK(std::isnan(grad[0]));  // sign(NaN) is NaN
        CHECK(rows[1] == inf_f);
    }
}

namespace {
using mlp = lm::sequential<lm::input<4>, lm::dense<8>, lm::relu, lm::dense<3>>;

lm::dataset<float> three_classes(std::size_t n) {
    lm::dataset<float> d(n, 4, 1);
    for (std::size_t i = 0; i < n; ++i) {
        *d.target(i) = float(i % 3);
        for (std::size_t k = 0; k < 4; ++k) d.sample(i)[k] = (k == i % 3 ? 3.0f : 0.0f) + 0.01f * float(k);
    }
    return d;
}
struct step_counter {
    std::size_t* steps;
    template <class Tr>
    void on_step_end(Tr&, const lm::step_info&) { ++*steps; }
};
}  // namespace

TEST_CASE("a diverging run stops with a clear error by default", "[nonfinite][trainer]") {
    auto d = three_classes(64);
    mlp::model<lm::host> net{lm::seed{1}, lm::threads{2}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{1e20, 0.9}};
    std::size_t steps = 0;
    try {
        fit.run(d, lm::epochs{5}, lm::batch{8}, step_counter{&steps});
        FAIL("run() returned normally on a diverging run");
    } catch (const lm::numeric_error& e) {
        std::string m = e.what();
        INFO(m);
        CHECK_THAT(m, Catch::Contains("diverged"));
        CHECK_THAT(m, Catch::Contains("epoch 1, step"));
        CHECK_THAT(m, Catch::Contains("of 8"));
        CHECK_THAT(m, Catch::Contains("last finite loss"));
        CHECK_THAT(m, Catch::Contains("nan") || Catch::Contains("inf"));
    }
    CHECK(steps < 8);  // stopped in the first epoch, at the first non-finite loss
    // the failed step updated nothing: the parameters are those after the last finite step
    // (the lr 1e10 step that produced them may have made them huge, but they are what they were)
    CHECK(fit.global_step() == steps);
}

TEST_CASE("a NaN input batch stops the run on the default policy; skip_batch drops it", "[nonfinite][trainer]") {
    auto d = three_classes(24);
    d.sample(5)[2] = nan_f;  // one poisoned sample: its batch's loss is NaN
    SECTION("stop") {
        mlp::model<lm::host> net{lm::seed{1}, lm::threads{1}};
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1}};
        CHECK_THROWS_AS(fit.run(d, lm::epochs{1}, lm::batch{4}), lm::numeric_error);
        for (float w : net.get_parameters()) CHECK(std::isfinite(w));
    }
    SECTION("skip_batch: one batch an epoch is dropped, the parameters stay finite") {
        mlp::model<lm::host> net{lm::seed{1}, lm::threads{1}};
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1}};
        fit.on_non_finite(lm::non_finite::skip_batch);
        lm::step_info last;
        fit.run(d, lm::epochs{3}, lm::batch{4}, lm::at_epoch_end{[&](auto&, const lm::step_info& i) { last = i; }});
        CHECK(fit.skipped_steps() == 3);
        CHECK(last.skipped_steps == 3);
        CHECK(fit.global_step() == 18);
        CHECK(std::isfinite(last.epoch_loss));
        for (float w : net.get_parameters()) CHECK(std::isfinite(w));
        auto clean = three_classes(24);
        CHECK(fit.evaluate(clean).accuracy > 0.9);
    }
    SECTION("keep_going: the update happens and NaN spreads into the parameters; evaluate says NaN") {
        mlp::model<lm::host> net{lm::seed{1}, lm::threads{1}};
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1}};
        fit.on_non_finite(lm::non_finite::keep_going);
        fit.run(d, lm::epochs{1}, lm::batch{24});
        bool any_nan = false;
        for (float w : net.get_parameters()) any_nan = any_nan || std::isnan(w);
        CHECK(any_nan);
        CHECK(std::isnan(fit.evaluate(three_classes(6)).loss));  // not a finite, wrong number
    }
}

TEST_CASE("train_batch validates labels and indices as run() does", "[trainer][errors]") {
    mlp::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1}};
    auto d = three_classes(4);
    std::size_t idx[2] = {0, 1};
    for (float bad : {3.0f, -1.0f, 2.5f, nan_f}) {
        *d.target(1) = bad;
        INFO("label " << bad);
        CHECK_THROWS_AS(fit.train_batch(d, idx, 2, 0.1), lm::shape_error);
        CHECK_THROWS_WITH(fit.train_batch(d, idx, 2, 0.1), Catch::Contains("sample 1") && Catch::Contains("0..2"));
        CHECK_THROWS_AS(fit.evaluate(d), lm::shape_error);
        CHECK_THROWS_AS(fit.run(d, lm::epochs{1}, lm::batch{2}), lm::shape_error);
    }
    CHECK(fit.global_step() == 0);  // nothing ran
    *d.target(1) = 1.0f;
    std::size_t out_of_range[2] = {0, 4};
    CHECK_THROWS_WITH(fit.train_batch(d, out_of_range, 2, 0.1), Catch::Contains("index 4"));
    CHECK_NOTHROW(fit.train_batch(d, idx, 2, 0.1));
    CHECK(fit.global_step() == 1);
}

TEST_CASE("regression targets must be finite", "[trainer][errors]") {
    using reg = lm::sequential<lm::input<2>, lm::dense<2>>;
    reg::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    lm::trainer fit{net, lm::loss::mse{}, lm::optim::sgd{0.1}};
    lm::dataset<float> d(3, 2, 2);
    *(d.target(2) + 1) = inf_f;
    CHECK_THROWS_WITH(fit.run(d, lm::epochs{1}, lm::batch{3}),
                      Catch::Contains("sample 2") && Catch::Contains("non-finite target"));
}

TEST_CASE("batch sizes whose buffers overflow are a clear error, not a wild write", "[network][errors]") {
    mlp::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    std::vector<float> x(4), y(3);
    CHECK_THROWS_AS(net.predict(x.data(), y.data(), std::size_t(1) << 60), lm::argument_error);
    CHECK_THROWS_WITH(net.predict(x.data(), y.data(), std::size_t(1) << 60), Catch::Contains("too large"));
    CHECK_THROWS_AS(net.plan(std::size_t(1) << 62), lm::argument_error);
    // Below the overflow bound but far beyond memory: an allocation error naming the batch.
    const std::size_t huge = net.max_batch() / 2;
    REQUIRE(huge > (std::size_t(1) << 36));
    try {
        net.predict(x.data(), y.data(), huge);
        FAIL("a batch of " << huge << " samples was planned");
    } catch (const lm::allocation_error& e) {
        CHECK_THAT(e.what(), Catch::Contains(std::to_string(huge)));
    }
    // The model is still usable afterwards.
    net.predict(x.data(), y.data(), 1);
    CHECK(std::isfinite(y[0]));
}
