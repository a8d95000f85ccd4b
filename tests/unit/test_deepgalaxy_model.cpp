// The DeepGalaxy networks (models/deepgalaxy.hpp): parameter and running-state counts against
// the test's own derivation from the layer table (and VGG16's well-known 14,714,688 convolution
// parameters for the paper's encoder), shapes at compile time at 512x512 (the paper) and at the
// example's 64x64; one training step at batch 2 lowering the loss of a fixed batch for fcae,
// fcae_classifier (two heads, loss::per_output), vae and classifier; the VAE's added loss
// against the KL derived by hand from vae_encoder's [mu, logvar]; copy_leading_parameters and
// nearest_in_latent against naive loops.
#include <catch2/catch.hpp>

#include <lamina/lamina.hpp>
#include <lamina/models/deepgalaxy.hpp>

#include <cmath>
#include <ratio>
#include <type_traits>
#include <vector>

namespace lm = lamina;
namespace dg = lamina::models::deepgalaxy;

namespace {
// ---- counts derived by hand from the layer table ----
// conv KxK from Cin to Cout channels (bias optional)
constexpr std::size_t conv(std::size_t cin, std::size_t cout, std::size_t k, bool bias = true) {
    return cin * cout * k * k + (bias ? cout : 0);
}
constexpr std::size_t dense(std::size_t in, std::size_t out) { return in * out + out; }
// conv3x3 without bias + batch norm (gamma, beta)
constexpr std::size_t conv_bn(std::size_t cin, std::size_t cout) { return conv(cin, cout, 3, false) + 2 * cout; }

// the example's configuration: 64x64, groups 8(1) 16(1) 32(2), centre 32, decoder 16-8-8
constexpr std::size_t small_encoder = conv(1, 8, 3) + conv(8, 16, 3) + conv(16, 32, 3) + conv(32, 32, 3);
constexpr std::size_t small_centre = 2 * conv_bn(32, 32);
constexpr std::size_t small_decoder = conv_bn(32, 16) + conv_bn(16, 16) + conv_bn(16, 8) + conv_bn(8, 8) +
                                      conv_bn(8, 8) + conv_bn(8, 8) + conv(8, 1, 3);
constexpr std::size_t small_bn_channels = 32 + 32 + 16 + 16 + 8 + 8 + 8 + 8;
constexpr std::size_t small_D = 32 * 8 * 8;  // latent map 8x8x32
// classifier: conv1x1 32 -> 16, dense 1024 -> 64, dense 64 -> 12
constexpr std::size_t small_classifier = conv(32, 16, 1) + dense(16 * 8 * 8, 64) + dense(64, 12);
// VAE: dense D -> 256, 256 -> 256, 256 -> 2*16; decoder 16 -> 256, 256 -> 256, 256 -> D
constexpr std::size_t small_vae_encoder = dense(small_D, 256) + dense(256, 256) + dense(256, 32);
constexpr std::size_t small_vae = small_vae_encoder + dense(16, 256) + dense(256, 256) + dense(256, small_D);

// the paper's: VGG16's 13 convolutions, centre 512, decoder 256-128-64-32-16, classifier conv1x1 32
constexpr std::size_t vgg16_convs = conv(1, 64, 3) + conv(64, 64, 3) + conv(64, 128, 3) + conv(128, 128, 3) +
                                    conv(128, 256, 3) + 2 * conv(256, 256, 3) + conv(256, 512, 3) +
                                    2 * conv(512, 512, 3) + 3 * conv(512, 512, 3);
constexpr std::size_t paper_centre = 2 * conv_bn(512, 512);
constexpr std::size_t paper_decoder = conv_bn(512, 256) + conv_bn(256, 256) + conv_bn(256, 128) + conv_bn(128, 128) +
                                      conv_bn(128, 64) + conv_bn(64, 64) + conv_bn(64, 32) + conv_bn(32, 32) +
                                      conv_bn(32, 16) + conv_bn(16, 16) + conv(16, 1, 3);
constexpr std::size_t paper_D = 512 * 16 * 16;
// VGG16 on RGB has 14,714,688 convolution parameters; one input channel saves 2 * 64 * 9
static_assert(vgg16_convs == 14714688 - 2 * 64 * 9);
}  // namespace

