// The HEP CNN of Kurth et al. ("Deep Learning at 15PF", SC17) telling signal events (new
// physics: more, harder jets) from QCD background in synthetic calorimeter images
// (include/lamina/data/synthetic_calorimeter.hpp: energy, EM fraction, track count).
// Large-batch recipe: SGD with Nesterov momentum 0.9, the linear scaling rule (base lr 0.01 at
// batch 32), one epoch of linear warm-up, then linear decay; the printed rates show both.
//
//   ./hep_cnn [--seed 1] [--epochs 8] [--batch 64] [--train 4000] [--test 2000] [--threads 2] [--out hep_cnn_out]
//   ./hep_cnn --full       the paper's 224x224x3 network (594,178 parameters): three steps at batch 8
//
// The default run is the layer table at 64x64 with 32 filters and 10% dropout; chance is 50%
// (the classes are balanced).
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
    using net_t = lm::models::hep_cnn<>;  // 224x224x3, 128 filters, dropout 50%
    net_t::model<lm::host> net{lm::seed{a.seed}, lm::threads{a.threads}};
    std::printf("HEP CNN at 224x224x3: %zu parameters\n", net.parameter_count);
    lm::data::synthetic_calorimeter_options o;
    o.seed = a.seed;
    const auto batch = lm::data::synthetic_calorimeter(8, o);
    const double lr = lm::schedule::linear_scaling(0.01, 32, 8);
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{lr, 0.9, true}};
    std::size_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    std::printf("loss before: %.4f\n", fit.evaluate(batch).loss);
    for (int s = 0; s < 3; ++s) {
        const auto t0 = std::chrono::steady_clock::now();
        const double loss = fit.train_batch(batch, idx, 8, lr);
        std::printf("step %d at batch 8: loss %.4f, %.2f s\n", s + 1, loss,
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
    constexpr std::size_t H = 64, W = 64;
    using net_t = lm::models::hep_cnn<2, 3, H, W, 32, 10>;
    const std::size_t epochs = a.epochs ? a.epochs : 8, batch = a.batch ? a.batch : 64;
    const std::size_t n_train = a.train ? a.train : 4000, n_test = a.test ? a.test : 2000;

    lm::data::synthetic_calorimeter_options o;
    o.height = H;
    o.width = W;
    o.seed = a.seed;
    const auto train = lm::data::synthetic_calorimeter(n_train, o);
    o.first = n_train;  // disjoint indices: an independent held-out set
    const auto test = lm::data::synthetic_calorimeter(n_test, o);

    net_t::model<lm::host> net{lm::seed{a.seed}, lm::threads{a.threads}};
    const double warmup = 1.0;
    const double lr = lm::schedule::linear_scaling(0.01, 32, batch);
    std::printf("HEP CNN (%zux%zux3, 32 filters, %zu parameters), %zu synthetic events, %zu held out\n", H, W,
                net.parameter_count, n_train, n_test);
    std::printf("batch %zu: linear scaling rule 0.01 x %zu/32 = lr %.4f; warm-up 1 epoch from 0, then linear decay to 0 "
                "at epoch %zu; Nesterov 0.9; seed %lu\n",
                batch, batch, lr, epochs, a.seed);

    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{lr, 0.9, true},
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
    std::printf("held-out accuracy %.2f%% (chance 50%%), loss %.4f\n", 100 * e.accuracy, e.loss);
    const std::string out = a.out.empty() ? "hep_cnn_out" : a.out;
    curves.write(out, "HEP CNN on synthetic calorimeter events", 50.0);
    std::printf("wrote %s/loss.svg, %s/accuracy.svg and %s/learning_rate.svg\n", out.c_str(), out.c_str(), out.c_str());
    return 0;
} catch (const lamina::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
