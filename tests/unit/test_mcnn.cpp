// The M-CNN (models/mcnn.hpp): parameter counts against the test's own derivation from the
// layer table (and the paper's "about 42.6M, 98% in FC 512"), every branch's and the head's
// shapes at compile time, at 1024x1280 and at the reduced 128x128; one training step at batch 2
// (128x128, the trainer and recipe of the example) lowering the loss on a fixed batch. The
// full-size training steps are in tests/unit/test_mcnn_full.cpp (label "slow").
#include <catch2/catch.hpp>

#include <lamina/data/synthetic_cells.hpp>
#include <lamina/lamina.hpp>
#include <lamina/models/mcnn.hpp>

#include <cmath>
#include <type_traits>
#include <vector>

namespace lm = lamina;
namespace md = lamina::models;

namespace {
// ---- the parameter count, derived by hand from the layer table ----
// conv KxK from Cin to Cout channels with bias: Cin*Cout*K*K + Cout
constexpr std::size_t conv(std::size_t cin, std::size_t cout, std::size_t k) { return cin * cout * k * k + cout; }
// a branch of F filters: conv5x5 3 -> F, then two conv5x5 F -> F (pools have no parameters)
constexpr std::size_t branch(std::size_t f) { return conv(3, f, 5) + 2 * conv(f, f, 5); }
constexpr std::size_t all_branches = 3 * branch(16) + 3 * branch(32) + branch(64);
constexpr std::size_t concat_channels = 3 * 16 + 3 * 32 + 64;
// FC 512 reads the 1024 channels of the (H/64)/2 x (W/64)/2 map
constexpr std::size_t fc512(std::size_t h, std::size_t w) { return (h / 128) * (w / 128) * 1024 * 512 + 512; }
constexpr std::size_t mcnn_params(std::size_t h, std::size_t w, std::size_t classes) {
    return all_branches + conv(concat_channels, 1024, 1) + fc512(h, w) + 512 * classes + classes;
}
static_assert(concat_channels == 208);
static_assert(branch(16) == 14048 && branch(32) == 53696 && branch(64) == 209792);  // 50F^2 + 78F
static_assert(mcnn_params(1024, 1280, 13) == 42577261);
}  // namespace

// The paper's network: 1024x1280x3, 13 classes.
using full = md::mcnn<13>;
static_assert(full::model<lm::host>::parameter_count == mcnn_params(1024, 1280, 13));
// "about 42.6M parameters, 98% in FC 512"
static_assert(full::model<lm::host>::parameter_count > 42550000 && full::model<lm::host>::parameter_count < 42650000);
static_assert(fc512(1024, 1280) * 100 / full::model<lm::host>::parameter_count == 98);
// shapes: the branches meet at 16x20 with 208 channels, the head pools to 8x10x1024
static_assert(std::is_same_v<full::output_shape, lm::shape<13>>);
static_assert(std::is_same_v<full::model<lm::host>::shape_at<0>, lm::shape<3, 1024, 1280>>);
static_assert(std::is_same_v<full::model<lm::host>::shape_at<1>, lm::shape<208, 16, 20>>);   // after the concat
static_assert(std::is_same_v<full::model<lm::host>::shape_at<3>, lm::shape<1024, 16, 20>>);  // after conv1x1 + relu
static_assert(std::is_same_v<full::model<lm::host>::shape_at<4>, lm::shape<1024, 8, 10>>);   // after max-pool 2
static_assert(std::is_same_v<full::model<lm::host>::shape_at<5>, lm::shape<81920>>);         // FC 512's input
// every branch, at its own scale, ends at 16x20
using image = lm::shape<3, 1024, 1280>;
static_assert(std::is_same_v<md::mcnn_branch<1, 16>::output_for<image>, lm::shape<16, 16, 20>>);
static_assert(std::is_same_v<md::mcnn_branch<2, 16>::output_for<image>, lm::shape<16, 16, 20>>);
static_assert(std::is_same_v<md::mcnn_branch<4, 16>::output_for<image>, lm::shape<16, 16, 20>>);
static_assert(std::is_same_v<md::mcnn_branch<8, 32>::output_for<image>, lm::shape<32, 16, 20>>);
static_assert(std::is_same_v<md::mcnn_branch<16, 32>::output_for<image>, lm::shape<32, 16, 20>>);
static_assert(std::is_same_v<md::mcnn_branch<32, 32>::output_for<image>, lm::shape<32, 16, 20>>);
static_assert(std::is_same_v<md::mcnn_branch<64, 64>::output_for<image>, lm::shape<64, 16, 20>>);

// The reduced size of examples/mcnn: 128x128, the branches meet at 2x2.
using reduced = md::mcnn<13, 3, 128, 128>;
static_assert(reduced::model<lm::host>::parameter_count == mcnn_params(128, 128, 13));
static_assert(reduced::model<lm::host>::parameter_count == 413024 + 214016 + 524800 + 6669);
static_assert(std::is_same_v<reduced::model<lm::host>::shape_at<1>, lm::shape<208, 2, 2>>);
static_assert(std::is_same_v<reduced::model<lm::host>::shape_at<5>, lm::shape<1024>>);
static_assert(std::is_same_v<reduced::output_shape, lm::shape<13>>);
// other class counts and average pre-pooling keep the table
static_assert(md::mcnn<5, 3, 256, 320, lm::avg_pool>::model<lm::host>::parameter_count == mcnn_params(256, 320, 5));

TEST_CASE("M-CNN at 128x128: the summary states the count; one step at batch 2 lowers the loss", "[models][mcnn]") {
    reduced::model<lm::host> net{lm::seed{4}, lm::threads{2}};
    const std::string summary = net.summary(2);
    CHECK_THAT(summary, Catch::Contains(std::to_string(mcnn_params(128, 128, 13)) + " parameters"));
    CHECK_THAT(summary, Catch::Contains("branches<concat"));

    lm::data::synthetic_cells_options o;
    o.height = o.width = 128;
    o.seed = 9;
    o.first = 5;  // classes 5 and 6
    const auto batch = lm::data::synthetic_cells(2, o);
    std::size_t idx[2] = {0, 1};
    const double lr = lm::schedule::linear_scaling(0.01, 2, 2);
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{0.1}, lm::optim::sgd{lr, 0.9, true, 5e-5}};
    const double before = fit.evaluate(batch).loss;
    const double step_loss = fit.train_batch(batch, idx, 2, lr);
    const double after = fit.evaluate(batch).loss;
    INFO("loss before " << before << " (the step saw " << step_loss << "), after one step " << after);
    CHECK(std::isfinite(before));
    CHECK(step_loss == Approx(before).epsilon(1e-4));  // no dropout, no batch norm: train and eval agree
    CHECK(after < before);
    // near chance before training: label-smoothed cross entropy of a near-uniform guess is ~log(13)
    CHECK(before == Approx(std::log(13.0)).epsilon(0.25));
}
