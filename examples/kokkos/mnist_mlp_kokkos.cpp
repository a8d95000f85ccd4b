// The MNIST multilayer perceptron (784-512-relu-256-relu-10, Adam) of examples/mnist_mlp on
// the Kokkos backend, on Kokkos' default execution space.
#include <lamina/kokkos.hpp>  // Kokkos first, then lamina

#include <cstdio>

#include "example_args.hpp"

namespace lm = lamina;
using backend = lm::kokkos_backend<Kokkos::DefaultExecutionSpace>;

using mlp = lm::sequential<lm::input<784>, lm::dense<512, lm::init::he_uniform>, lm::relu,
                           lm::dense<256, lm::init::he_uniform>, lm::relu, lm::dense<10>>;

static int run(int argc, char** argv) {
    auto args = parse_example_args(argc, argv);
    auto data = lm::data::mnist_train_test(args.data_dir);
    std::printf("data: %s\n", data.description.c_str());
    std::printf("kokkos: %s, concurrency %d\n", backend::execution_space::name(),
                static_cast<int>(backend::execution_space().concurrency()));

    mlp::model<backend> net{lm::seed{args.seed}};
    std::printf("%s", net.summary().c_str());

    std::size_t epochs = args.epochs ? args.epochs : 8;
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::adam{1e-3},
                    lm::schedule::cosine{double(epochs), 1e-5}};
    fit.run(data.train, lm::epochs{epochs}, lm::batch{64}, lm::progress_bar{});
    auto ev = fit.evaluate(data.test);
    std::printf("held-out accuracy %.2f%% (loss %.4f) on %zu images, seed %lu\n", 100 * ev.accuracy, ev.loss, ev.samples,
                args.seed);
    return 0;
}

int main(int argc, char** argv) {
    Kokkos::ScopeGuard kokkos(argc, argv);  // the application initialises Kokkos, not lamina
    try {
        return run(argc, argv);
    } catch (const lamina::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
