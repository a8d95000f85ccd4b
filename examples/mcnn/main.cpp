// The multi-scale CNN (M-CNN; Godinez et al. 2017, trained on CPUs at scale by Datta et al. 2019)
// classifying 13 phenotypes of synthetic cell images (include/lamina/data/synthetic_cells.hpp),
// with the paper's recipe: softmax cross-entropy with label smoothing 0.1, Nesterov momentum
// 0.9, L2 5e-5, linear warm-up then linear decay, and the linear scaling rule (the learning
// rate grows with the batch: base 0.01 at batch 16). The printed learning rates show both.
//
//   ./mcnn [--seed 1] [--epochs 12] [--batch 32] [--train 1300] [--test 650] [--threads 2] [--out mcnn_out]
//   ./mcnn --full          the paper's 1024x1280x3 network: three training steps at batch 2
//
// The default run is the layer table at 128x128 (every branch meets at 2x2); chance is 1/13.
#include <chrono>
#include <cstdio>

#include <lamina/lamina.hpp>

#include "synthetic_example_args.hpp"
#include "training_curves.hpp"

namespace lm = lamina;

namespace {

/// Records every step's learning rate for the chart; prints it four times per epoch while it warms up.
struct warmup_printer {
    double warmup_epochs;
    training_curves* curves;
    template <class Trainer>
    void on_step_end(Trainer&, const lm::step_info& i) {
        curves->add_step(static_cast<double>(i.global_step), i.learning_rate);
        const std::size_t quarter = i.steps_per_epoch >= 4 ? i.steps_per_epoch / 4 : 1;
        if (static_cast<double>(i.epoch) < warmup_epochs && i.step_in_epoch % quarter == 0)
            std::printf("    step %4llu: lr %.5f\n", static_cast<unsigned long long>(i.global_step), i.learning_rate);
    }
};

int full_size(const synthetic_example_args& a) {
    using net_t = lm::models::mcnn<13>;  // 1024x1280x3
    net_t::model<lm::host> net{lm::seed{a.seed}, lm::threads{a.threads}};
    std::printf("M-CNN at 1024x1280x3: %zu parameters\n%s", net.parameter_count, net.summary(2).c_str());
    lm::data::synthetic_cells_options o;
    o.height = 1024;
    o.width = 1280;
    o.seed = a.seed;
    const auto batch = lm::data::synthetic_cells(2, o);
    const double lr = lm::schedule::linear_scaling(0.01, 16, 2);
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{0.1}, lm::optim::sgd{lr, 0.9, true, 5e-5}};
    std::size_t idx[2] = {0, 1};
    std::printf("loss before: %.4f\n", fit.evaluate(batch).loss);
    for (int s = 0; s < 3; ++s) {
        const auto t0 = std::chrono::steady_clock::now();
        const double loss = fit.train_batch(batch, idx, 2, lr);
        std::printf("step %d at batch 2: loss %.4f, %.1f s\n", s + 1, loss,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("loss after: %.4f\n", fit.evaluate(batch).loss);
    return 0;
}

}  // namespace

int main(int argc, char** argv) try {
    const auto a = parse_synthetic_example_args(
        argc, argv, "[--seed N] [--epochs N] [--batch N] [--train N] [--test N] [--threads N] [--out DIR] [--full]");
    if (a.full) return full_size(a);
    constexpr std::size_t H = 128, W = 128, classes = lm::data::synthetic_cell_class_count;
    using net_t = lm::models::mcnn<classes, 3, H, W>;
    const std::size_t epochs = a.epochs ? a.epochs : 12, batch = a.batch ? a.batch : 32;
    const std::size_t n_train = a.train ? a.train : 1300, n_test = a.test ? a.test : 650;

    lm::data::synthetic_cells_options o;
    o.height = H;
    o.width = W;
    o.seed = a.seed;
    const auto train = lm::data::synthetic_cells(n_train, o);
    o.first = n_train;  // disjoint indices: an independent held-out set
    const auto test = lm::data::synthetic_cells(n_test, o);

    net_t::model<lm::host> net{lm::seed{a.seed}, lm::threads{a.threads}};
    const double warmup = epochs >= 6 ? 2.0 : 1.0;
    const double lr = lm::schedule::linear_scaling(0.01, 16, batch);
    std::printf("M-CNN (7 scales, %zux%zux3, %zu parameters), %zu synthetic cell images (%zu classes), %zu held out\n",
                H, W, net.parameter_count, n_train, classes, n_test);
    std::printf("batch %zu: linear scaling rule 0.01 x %zu/16 = lr %.4f; warm-up %.0f epochs from 0, then linear "
                "decay to 0 at epoch %zu; Nesterov 0.9, L2 5e-5, label smoothing 0.1; seed %lu\n",
                batch, batch, lr, warmup, epochs, a.seed);

    lm::trainer fit{net, lm::loss::softmax_cross_entropy{0.1}, lm::optim::sgd{lr, 0.9, true, 5e-5},
                    lm::schedule::warmup_then<lm::schedule::polynomial>{{warmup, 0}, {double(epochs) - warmup, 1, 0}}};
    const auto t0 = std::chrono::steady_clock::now();
    training_curves curves;
    auto report = lm::at_epoch_end{[&](auto& t, const lm::step_info& i) {
        const auto e = t.evaluate(test);
        curves.add_epoch(static_cast<double>(i.epoch + 1), i.epoch_loss, e.loss, e.accuracy);
        std::printf("  epoch %2zu: lr %.5f, training loss %.4f, held-out accuracy %.2f%%, %.0f img/s, %.0f s\n",
                    i.epoch + 1, i.learning_rate, i.epoch_loss, 100 * e.accuracy, i.images_per_second,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        std::fflush(stdout);
    }};
    fit.run(train, lm::epochs{epochs}, lm::batch{batch}, warmup_printer{warmup, &curves}, report);
    const auto e = fit.evaluate(test);
    std::printf("held-out accuracy %.2f%% (chance %.2f%%), loss %.4f\n", 100 * e.accuracy, 100.0 / classes, e.loss);
    const std::string out = a.out.empty() ? "mcnn_out" : a.out;
    curves.write(out, "M-CNN on synthetic cells", 100.0 / classes);
    std::printf("wrote %s/loss.svg, %s/accuracy.svg and %s/learning_rate.svg\n", out.c_str(), out.c_str(), out.c_str());
    return 0;
} catch (const lamina::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
