// End to end on real MNIST: an MLP trained one epoch over images 0..7999 (Adam 1e-3,
// batch 64, fixed seed) reaches at least 90% on the held-out images 8000..9999.
#include <catch2/catch.hpp>

#include <cstdlib>

#include <lamina/data/idx.hpp>
#include <lamina/lamina.hpp>

namespace lm = lamina;
using mlp = lm::sequential<lm::input<784>, lm::dense<128, lm::init::he_uniform>, lm::relu, lm::dense<10>>;

TEST_CASE("an MLP learns MNIST in one epoch", "[e2e][mnist]") {
    auto data = lm::data::mnist_train_test(std::getenv("LAMINA_DATA_DIR"));
    REQUIRE(data.train.size() >= 8000);
    mlp::model<lm::host> net{lm::seed{1}, lm::threads{2}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::adam{1e-3}};
    auto before = fit.evaluate(data.test);
    CHECK(before.accuracy < 0.3);  // untrained: near chance
    fit.run(data.train, lm::epochs{1}, lm::batch{64});
    auto after = fit.evaluate(data.test);
    INFO("held-out accuracy " << after.accuracy);
    CHECK(after.accuracy >= 0.90);
    CHECK(after.loss < before.loss);
}

TEST_CASE("LeNet-5 trains on real MNIST on the host and reference backends alike", "[e2e][mnist]") {
    // A few steps from the same seed: host and reference give the same parameters within
    // float tolerance (same RNG streams, same shuffles; only summation order differs).
    using lenet5 = lm::sequential<lm::input<1, 28, 28>, lm::conv2d<6, 5>, lm::relu, lm::max_pool<2>, lm::conv2d<16, 5>,
                                  lm::relu, lm::max_pool<2>, lm::flatten, lm::dense<120>, lm::relu, lm::dense<84>,
                                  lm::relu, lm::dense<10>>;
    auto data = lm::data::mnist_train_test(std::getenv("LAMINA_DATA_DIR"));
    auto small = data.train.view().slice(0, 96);  // 3 steps: the naive reference is slow under ASan
    lenet5::model<lm::host> a{lm::seed{5}, lm::threads{2}};
    lenet5::model<lm::reference> b{lm::seed{5}};
    lm::trainer ta{a, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05, 0.9}};
    lm::trainer tb{b, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05, 0.9}};
    ta.run(small, lm::epochs{1}, lm::batch{32});
    tb.run(small, lm::epochs{1}, lm::batch{32});
    auto pa = a.get_parameters(), pb = b.get_parameters();
    float m = 0;
    for (float v : pb) m = std::max(m, std::abs(v));
    std::size_t bad = 0;
    for (std::size_t i = 0; i < pa.size(); ++i)
        if (std::abs(pa[i] - pb[i]) > 1e-4f * std::max(std::abs(pa[i]), std::abs(pb[i])) + 1e-5f * m) ++bad;
    // Steps of SGD amplify float reassociation a little: the bound is 10x the kernel tolerance.
    CHECK(bad == 0);
}