using small = dg::config<64, dg::widths<8, 16, 32>, dg::convs<1, 1, 2>, 32, dg::widths<16, 8, 8>, 12, 16, 256, 16, 64,
                         std::ratio<1, 2048>>;
using H = lm::host;

// ---- the example's size ----
static_assert(std::is_same_v<small::latent_shape, lm::shape<32, 8, 8>>);
static_assert(small::latent_map_size == small_D);
static_assert(small::fcae::model<H>::parameter_count == small_encoder + small_centre + small_decoder);
static_assert(small::fcae::model<H>::state_count == 2 * small_bn_channels);
static_assert(small::fcae_classifier::model<H>::parameter_count ==
              small_encoder + small_centre + small_decoder + small_classifier);
static_assert(small::encoder::model<H>::parameter_count == small_encoder);
static_assert(small::encoder::model<H>::state_count == 0);
static_assert(small::classifier::model<H>::parameter_count == small_classifier);
static_assert(small::vae::model<H>::parameter_count == small_vae);
static_assert(small::vae_encoder::model<H>::parameter_count == small_vae_encoder);
static_assert(std::is_same_v<small::fcae::output_shape, lm::shape<1, 64, 64>>);
static_assert(std::is_same_v<small::fcae_classifier::output_shape, lm::shapes<lm::shape<1, 64, 64>, lm::shape<12>>>);
static_assert(std::is_same_v<small::encoder::output_shape, lm::shape<32, 8, 8>>);
static_assert(std::is_same_v<small::vae::output_shape, lm::shape<32, 8, 8>>);
static_assert(std::is_same_v<small::vae_encoder::output_shape, lm::shape<32>>);
static_assert(std::is_same_v<small::classifier::output_shape, lm::shape<12>>);

// ---- the paper's 512x512 configuration ----
using paper = dg::paper<4>;
static_assert(std::is_same_v<paper::latent_shape, lm::shape<512, 16, 16>>);
static_assert(paper::latent_map_size == paper_D);
static_assert(paper::encoder::model<H>::parameter_count == vgg16_convs);
static_assert(paper::fcae::model<H>::parameter_count == vgg16_convs + paper_centre + paper_decoder);
static_assert(paper::fcae_classifier::model<H>::parameter_count ==
              vgg16_convs + paper_centre + paper_decoder + conv(512, 32, 1) + dense(32 * 16 * 16, 256) + dense(256, 4));
static_assert(paper::vae::model<H>::parameter_count == dense(paper_D, 256) + dense(256, 256) + dense(256, 32) +
                                                           dense(16, 256) + dense(256, 256) + dense(256, paper_D));
static_assert(std::is_same_v<paper::fcae::output_shape, lm::shape<1, 512, 512>>);
static_assert(std::is_same_v<paper::fcae_classifier::output_shape, lm::shapes<lm::shape<1, 512, 512>, lm::shape<4>>>);
static_assert(std::is_same_v<paper::vae::output_shape, lm::shape<512, 16, 16>>);
static_assert(std::is_same_v<paper::vae_encoder::output_shape, lm::shape<32>>);
// after the first VGG group (conv, relu, conv, relu, pool) the map is 256x256x64
static_assert(std::is_same_v<lm::checked_output_t<dg::vgg_group<64, 2>, lm::shape<1, 512, 512>>, lm::shape<64, 256, 256>>);

namespace {
/// Two 64x64 "galaxies": Gaussian blobs at different places and widths, values in [0, 1].
std::vector<float> two_images() {
    std::vector<float> x(2 * 64 * 64);
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t i = 0; i < 64; ++i)
            for (std::size_t j = 0; j < 64; ++j) {
                const double ci = n ? 20.0 : 40.0, cj = n ? 36.0 : 26.0, s = n ? 6.0 : 10.0;
                const double r2 = (double(i) - ci) * (double(i) - ci) + (double(j) - cj) * (double(j) - cj);
                x[n * 4096 + i * 64 + j] = static_cast<float>(std::exp(-r2 / (2 * s * s)));
            }
    return x;
}
}  // namespace

