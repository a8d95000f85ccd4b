// A multilayer perceptron on MNIST: 784-512-relu-256-relu-10, Adam.
// With only the 10,000-image test files: trains on images 0..7999, reports held-out accuracy
// on 8000..9999; with the 60,000-image training files present: trains on them, tests on all 10,000.
#include <cstdio>

#include <lamina/lamina.hpp>

#include "example_args.hpp"

namespace lm = lamina;

using mlp = lm::sequential<lm::input<784>, lm::dense<512, lm::init::he_uniform>, lm::relu,
                           lm::dense<256, lm::init::he_uniform>, lm::relu, lm::dense<10>>;

int main(int argc, char** argv) try {
    auto args = parse_example_args(argc, argv);
    auto data = lm::data::mnist_train_test(args.data_dir);
    std::printf("data: %s\n", data.description.c_str());

    mlp::model<lm::host> net{lm::seed{args.seed}, lm::threads{args.threads}};
    std::printf("%s", net.summary().c_str());

    std::size_t epochs = args.epochs ? args.epochs : 8;
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::adam{1e-3},
                    lm::schedule::cosine{double(epochs), 1e-5}};
    fit.run(data.train, lm::epochs{epochs}, lm::batch{64}, lm::progress_bar{});
    auto ev = fit.evaluate(data.test);
    std::printf("held-out accuracy %.2f%% (loss %.4f) on %zu images, seed %lu\n", 100 * ev.accuracy, ev.loss, ev.samples,
                args.seed);
    return 0;
} catch (const lamina::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
