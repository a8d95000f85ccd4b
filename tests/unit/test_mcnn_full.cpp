// The M-CNN at the paper's size, 1024x1280x3 (label "slow": tests/cmake/slow_tests.cmake):
// three training steps at batch 2 on a fixed batch of synthetic cell images, with the paper's
// loss and optimizer (label smoothing 0.1, Nesterov momentum 0.9, L2 5e-5), lower the loss
// measured in inference mode before and after; the planned memory fits a workstation.
#include <catch2/catch.hpp>

#include <lamina/data/synthetic_cells.hpp>
#include <lamina/lamina.hpp>
#include <lamina/models/mcnn.hpp>

#include <cmath>
#include <vector>

namespace lm = lamina;
namespace md = lamina::models;

TEST_CASE("M-CNN at 1024x1280: three training steps at batch 2 lower the loss on a fixed batch",
          "[models][mcnn][slow]") {
    using net_t = md::mcnn<13>;
    net_t::model<lm::host> net{lm::seed{5}, lm::threads{2}};
    lm::data::synthetic_cells_options o;
    o.height = 1024;
    o.width = 1280;
    o.seed = 3;
    o.first = 2;  // classes 2 and 3
    const auto batch = lm::data::synthetic_cells(2, o);
    REQUIRE(batch.sample_size() == 3 * 1024 * 1280);
    std::size_t idx[2] = {0, 1};
    const double lr = lm::schedule::linear_scaling(0.005, 2, 2);
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{0.1}, lm::optim::sgd{lr, 0.9, true, 5e-5}};
    const double before = fit.evaluate(batch).loss;
    double last = 0;
    for (int step = 0; step < 3; ++step) {
        last = fit.train_batch(batch, idx, 2, lr);
        REQUIRE(std::isfinite(last));
    }
    const double after = fit.evaluate(batch).loss;
    INFO("loss before " << before << ", at the third step " << last << ", after three steps " << after);
    CHECK(std::isfinite(before));
    CHECK(after < before);
    INFO(net.summary(2));
    CHECK(net.parameter_count == 42577261);
}
