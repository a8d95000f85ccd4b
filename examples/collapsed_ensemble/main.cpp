// The Collapsed Ensemble (Codreanu et al. 2017; include/lamina/train/collapsed_ensemble.hpp)
// with ResNet-20 on MNIST zero-padded to 32x32 (the data and network of examples/resnet_mnist).
// One training run in cycles of a cyclic polynomial schedule: each cycle warms up linearly from
// 0.01 to 0.1 over a quarter epoch, then decays with power 2 to zero; its last half epoch is the
// collapse (rate towards zero, weight decay doubled from 5e-4 to 1e-3). As in the paper, the
// first cycle is the ordinary training run (long) and the later, short cycles start from a
// trained model, so each snapshot is good on its own and the ensemble averages models of
// similar quality. The model is kept where each cycle ends; at the end every snapshot and their
// ensemble (averaged softmax) are evaluated on the held-out images. SGD with momentum 0.9, batch
// 64, no decay on batch norm or biases.
//
//   ./collapsed_ensemble ../shared/data/mnist --seed 1 [--first 6] [--epochs 1] [--cycles 4] [--threads 2] [--out DIR]
//
// --first is the first cycle's length in epochs (default 6), --epochs the length of each later
// cycle (default 1), --cycles their number (default 4: 4 collapses in 9 epochs). Pictures go to
// --out (default collapsed_ensemble_out): loss and held-out accuracy per epoch, the learning
// rate per step (the cycles), and each snapshot's held-out accuracy beside the ensemble's.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <lamina/lamina.hpp>
#include <lamina/schedules/cyclic.hpp>
#include <lamina/train/collapsed_ensemble.hpp>

#include "example_args.hpp"
#include "training_curves.hpp"

namespace lm = lamina;
using network = lm::models::resnet20<10, 1, 32, 32>;
using model = network::model<lm::host>;

/// Records every step's learning rate: the chart shows the cycles and their collapses.
struct rate_recorder {
    training_curves* curves;
    template <class Trainer>
    void on_step_end(Trainer&, const lm::step_info& info) {
        curves->add_step(static_cast<double>(info.global_step), info.learning_rate);
    }
};

