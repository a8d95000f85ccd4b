// The shipped models: parameter counts and output shapes checked at compile time against the
// papers' and torchvision's figures, the host backend against the reference on ResNet-20, and
// one training step of ResNet-50 at batch 2 lowering its loss on a fixed batch (label "slow":
// the sanitizer stage leaves it out).
#include <catch2/catch.hpp>

#include <lamina/lamina.hpp>

#include <cmath>
#include <vector>

namespace lm = lamina;
namespace md = lamina::models;

// He et al. (2016), CIFAR-10: ResNet-20 has 0.27M parameters; 269,722 with option A
// (parameter-free) shortcuts, 272,474 with projection (option B) shortcuts in the two
// downsampling blocks (+ 16*32 + 64 and 32*64 + 128 for their 1x1 convs and batch norms).
static_assert(md::resnet20<10>::model<lm::host>::parameter_count == 269722);
static_assert(md::resnet20<10, 3, 32, 32, lm::shortcut_option::projection>::model<lm::host>::parameter_count == 272474);
static_assert(md::resnet32<10>::model<lm::host>::parameter_count == 464154);
static_assert(md::resnet56<10>::model<lm::host>::parameter_count == 853018);
// torchvision's resnet50(): 25,557,032 parameters
static_assert(md::resnet50<1000>::model<lm::host>::parameter_count == 25557032);
static_assert(std::is_same_v<md::resnet50<1000>::output_shape, lm::shape<1000>>);
static_assert(std::is_same_v<md::resnet20<10, 1, 32, 32>::output_shape, lm::shape<10>>);
static_assert(std::is_same_v<md::resnet20<10>::model<lm::host>::shape_at<4>, lm::shape<16, 32, 32>>);  // after stage 1
static_assert(std::is_same_v<md::resnet20<10>::model<lm::host>::shape_at<6>, lm::shape<64, 8, 8>>);   // after stage 3

TEST_CASE("ResNet-20: running state, summary, host equals reference over a training step", "[models][resnet]") {
    using net_t = md::resnet20<10, 3, 32, 32>;
    net_t::model<lm::reference> ref{lm::seed{2}};
    net_t::model<lm::host> host{lm::seed{2}, lm::threads{2}};
    // 19 batch norms: 16 * 7 + 32 * 6 + 64 * 6 channels, mean and variance each
    CHECK(ref.state_count == 2 * (16 * 7 + 32 * 6 + 64 * 6));
    CHECK_THAT(host.summary(), Catch::Contains("269722 parameters"));
    const std::size_t B = 2;
    std::vector<float> x(B * 3 * 32 * 32), labels{3, 7};
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float((i * 31) % 97) / 97.0f - 0.5f;
    lm::dataset_view<float> d{x.data(), labels.data(), B, 3 * 32 * 32, 1};
    std::size_t idx[2] = {0, 1};
    lm::trainer tr{ref, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1, 0.9}};
    lm::trainer th{host, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1, 0.9}};
    const double lr = tr.train_batch(d, idx, B, 0.1), lh = th.train_batch(d, idx, B, 0.1);
    CHECK(lh == Approx(lr).epsilon(1e-4));
    auto pr = ref.get_parameters(), ph = host.get_parameters();
    double worst = 0;
    for (std::size_t i = 0; i < pr.size(); ++i) worst = std::max(worst, double(std::abs(pr[i] - ph[i])));
    CHECK(worst < 1e-4);
    auto sr = ref.get_state(), sh = host.get_state();
    for (std::size_t i = 0; i < sr.size(); ++i) CHECK(sh[i] == Approx(sr[i]).epsilon(1e-4).margin(1e-5));
}

TEST_CASE("ResNet-50: one training step at batch 2 lowers the loss on a fixed batch", "[models][resnet][slow]") {
    using net_t = md::resnet50<1000>;
    net_t::model<lm::host> net{lm::seed{3}, lm::threads{2}};
    const std::size_t B = 2, in = 3 * 224 * 224;
    std::vector<float> x(B * in), labels{17, 512};
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float((i * 131) % 257) / 257.0f - 0.5f;
    lm::dataset_view<float> d{x.data(), labels.data(), B, in, 1};
    std::size_t idx[2] = {0, 1};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.01, 0.9}};
    const double before = fit.train_batch(d, idx, B, 0.01);
    const double after = fit.train_batch(d, idx, B, 0.01);  // its loss is measured before its update
    INFO("loss before " << before << ", after one step " << after);
    CHECK(std::isfinite(before));
    CHECK(after < before);
}