TEST_CASE("DeepGalaxy FCAE at 64x64: the summary states the count; one step at batch 2 lowers the loss",
          "[models][deepgalaxy]") {
    small::fcae::model<H> net{lm::seed{3}, lm::threads{2}};
    CHECK_THAT(net.summary(2), Catch::Contains(std::to_string(small_encoder + small_centre + small_decoder) + " parameters"));
    const auto x = two_images();
    const lm::dataset_view<float> batch{x.data(), x.data(), 2, 4096, 4096};  // targets: the images
    std::size_t idx[2] = {0, 1};
    lm::trainer fit{net, lm::loss::mae{}, lm::optim::adam{1e-3}};
    // batch norm: compare the training-mode losses of two steps on the same batch (the second
    // is measured with the parameters the first step updated)
    const double first = fit.train_batch(batch, idx, 2, 1e-3);
    const double second = fit.train_batch(batch, idx, 2, 1e-3);
    INFO("MAE at the first step " << first << ", at the second " << second);
    CHECK(std::isfinite(first));
    CHECK(first > 0.05);  // a sigmoid output near 0.5 against blobs mostly near 0
    CHECK(second < first);
}

TEST_CASE("DeepGalaxy FCAE + classifier: two heads, per-output losses, one step at batch 2 lowers the loss",
          "[models][deepgalaxy][heads]") {
    small::fcae_classifier::model<H> net{lm::seed{5}, lm::threads{2}};
    const auto x = two_images();
    // targets per sample: [image | class]
    std::vector<float> t(2 * 4097);
    for (std::size_t n = 0; n < 2; ++n) {
        std::copy(x.begin() + std::ptrdiff_t(n * 4096), x.begin() + std::ptrdiff_t((n + 1) * 4096),
                  t.begin() + std::ptrdiff_t(n * 4097));
        t[n * 4097 + 4096] = n ? 7.0f : 2.0f;
    }
    const lm::dataset_view<float> batch{x.data(), t.data(), 2, 4096, 4097};
    std::size_t idx[2] = {0, 1};
    lm::loss::per_output losses{lm::loss::weighted{1.0, lm::loss::mae{}},
                                lm::loss::weighted{0.5, lm::loss::softmax_cross_entropy{}}};
    lm::trainer fit{net, losses, lm::optim::adam{1e-3}};
    const double first = fit.train_batch(batch, idx, 2, 1e-3);
    const double second = fit.train_batch(batch, idx, 2, 1e-3);
    INFO("loss at the first step " << first << ", at the second " << second);
    CHECK(std::isfinite(first));
    // near chance: 0.5 x cross-entropy of a near-uniform guess over 12 classes, plus the MAE
    CHECK(first > 0.5 * std::log(12.0) * 0.5);
    CHECK(second < first);
    // the classification head's accuracy is what evaluate reports (a value in [0, 1])
    const auto ev = fit.evaluate(batch);
    CHECK(ev.accuracy >= 0.0);
    CHECK(ev.accuracy <= 1.0);
}

