// The HEP CNN of Kurth et al. (models/hep_cnn.hpp): 594,178 parameters (the paper's figure)
// and the test's own derivation, shapes at compile time, at 224x224 and at the reduced size
// of examples/hep_cnn; one training step at batch 2 at 224x224 lowering the loss on a fixed
// batch, measured in inference mode (dropout off) before and after the step.
#include <catch2/catch.hpp>

#include <lamina/data/synthetic_calorimeter.hpp>
#include <lamina/lamina.hpp>
#include <lamina/models/hep_cnn.hpp>

#include <cmath>
#include <type_traits>
#include <vector>

namespace lm = lamina;
namespace md = lamina::models;

namespace {
// conv3x3 from Cin to F channels with bias; five of them; FC from F to the classes
constexpr std::size_t conv3(std::size_t cin, std::size_t f) { return cin * f * 9 + f; }
constexpr std::size_t hep_params(std::size_t channels, std::size_t f, std::size_t classes) {
    return conv3(channels, f) + 4 * conv3(f, f) + f * classes + classes;
}
static_assert(hep_params(3, 128, 2) == 594178);  // Kurth et al.
}  // namespace

using full = md::hep_cnn<>;
static_assert(full::model<lm::host>::parameter_count == 594178);
static_assert(std::is_same_v<full::output_shape, lm::shape<2>>);
// 224 -> 112 -> 56 -> 28 -> 14, the last conv at 14x14, pooled to 128 values
static_assert(std::is_same_v<full::model<lm::host>::shape_at<0>, lm::shape<3, 224, 224>>);
static_assert(std::is_same_v<full::model<lm::host>::shape_at<1>, lm::shape<128, 112, 112>>);
static_assert(std::is_same_v<full::model<lm::host>::shape_at<2>, lm::shape<128, 56, 56>>);
static_assert(std::is_same_v<full::model<lm::host>::shape_at<3>, lm::shape<128, 28, 28>>);
static_assert(std::is_same_v<full::model<lm::host>::shape_at<4>, lm::shape<128, 14, 14>>);
static_assert(std::is_same_v<full::model<lm::host>::shape_at<5>, lm::shape<128, 14, 14>>);  // after the fifth conv
static_assert(std::is_same_v<full::model<lm::host>::shape_at<7>, lm::shape<128>>);          // global average pool
// the parameters do not depend on the image size (global average pool) or the dropout rate
using reduced = md::hep_cnn<2, 3, 64, 64, 32, 10>;
static_assert(reduced::model<lm::host>::parameter_count == hep_params(3, 32, 2));
static_assert(std::is_same_v<reduced::model<lm::host>::shape_at<4>, lm::shape<32, 4, 4>>);
static_assert(md::hep_cnn<2, 3, 100, 60, 128, 0>::model<lm::host>::parameter_count == 594178);
static_assert(md::hep_cnn<5, 1, 32, 32, 16>::model<lm::host>::parameter_count == hep_params(1, 16, 5));

TEST_CASE("HEP CNN at 224x224: one training step at batch 2 lowers the loss on a fixed batch", "[models][hep_cnn]") {
    full::model<lm::host> net{lm::seed{6}, lm::threads{2}};
    CHECK_THAT(net.summary(), Catch::Contains("594178 parameters"));
    CHECK_THAT(net.summary(), Catch::Contains("dropout<0.50"));
    lm::data::synthetic_calorimeter_options o;  // 224x224: one background, one signal event
    o.seed = 2;
    const auto batch = lm::data::synthetic_calorimeter(2, o);
    std::size_t idx[2] = {0, 1};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.01, 0.9}};
    const double before = fit.evaluate(batch).loss;  // inference mode: dropout is the identity
    const double step_loss = fit.train_batch(batch, idx, 2, 0.01);
    const double after = fit.evaluate(batch).loss;
    INFO("loss before " << before << ", during the step (dropout on) " << step_loss << ", after " << after);
    CHECK(std::isfinite(before));
    CHECK(std::isfinite(step_loss));
    CHECK(after < before);
}

TEST_CASE("HEP CNN: dropout is active in training and off in inference", "[models][hep_cnn]") {
    // Two training-mode losses of one fixed batch at learning rate 0 differ (fresh masks per
    // step); inference-mode losses are equal. Reduced size: only the layers' behaviour matters.
    reduced::model<lm::host> net{lm::seed{1}, lm::threads{2}};
    lm::data::synthetic_calorimeter_options o;
    o.height = o.width = 64;
    const auto batch = lm::data::synthetic_calorimeter(2, o);
    std::size_t idx[2] = {0, 1};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.01}};  // stepped at learning rate 0 below
    const double e0 = fit.evaluate(batch).loss;
    const double t0 = fit.train_batch(batch, idx, 2, 0.0), t1 = fit.train_batch(batch, idx, 2, 0.0);
    const double e1 = fit.evaluate(batch).loss;
    CHECK(e0 == e1);
    CHECK(t0 != t1);
}