int main(int argc, char** argv) try {
    // --cycles, --first and --out are this example's own options; the rest are the examples' common ones.
    std::size_t cycles = 4, first_epochs = 6;
    std::string out = "collapsed_ensemble_out";
    std::vector<char*> rest;
    // The whole number after option argv[i], in 1..1000; exits with a message otherwise.
    auto count_after = [&](int& i) -> std::size_t {
        char* end = nullptr;
        const long v = i + 1 < argc ? std::strtol(argv[i + 1], &end, 10) : 0;
        if (i + 1 >= argc || *end || v < 1 || v > 1000) {
            std::fprintf(stderr, "%s: %s expects a whole number in 1..1000\n", argv[0], argv[i]);
            std::exit(2);
        }
        ++i;
        return static_cast<std::size_t>(v);
    };
    for (int i = 0; i < argc; ++i) {
        if (std::strcmp(argv[i], "--cycles") == 0) {
            cycles = count_after(i);
        } else if (std::strcmp(argv[i], "--first") == 0) {
            first_epochs = count_after(i);
        } else if (std::strcmp(argv[i], "--out") == 0) {
            if (i + 1 >= argc || !*argv[i + 1]) {
                std::fprintf(stderr, "%s: --out needs a folder\n", argv[0]);
                return 2;
            }
            out = argv[++i];
        } else {
            rest.push_back(argv[i]);
        }
    }
    auto args = parse_example_args(static_cast<int>(rest.size()), rest.data());
    const double cycle_epochs = args.epochs ? double(args.epochs) : 1.0;

    auto data = lm::data::mnist_train_test(args.data_dir);
    std::printf("data: %s, zero-padded to 32x32\n", data.description.c_str());
    auto train = lm::data::pad_images(data.train.view(), 1, 28, 28, 2);
    auto test = lm::data::pad_images(data.test.view(), 1, 28, 28, 2);

    model net{lm::seed{args.seed}, lm::threads{args.threads}};
    lm::schedule::cyclic_polynomial sched;
    sched.cycle_epochs = cycle_epochs;
    sched.first_cycle_epochs = double(first_epochs);
    sched.warmup_epochs = 0.25;
    sched.power = 2;
    sched.start_lr = 0.01;
    sched.end_lr = 0;
    sched.cycles = cycles;
    const double collapse_epochs = 0.5;
    lm::collapsed_ensemble<model> ce{sched, collapse_epochs, 2.0, lm::threads{args.threads}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1, 0.9, false, 5e-4}, ce.schedule()};
    const std::size_t epochs = static_cast<std::size_t>(std::ceil(sched.total_epochs() - 1e-9));
    std::printf("ResNet-20 (%zu parameters), %zu cycles: the first %zu epochs, the others %g (warm-up 0.25, collapse %g with weight decay "
                "x2), %zu epochs, seed %lu\n",
                model::parameter_count, cycles, first_epochs, cycle_epochs, collapse_epochs, epochs, args.seed);

    const auto t0 = std::chrono::steady_clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    std::size_t reported = 0;
    training_curves curves;
    rate_recorder rates{&curves};
    auto report = lm::at_epoch_end{[&](auto& t, const lm::step_info& info) {
        const auto e = t.evaluate(test);
        curves.add_epoch(static_cast<double>(info.epoch + 1), info.epoch_loss, e.loss, e.accuracy);
        std::printf("  epoch %zu: training loss %.4f, lr %.4f, held-out accuracy %.2f%%, %.0f s\n", info.epoch + 1,
                    info.epoch_loss, info.learning_rate, 100 * e.accuracy, seconds());
        for (; reported < ce.ensemble().size(); ++reported)
            std::printf("  collapse %zu done after step %lu: snapshot kept\n", reported + 1,
                        static_cast<unsigned long>(ce.ensemble()[reported].step));
        std::fflush(stdout);
    }};
    fit.run(train, lm::epochs{epochs}, lm::batch{64}, ce, rates, report, lm::csv_log{args.csv},
            lm::checkpoint_every{args.checkpoint, 1});
    const double train_seconds = seconds();

    auto r = ce.ensemble().evaluate(test);
    std::printf("held-out (%zu images):\n", test.size());
    for (std::size_t k = 0; k < r.snapshots.size(); ++k)
        std::printf("  snapshot %zu (cycle %zu): accuracy %.2f%%, loss %.4f\n", k + 1, ce.ensemble()[k].cycle + 1,
                    100 * r.snapshots[k].accuracy, r.snapshots[k].loss);
    const auto best = r.snapshots[r.best_snapshot()];
    double best_loss = r.snapshots[0].loss;
    for (const auto& s : r.snapshots) best_loss = std::min(best_loss, s.loss);
    std::printf("  ensemble of %zu: accuracy %.2f%%, loss %.4f\n", r.snapshots.size(), 100 * r.ensemble.accuracy,
                r.ensemble.loss);
    std::printf("best single snapshot %.2f%% (lowest loss %.4f); ensemble %.2f%%, loss %.4f: beats it on accuracy: %s, "
                "on loss: %s\n",
                100 * best.accuracy, best_loss, 100 * r.ensemble.accuracy, r.ensemble.loss,
                r.ensemble.accuracy > best.accuracy ? "yes" : "no", r.ensemble.loss < best_loss ? "yes" : "no");
    std::printf("seed %lu: %.0f s of training (held-out evaluation each epoch included), %.0f s in all\n", args.seed,
                train_seconds, seconds());

    curves.write(out, "ResNet-20, collapsed ensemble", 10.0);
    std::vector<double> index, snapshot_accuracy;
    for (std::size_t k = 0; k < r.snapshots.size(); ++k) {
        index.push_back(static_cast<double>(k + 1));
        snapshot_accuracy.push_back(100 * r.snapshots[k].accuracy);
    }
    lm::io::line_chart snapshots{"held-out accuracy of each collapsed snapshot and of their ensemble", "snapshot",
                                 "accuracy (%)"};
    snapshots.add("snapshot", index, snapshot_accuracy)
        .add("ensemble", index, std::vector<double>(index.size(), 100 * r.ensemble.accuracy));
    lm::io::write_svg(out + "/snapshots.svg", snapshots);
    std::printf("wrote %s/loss.svg, accuracy.svg, learning_rate.svg and snapshots.svg\n", out.c_str());
    return 0;
} catch (const lamina::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
