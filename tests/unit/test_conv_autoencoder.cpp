// The convolutional autoencoder of the "fcae" benchmark row (models/conv_autoencoder.hpp):
// 775,425 parameters against the test's own derivation from the layer table, every stage's
// shape at compile time, and one SGD step at batch 2 lowering the MSE against the input on a
// fixed batch (the MSE computed here by a plain loop over predict's output).
#include <catch2/catch.hpp>

#include <lamina/lamina.hpp>
#include <lamina/models/conv_autoencoder.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <type_traits>
#include <vector>

namespace lm = lamina;
namespace md = lamina::models;

namespace {
// a 3x3 convolution or transposed convolution from Cin to Cout channels with bias
constexpr std::size_t conv3(std::size_t cin, std::size_t cout) { return cin * cout * 9 + cout; }
constexpr std::size_t ae_params(std::size_t c) {
    return conv3(c, 32) + conv3(32, 64) + conv3(64, 128) + conv3(128, 256)    // encoder
           + conv3(256, 128) + conv3(128, 64) + conv3(64, 32) + conv3(32, c);  // decoder
}
static_assert(ae_params(1) == 775425);  // the figure
}  // namespace

using ae = md::conv_autoencoder<>;
using ae_model = ae::model<lm::host>;
static_assert(ae_model::parameter_count == ae_params(1));
static_assert(ae_model::parameter_count == 775425);
static_assert(md::conv_autoencoder<3, 32, 48>::model<lm::host>::parameter_count == ae_params(3));
static_assert(std::is_same_v<ae::output_shape, lm::shape<1, 128, 128>>);
// 128 -> 64 -> 32 -> 16 -> 8 with 32, 64, 128, 256 channels, then back up
static_assert(std::is_same_v<ae_model::shape_at<1>, lm::shape<32, 64, 64>>);
static_assert(std::is_same_v<ae_model::shape_at<2>, lm::shape<64, 32, 32>>);
static_assert(std::is_same_v<ae_model::shape_at<3>, lm::shape<128, 16, 16>>);
static_assert(std::is_same_v<ae_model::shape_at<4>, lm::shape<256, 8, 8>>);
static_assert(std::is_same_v<ae_model::shape_at<5>, lm::shape<128, 16, 16>>);
static_assert(std::is_same_v<ae_model::shape_at<7>, lm::shape<64, 32, 32>>);
static_assert(std::is_same_v<ae_model::shape_at<9>, lm::shape<32, 64, 64>>);
static_assert(std::is_same_v<ae_model::shape_at<11>, lm::shape<1, 128, 128>>);
static_assert(std::is_same_v<md::conv_autoencoder<3, 32, 48>::output_shape, lm::shape<3, 32, 48>>);

namespace {
double mse_by_loop(const std::vector<float>& out, const std::vector<float>& x) {
    double s = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double d = static_cast<double>(out[i]) - static_cast<double>(x[i]);
        s += d * d;
    }
    return s / static_cast<double>(x.size());
}
}  // namespace

TEST_CASE("conv autoencoder: outputs in (0, 1); one SGD step at batch 2 lowers the MSE against the input",
          "[models][conv_autoencoder]") {
    auto net = std::make_unique<ae_model>(lm::seed{3}, lm::threads{2});
    CHECK_THAT(net->summary(), Catch::Contains("775425 parameters"));
    constexpr std::size_t N = 2, D = 128 * 128;
    std::vector<float> x(N * D);
    for (std::size_t n = 0; n < N; ++n)  // two smooth images in [0, 1]: a blob and stripes
        for (std::size_t i = 0; i < 128; ++i)
            for (std::size_t j = 0; j < 128; ++j) {
                const double u = (static_cast<double>(i) - 64) / 32, v = (static_cast<double>(j) - 64) / 32;
                x[n * D + i * 128 + j] = static_cast<float>(
                    n == 0 ? std::exp(-(u * u + v * v)) : 0.5 + 0.5 * std::sin(0.2 * static_cast<double>(i + 2 * j)));
            }
    std::vector<float> out(N * D);
    net->predict(x.data(), out.data(), N);
    const auto [lo, hi] = std::minmax_element(out.begin(), out.end());
    CHECK(*lo > 0.0f);  // the final sigmoid
    CHECK(*hi < 1.0f);
    const double before = mse_by_loop(out, x);

    lm::dataset_view<float> view{x.data(), x.data(), N, D, D};  // the targets are the inputs
    std::size_t idx[N] = {0, 1};
    lm::trainer fit{*net, lm::loss::mse{}, lm::optim::sgd{0.5}};
    const double step_loss = fit.train_batch(view, idx, N, 0.5);  // the loss before the update
    net->predict(x.data(), out.data(), N);
    const double after = mse_by_loop(out, x);
    INFO("MSE before " << before << ", reported by the step " << step_loss << ", after " << after);
    CHECK(step_loss == Approx(before).epsilon(1e-4));  // the trainer's loss is this MSE
    CHECK(after < before);
}