TEST_CASE("DeepGalaxy VAE: the added loss is Beta x the hand-derived KL of vae_encoder's [mu, logvar]; one step "
          "lowers the loss",
          "[models][deepgalaxy][vae]") {
    small::vae::model<lm::reference> vae{lm::seed{7}};
    // two latent maps with values of order one
    std::vector<float> m(2 * small_D);
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(std::sin(0.37 * double(i)) * 1.5);
    // the KL from the encoder half's output, written out here
    small::vae_encoder::model<lm::reference> enc{lm::seed{1}};
    dg::copy_leading_parameters(vae, enc);
    std::vector<float> code(2 * 32);
    enc.predict(m.data(), code.data(), 2);
    double kl = 0;
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t j = 0; j < 16; ++j) {
            const double mu = code[n * 32 + j], lv = code[n * 32 + 16 + j];
            kl += -0.5 * (1 + lv - mu * mu - std::exp(lv));
        }
    kl /= 2;  // the batch mean
    vae.forward_train(m.data(), 2, 1);
    const double added = vae.added_loss();
    INFO("KL by hand " << kl << ", added loss " << added);
    CHECK(kl > 1e-3);  // not vacuous
    CHECK(added == Approx(kl / 2048.0).epsilon(1e-4));

    const lm::dataset_view<float> batch{m.data(), m.data(), 2, small_D, small_D};
    std::size_t idx[2] = {0, 1};
    // plain SGD: Adam's first step moves every weight by lr whatever its gradient, which on
    // the 0.5M-weight output layer overshoots; a small gradient step must lower the loss
    lm::trainer fit{vae, lm::loss::mse{}, lm::optim::sgd{0.01}};
    const double before = fit.evaluate(batch).loss;  // z = mu: deterministic
    fit.train_batch(batch, idx, 2, 0.01);
    const double after = fit.evaluate(batch).loss;
    INFO("loss at z = mu before " << before << ", after one step " << after);
    CHECK(std::isfinite(before));
    CHECK(after < before);
}

TEST_CASE("DeepGalaxy classifier on the latent map (the staged recipe's third stage): one step at batch 2 lowers "
          "the loss",
          "[models][deepgalaxy]") {
    small::classifier::model<H> cls{lm::seed{13}, lm::threads{2}};
    std::vector<float> m(2 * small_D);
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(std::cos(0.21 * double(i)) + 0.5);
    const float labels[2] = {3.0f, 9.0f};
    const lm::dataset_view<float> batch{m.data(), labels, 2, small_D, 1};
    std::size_t idx[2] = {0, 1};
    lm::trainer fit{cls, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.01}};
    const double before = fit.evaluate(batch).loss;  // no batch norm, no sampling: deterministic
    const double step = fit.train_batch(batch, idx, 2, 0.01);
    const double after = fit.evaluate(batch).loss;
    INFO("cross-entropy before " << before << ", after one step " << after);
    CHECK(step == Approx(before).epsilon(1e-5));
    CHECK(after < before);
}

TEST_CASE("copy_leading_parameters copies the shared layers and rejects a network with other leading layers",
          "[models][deepgalaxy]") {
    small::fcae_classifier::model<lm::reference> net{lm::seed{9}};
    small::encoder::model<lm::reference> enc{lm::seed{10}};
    dg::copy_leading_parameters(net, enc);
    const auto a = net.get_parameters(), b = enc.get_parameters();
    REQUIRE(b.size() == small_encoder);
    for (std::size_t i = 0; i < b.size(); ++i) REQUIRE(a[i] == b[i]);
    // a network whose leading tensors differ (convolutions against dense layers) is refused
    small::fcae::model<lm::reference> other{lm::seed{11}};
    small::vae_encoder::model<lm::reference> venc{lm::seed{12}};
    CHECK_THROWS_WITH(dg::copy_leading_parameters(other, venc), Catch::Contains("copy_leading_parameters"));
}

TEST_CASE("nearest_in_latent: the k nearest by L2 distance, ties by index, the query skipped", "[models][deepgalaxy]") {
    // codes in 2D: (0,0) (3,4) (1,0) (0,1) (-1,0) (10,10)
    const float codes[] = {0, 0, 3, 4, 1, 0, 0, 1, -1, 0, 10, 10};
    const float q[] = {0, 0};
    auto nn = dg::nearest_in_latent(codes, 6, 2, q, 4, 0);
    REQUIRE(nn.size() == 4);
    CHECK(nn[0].first == 2);  // distance 1, ties 2 < 3 < 4
    CHECK(nn[1].first == 3);
    CHECK(nn[2].first == 4);
    CHECK(nn[3].first == 1);
    CHECK(nn[3].second == Approx(5.0));
    auto all = dg::nearest_in_latent(codes, 6, 2, q, 10);
    CHECK(all.size() == 6);
    CHECK(all[0].first == 0);
    CHECK(all[0].second == 0.0);
    CHECK_THROWS(dg::nearest_in_latent(codes, 6, 0, q, 1));
}
