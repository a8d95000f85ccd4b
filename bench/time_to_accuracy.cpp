// Time to accuracy, lamina: wall time to 99% held-out accuracy on the ResNet-20 MNIST recipe
// (common/tta_recipe.hpp; the libtorch twin is time_to_accuracy_torch.cpp).
//
//   time_to_accuracy --data ../shared/data/mnist --threads 2 [--epochs 12] [--stop-at-target 1]
//
// The trainer runs one epoch per call (its step counter keeps the cosine schedule and the
// shuffling continuous), then evaluate() measures the held-out images.
#include <chrono>
#include <cstdio>
#include <memory>

#include <lamina/lamina.hpp>
#include <lamina/models/resnet.hpp>

#include "common/tta_recipe.hpp"

namespace lm = lamina;
namespace tta = bench::tta;

int main(int argc, char** argv) try {
    const tta::options o = tta::parse(argc, argv);
    const std::string dir = lm::data::find_data_dir(o.data.empty() ? nullptr : o.data.c_str());
    const lm::dataset<float> all = lm::data::read_mnist_dir(dir, "t10k");
    if (all.size() < tta::train_count + tta::test_count)
        throw lm::format_error("time_to_accuracy: the t10k set in '" + dir + "' holds " + std::to_string(all.size()) +
                               " images, expected 10000");
    const auto train = lm::data::pad_images(all.slice(0, tta::train_count), 1, 28, 28, 2);
    const auto test = lm::data::pad_images(all.slice(tta::train_count, tta::train_count + tta::test_count), 1, 28, 28, 2);

    using model_t = lm::models::resnet20<10, 1, 32, 32>::model<lm::host>;
    static_assert(model_t::parameter_count == tta::parameters, "ResNet-20 with one input channel");
    auto net = std::make_unique<model_t>(lm::seed{o.seed}, lm::threads{o.threads});
    lm::trainer fit{*net, lm::loss::softmax_cross_entropy{},
                    lm::optim::sgd{tta::base_lr, tta::momentum, false, tta::weight_decay},
                    lm::schedule::cosine{double(o.epochs), 0.0}};
    std::fprintf(stderr, "lamina: %s; %zu training and %zu held-out images, %u threads\n", dir.c_str(), train.size(),
                 test.size(), net->context().thread_count());

    tta::reporter rep{"lamina", o};
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    double train_s = 0, accuracy = 0;
    std::size_t e = 0;
    while (e < o.epochs) {
        const auto a = clock::now();
        fit.run(train, lm::epochs{1}, lm::batch{tta::batch});
        train_s += std::chrono::duration<double>(clock::now() - a).count();
        const auto ev = fit.evaluate(test, lm::batch{tta::eval_batch});
        ++e;
        accuracy = ev.accuracy;
        rep.epoch(e, ev.accuracy, ev.loss, std::chrono::duration<double>(clock::now() - t0).count(), train_s);
        if (o.stop_at_target && rep.seconds_to_target >= 0) break;
    }
    rep.summary(e, accuracy, std::chrono::duration<double>(clock::now() - t0).count(), train_s);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "time_to_accuracy: error: %s\n", e.what());
    return 1;
}
