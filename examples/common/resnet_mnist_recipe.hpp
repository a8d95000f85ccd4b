// The ResNet-20 MNIST recipe shared by examples/resnet_mnist (host backend) and its Kokkos
// twin: MNIST zero-padded to 32x32, ResNet-20 (He et al.'s CIFAR network, option-A shortcuts,
// 269,722 parameters), SGD with momentum 0.9 and weight decay 5e-4 (not on batch norm or
// biases), batch 64, cosine decay from 0.1 over 12 epochs; held-out accuracy after every
// epoch and the wall time at which 99% was first reached.
#pragma once

#include <chrono>
#include <cstdio>

#include "example_args.hpp"

namespace resnet_mnist {

namespace lm = lamina;
using network = lm::models::resnet20<10, 1, 32, 32>;

struct result {
    double accuracy = 0;
    double seconds = 0;
    double seconds_to_99 = -1;  // -1: never reached
};

template <class Backend>
result train(const example_args& args, typename network::template model<Backend>& net) {
    auto data = lm::data::mnist_train_test(args.data_dir);
    std::printf("data: %s, zero-padded to 32x32\n", data.description.c_str());
    auto train = lm::data::pad_images(data.train.view(), 1, 28, 28, 2);
    auto test = lm::data::pad_images(data.test.view(), 1, 28, 28, 2);
    std::printf("%s", net.summary(64).c_str());

    const std::size_t epochs = args.epochs ? args.epochs : 12;
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1, 0.9, false, 5e-4},
                    lm::schedule::cosine{double(epochs), 0.0}};
    result r;
    const auto t0 = std::chrono::steady_clock::now();
    auto report = lm::at_epoch_end{[&](auto& t, const lm::step_info& info) {
        auto ev = t.evaluate(test);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r.seconds_to_99 < 0 && ev.accuracy >= 0.99) r.seconds_to_99 = s;
        std::printf("  epoch %zu: held-out accuracy %.2f%% (loss %.4f), %.0f s%s\n", info.epoch + 1, 100 * ev.accuracy,
                    ev.loss, s, r.seconds_to_99 == s ? "  <- 99% first reached" : "");
        std::fflush(stdout);
    }};
    fit.run(train, lm::epochs{epochs}, lm::batch{64}, lm::progress_bar{}, report, lm::csv_log{args.csv},
            lm::checkpoint_every{args.checkpoint, 4});
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.accuracy = fit.evaluate(test).accuracy;
    std::printf("held-out accuracy %.2f%% on %zu images, seed %lu, %zu epochs in %.0f s; 99%% first reached %s\n",
                100 * r.accuracy, test.size(), args.seed, epochs, r.seconds,
                r.seconds_to_99 < 0 ? "never" : (std::to_string(static_cast<long>(r.seconds_to_99 + 0.5)) + " s").c_str());
    return r;
}

}  // namespace resnet_mnist
