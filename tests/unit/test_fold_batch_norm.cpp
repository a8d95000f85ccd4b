// Folding batch norm into the preceding convolution for inference: the folded network (a type
// transformation) has no batch_norm leaves, a bias on each folded conv, and predicts what
// the trained network predicts in eval mode, within 1e-5.
#include <catch2/catch.hpp>

#include <lamina/lamina.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace lm = lamina;
namespace md = lamina::models;

namespace {
template <class Net>
void check_folding(std::size_t steps) {
    using folded = lm::fold_batch_norm_t<Net>;
    typename Net::template model<lm::host> net{lm::seed{5}, lm::threads{2}};
    constexpr std::size_t in = Net::template model<lm::host>::input_size;
    const std::size_t B = 8;
    std::vector<float> x(B * in), labels(B);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float((i * 29) % 83) / 83.0f - 0.5f;
    for (std::size_t i = 0; i < B; ++i) labels[i] = float(i % 10);
    lm::dataset_view<float> d{x.data(), labels.data(), B, in, 1};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05, 0.9}};
    fit.run(d, lm::epochs{steps}, lm::batch{4});  // batch statistics move the running ones

    typename folded::template model<lm::host> fast{lm::seed{0}, lm::threads{2}};
    lm::fold_batch_norm(net, fast);
    for (const auto& l : fast.graph().leaves()) CHECK(l.name.find("batch_norm") == std::string::npos);
    CHECK(fast.state_count == 0);
    CHECK(fast.flops_per_sample < net.flops_per_sample);
    std::vector<float> y(B * 10), z(B * 10);
    net.predict(x.data(), y.data(), B);
    fast.predict(x.data(), z.data(), B);
    double worst = 0;
    for (std::size_t i = 0; i < y.size(); ++i)
        worst = std::max(worst, std::abs(double(y[i]) - z[i]) / std::max(1.0, std::abs(double(y[i]))));
    INFO("largest relative difference " << worst);
    CHECK(worst < 1e-5);
}
}  // namespace

TEST_CASE("fold_batch_norm: ResNet-20 with option-A shortcuts", "[fold][batch_norm]") {
    using net = md::resnet20<10, 1, 16, 16>;
    using folded = lm::fold_batch_norm_t<net>;
    // 19 batch norms of 2 x 16/32/64 parameters become 19 conv biases of 16/32/64
    STATIC_REQUIRE(folded::model<lm::host>::parameter_count ==
                   net::model<lm::host>::parameter_count - (16 * 7 + 32 * 6 + 64 * 6));
    check_folding<net>(3);
}

TEST_CASE("fold_batch_norm: projection shortcuts and bottlenecks", "[fold][batch_norm]") {
    using net = lm::sequential<lm::input<3, 12, 12>, md::conv_bn<8, 3>, lm::batch_norm, lm::relu,
                               md::basic_block<12, 2, lm::shortcut_option::projection>, md::bottleneck<4, 16, 1, true>,
                               lm::global_avg_pool, lm::dense<10>>;
    check_folding<net>(4);
}
