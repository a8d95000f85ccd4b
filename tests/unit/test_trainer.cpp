// The training loop: schedules drive the learning rate, shuffling is deterministic, bad data
// gives clear errors, callbacks (progress, CSV) write what they should.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <lamina/lamina.hpp>

namespace lm = lamina;
using tiny = lm::sequential<lm::input<4>, lm::dense<8>, lm::tanh, lm::dense<3>>;

namespace {
// Three well separated classes: class c has a large value in input c.
lm::dataset<float> separable(std::size_t n) {
    lm::dataset<float> d(n, 4, 1);
    lm::random_stream r{5, 0};
    for (std::size_t i = 0; i < n; ++i) {
        std::size_t c = i % 3;
        *d.target(i) = float(c);
        for (std::size_t k = 0; k < 4; ++k) d.sample(i)[k] = 0.1f * r.uniform(i * 4 + k) + (k == c ? 2.0f : 0.0f);
    }
    return d;
}
struct lr_recorder {
    std::vector<double>* lrs;
    template <class Tr>
    void on_step_end(Tr&, const lm::step_info& i) { lrs->push_back(i.learning_rate); }
};
}  // namespace

TEST_CASE("the schedule sets each step's learning rate", "[trainer][schedule]") {
    auto d = separable(16);  // batch 4 -> 4 steps per epoch
    tiny::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    lm::schedule::warmup_then<lm::schedule::step_decay> s{{1.0, 0.0}, {1.0, 0.5}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.4}, s};
    std::vector<double> lrs;
    fit.run(d, lm::epochs{3}, lm::batch{4}, lr_recorder{&lrs});
    // Warm-up over epoch 0 from 0 to 0.4 at epoch = step/4: 0, 0.1, 0.2, 0.3; then step decay
    // by 0.5 every epoch counted from the end of warm-up: 0.4 x4 (epoch 1), 0.2 x4 (epoch 2).
    std::vector<double> expect{0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4, 0.2, 0.2, 0.2, 0.2};
    REQUIRE(lrs.size() == expect.size());
    for (std::size_t i = 0; i < lrs.size(); ++i) CHECK(lrs[i] == Approx(expect[i]).margin(1e-12));
    CHECK(fit.global_step() == 12);
    CHECK(fit.epoch() == 3);
}

TEST_CASE("training learns a separable problem and evaluate counts correctly", "[trainer]") {
    auto d = separable(60);
    tiny::model<lm::host> net{lm::seed{2}, lm::threads{2}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::adam{0.05}};
    fit.run(d, lm::epochs{10}, lm::batch{8});
    auto ev = fit.evaluate(d, lm::batch{7});  // a batch size that does not divide 60
    CHECK(ev.samples == 60);
    CHECK(ev.accuracy == 1.0);
    CHECK(ev.loss < 0.05);
    // Accuracy counts argmax == label: flip every label and nothing is right any more.
    lm::dataset<float> flipped = separable(60);
    for (std::size_t i = 0; i < 60; ++i) *flipped.target(i) = float((i % 3 + 1) % 3);
    CHECK(fit.evaluate(flipped).accuracy == 0.0);
}

TEST_CASE("shuffling depends only on the seed, not on the thread count", "[trainer][rng]") {
    auto d = separable(30);
    tiny::model<lm::host> a{lm::seed{3}, lm::threads{1}};
    tiny::model<lm::host> b{lm::seed{3}, lm::threads{2}};
    lm::trainer ta{a, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1, 0.9}};
    lm::trainer tb{b, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1, 0.9}};
    ta.run(d, lm::epochs{2}, lm::batch{5});
    tb.run(d, lm::epochs{2}, lm::batch{5});
    auto pa = a.get_parameters(), pb = b.get_parameters();
    for (std::size_t i = 0; i < pa.size(); ++i) CHECK(pa[i] == Approx(pb[i]).epsilon(1e-5).margin(1e-6));
}

TEST_CASE("bad training data gives clear errors", "[trainer][errors]") {
    tiny::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1}};
    SECTION("a label out of range names the sample") {
        auto d = separable(9);
        *d.target(4) = 3.0f;
        CHECK_THROWS_AS(fit.run(d, lm::epochs{1}, lm::batch{3}), lm::shape_error);
        CHECK_THROWS_WITH(fit.run(d, lm::epochs{1}, lm::batch{3}), Catch::Contains("sample 4") && Catch::Contains("0..2"));
    }
    SECTION("samples of the wrong size") {
        lm::dataset<float> d(5, 3, 1);
        CHECK_THROWS_WITH(fit.run(d, lm::epochs{1}, lm::batch{2}), Catch::Contains("3 values") && Catch::Contains("(4)"));
    }
    SECTION("regression targets of the wrong size") {
        lm::trainer reg{net, lm::loss::mse{}, lm::optim::sgd{0.1}};
        lm::dataset<float> d(5, 4, 1);
        CHECK_THROWS_WITH(reg.run(d, lm::epochs{1}, lm::batch{2}), Catch::Contains("needs 3"));
    }
    SECTION("a zero batch") {
        auto d = separable(9);
        CHECK_THROWS_AS(fit.run(d, lm::epochs{1}, lm::batch{0}), lm::argument_error);
    }
    SECTION("a bad optimizer setting") {
        CHECK_THROWS_WITH(lm::optim::sgd(-1.0), Catch::Contains("learning rate"));
        CHECK_THROWS_WITH(lm::optim::sgd(0.1, 1.5), Catch::Contains("momentum"));
    }
}

