// The flagship: LeNet-5 on real MNIST (the layer table: examples/common/lenet5.hpp).
//
// With only the 10,000-image test files (as in ../shared/data/mnist): trains on images
// 0..7999 and reports held-out accuracy on 8000..9999. With the 60,000-image training files
// present: trains on them and tests on all 10,000.
//
// Recipe: SGD with Nesterov momentum 0.9, weight decay 5e-4 (not on biases), batch 64,
// learning rate 0.05 with one epoch of linear warm-up, then cosine decay to zero.
#include <cstdio>

#include <lamina/lamina.hpp>

#include "example_args.hpp"
#include "lenet5.hpp"

namespace lm = lamina;

int main(int argc, char** argv) try {
    auto args = parse_example_args(argc, argv);
    auto data = lm::data::mnist_train_test(args.data_dir);
    std::printf("data: %s\n", data.description.c_str());

    lenet5::model<lm::host> net{lm::seed{args.seed}, lm::threads{args.threads}};
    std::printf("%s", net.summary().c_str());

    const std::size_t epochs = args.epochs ? args.epochs : 20;
    lm::schedule::warmup_then<lm::schedule::cosine> lr_schedule{{1.0, 0.005}, {double(epochs) - 1.0, 0.0}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05, 0.9, true, 5e-4}, lr_schedule};

    auto report = lm::at_epoch_end{[&](auto& t, const lm::step_info&) {
        auto ev = t.evaluate(data.test);
        std::printf("  held-out accuracy %.2f%%\n", 100 * ev.accuracy);
    }};
    // An empty --csv / --checkpoint disables that callback.
    fit.run(data.train, lm::epochs{epochs}, lm::batch{64}, lm::progress_bar{}, report, lm::csv_log{args.csv},
            lm::checkpoint_every{args.checkpoint, 5});

    auto ev = fit.evaluate(data.test);
    std::printf("held-out accuracy %.2f%% (loss %.4f) on %zu images, seed %lu\n", 100 * ev.accuracy, ev.loss, ev.samples,
                args.seed);
    return 0;
} catch (const lamina::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
