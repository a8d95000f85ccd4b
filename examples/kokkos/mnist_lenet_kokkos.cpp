// The flagship on the Kokkos backend: the same LeNet-5, recipe and output as
// examples/mnist_lenet, with every kernel a Kokkos parallel pattern on Kokkos'
// default execution space (OpenMP when this Kokkos has it, else Serial).
//
//   ./mnist_lenet_kokkos ../shared/data/mnist --seed 1 [--kokkos-num-threads=2]
#include <lamina/kokkos.hpp>  // Kokkos first, then lamina

#include <cstdio>

#include "example_args.hpp"
#include "lenet5.hpp"

namespace lm = lamina;
using backend = lm::kokkos_backend<Kokkos::DefaultExecutionSpace>;

static int run(int argc, char** argv) {
    auto args = parse_example_args(argc, argv);
    auto data = lm::data::mnist_train_test(args.data_dir);
    std::printf("data: %s\n", data.description.c_str());
    std::printf("kokkos: %s, concurrency %d\n", backend::execution_space::name(),
                static_cast<int>(backend::execution_space().concurrency()));

    lenet5::model<backend> net{lm::seed{args.seed}};
    std::printf("%s", net.summary().c_str());

    const std::size_t epochs = args.epochs ? args.epochs : 20;
    lm::schedule::warmup_then<lm::schedule::cosine> lr_schedule{{1.0, 0.005}, {double(epochs) - 1.0, 0.0}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05, 0.9, true, 5e-4}, lr_schedule};

    auto report = lm::at_epoch_end{[&](auto& t, const lm::step_info&) {
        auto ev = t.evaluate(data.test);
        std::printf("  held-out accuracy %.2f%%\n", 100 * ev.accuracy);
    }};
    fit.run(data.train, lm::epochs{epochs}, lm::batch{64}, lm::progress_bar{}, report, lm::csv_log{args.csv},
            lm::checkpoint_every{args.checkpoint, 5});

    auto ev = fit.evaluate(data.test);
    std::printf("held-out accuracy %.2f%% (loss %.4f) on %zu images, seed %lu\n", 100 * ev.accuracy, ev.loss, ev.samples,
                args.seed);
    return 0;
}

int main(int argc, char** argv) {
    Kokkos::ScopeGuard kokkos(argc, argv);  // the application initialises Kokkos, not lamina
    try {
        return run(argc, argv);  // every Kokkos buffer is released before the guard finalises
    } catch (const lamina::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