TEST_CASE("progress lines and the CSV log", "[trainer][callbacks]") {
    auto d = separable(12);
    tiny::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1}};
    std::string csv = "/tmp/lamina_test_metrics_" + std::to_string(::getpid()) + ".csv";
    std::remove(csv.c_str());
    std::FILE* out = std::tmpfile();
    REQUIRE(out);
    lm::csv_log log{csv};
    log.column<decltype(fit)>("train_accuracy", [&](auto& t) { return t.evaluate(d).accuracy; });
    fit.run(d, lm::epochs{3}, lm::batch{4}, lm::progress_bar{out}.plain(), std::move(log));

    std::rewind(out);
    std::vector<std::string> lines;
    char buf[512];
    while (std::fgets(buf, sizeof buf, out)) lines.emplace_back(buf);
    std::fclose(out);
    REQUIRE(lines.size() == 3);  // not a terminal: one plain line per epoch
    CHECK_THAT(lines[0], Catch::StartsWith("epoch 1/3  step 3/3  loss "));
    CHECK_THAT(lines[2], Catch::Contains("img/s") && Catch::Contains("ETA 0m00s"));

    std::ifstream f(csv);
    std::string header, row;
    std::getline(f, header);
    CHECK(header == "epoch,global_step,loss,learning_rate,images_per_second,train_accuracy");
    int rows = 0;
    while (std::getline(f, row)) {
        ++rows;
        CHECK_THAT(row, Catch::StartsWith(std::to_string(rows) + "," + std::to_string(rows * 3) + ","));
    }
    CHECK(rows == 3);
    std::remove(csv.c_str());
}

TEST_CASE("progress durations format as minutes and hours", "[trainer][callbacks]") {
    CHECK(lm::progress_bar::duration(59.4) == "0m59s");
    CHECK(lm::progress_bar::duration(61) == "1m01s");
    CHECK(lm::progress_bar::duration(3725) == "1h02m");
}

TEST_CASE("several outputs: one weighted loss per head; gradients add up; evaluate uses the classifier head",
          "[trainer][heads]") {
    // trunk 4 -> 6, heads: a 2-value regression and a 3-class classifier
    using net_t = lm::sequential<lm::input<4>, lm::dense<6>, lm::tanh, lm::heads<lm::dense<2>, lm::dense<3>>>;
    const std::size_t n = 12;
    // targets per sample: [regression (2) | class (1)]
    lm::dataset<float> d(n, 4, 3);
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t k = 0; k < 4; ++k)
            d.sample(i)[k] = float((i * 5 + k * 3) % 7) / 7.0f - 0.4f + (k == i % 3 ? 1.0f : 0.0f);
        d.target(i)[0] = 0.5f * d.sample(i)[0];
        d.target(i)[1] = -d.sample(i)[1];
        d.target(i)[2] = float(i % 3);
    }
    net_t::model<lm::reference> net{lm::seed{4}};
    lm::loss::per_output losses{lm::loss::weighted{2.0, lm::loss::mse{}},
                                lm::loss::weighted{0.5, lm::loss::softmax_cross_entropy{}}};
    lm::trainer fit{net, losses, lm::optim::sgd{0.1}};

    // one step's gradient equals 2 x (mse head alone) + 0.5 x (cross-entropy head alone)
    std::vector<std::size_t> idx(n);
    for (std::size_t i = 0; i < n; ++i) idx[i] = i;
    net_t::model<lm::reference> a{lm::seed{4}};
    const float* x = d.view().inputs;
    std::vector<float> reg(n * 2), cls(n), rows(n);
    for (std::size_t i = 0; i < n; ++i) {
        reg[2 * i] = d.target(i)[0];
        reg[2 * i + 1] = d.target(i)[1];
        cls[i] = d.target(i)[2];
    }
    lm::reference::context c;
    a.forward_train(x, n, 0);
    const double l_mse = lm::loss::mse{}.operator()<lm::reference, float>(c, a.output(0), reg.data(), a.output_gradient(0),
                                                                          rows.data(), n, 2);
    std::fill(a.output_gradient(1), a.output_gradient(1) + n * 3, 0.0f);
    a.backward();
    auto g_mse = a.get_gradients();
    a.forward_train(x, n, 0);
    const double l_ce = lm::loss::softmax_cross_entropy{}.operator()<lm::reference, float>(
        c, a.output(1), cls.data(), a.output_gradient(1), rows.data(), n, 3);
    std::fill(a.output_gradient(0), a.output_gradient(0) + n * 2, 0.0f);
    a.backward();
    auto g_ce = a.get_gradients();

    const double l = fit.train_batch(d, idx.data(), n, 0.1);
    CHECK(l == Approx(2 * l_mse + 0.5 * l_ce).epsilon(1e-6));
    // the step applied lr * (2 g_mse + 0.5 g_ce): compare parameters
    auto p0 = a.get_parameters(), p1 = net.get_parameters();
    for (std::size_t i = 0; i < p0.size(); ++i)
        CHECK(p1[i] == Approx(p0[i] - 0.1f * (2 * g_mse[i] + 0.5f * g_ce[i])).margin(1e-6));

    // training converges, evaluate reports the classifier head's accuracy
    fit.run(d, lm::epochs{300}, lm::batch{12});
    auto ev = fit.evaluate(d);
    CHECK(ev.accuracy == 1.0);
    CHECK(ev.loss < 0.2);
    // a bad class label is caught for its head
    d.target(3)[2] = 3.0f;
    CHECK_THROWS_WITH(fit.evaluate(d), Catch::Contains("sample 3") && Catch::Contains("(output 1)"));
}
