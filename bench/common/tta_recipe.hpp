// The time-to-accuracy recipe shared by bench/time_to_accuracy.cpp (lamina) and
// bench/time_to_accuracy_torch.cpp (libtorch): the ResNet-20 MNIST recipe of
// examples/common/resnet_mnist_recipe.hpp with the data split fixed to the t10k files, so both
// programs train on the same images on any machine:
//
//   data      MNIST t10k (IDX, plain or .gz), images 0..7999 train, 8000..9999 held out, pixels
//             p / 255, zero-padded 28x28 -> 32x32
//   network   ResNet-20 (option-A shortcuts) with 1 input channel, 10 classes (269,434 parameters)
//   training  SGD momentum 0.9, weight decay 5e-4 (not on batch norm or biases), batch 64 (125
//             steps per epoch), lr 0.1 with per-step cosine decay to 0 over the run's epochs
//             (default 12), reshuffled every epoch
//   measure   after every epoch, held-out accuracy and loss (inference mode, batches of 256);
//             the wall time from the first training step, evaluations included, at which the
//             target (0.99) is first reached
//
// Each program prints one JSON line per epoch ("phase":"epoch") and a last one
// ("phase":"summary"); `--stop-at-target 1` ends the run at the first epoch that reaches the
// target (the time-to-accuracy figure is the same, the run shorter).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>

#include "bench_util.hpp"

namespace bench::tta {

inline constexpr std::size_t train_count = 8000, test_count = 2000, batch = 64, eval_batch = 256;
inline constexpr std::size_t default_epochs = 12;
inline constexpr double base_lr = 0.1, momentum = 0.9, weight_decay = 5e-4, default_target = 0.99;
inline constexpr std::size_t parameters = 269434;  // ResNet-20, 1 input channel, 10 classes

/// lamina's schedule::cosine{epochs, 0} at a global step (the clock is step / steps per epoch).
inline double cosine_lr(std::size_t step, std::size_t steps_per_epoch, std::size_t epochs) {
    const double t = std::min(1.0, double(step) / double(steps_per_epoch) / double(epochs));
    return base_lr * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t));
}

struct options {
    std::string data;
    unsigned threads = 2;
    unsigned long seed = 1;
    std::size_t epochs = default_epochs;
    double target = default_target;
    bool stop_at_target = false;
};

inline const char* usage() {
    return "options: --data DIR (MNIST t10k files; default LAMINA_DATA_DIR, else ../shared/data/mnist)\n"
           "         --threads N (2)  --seed N (1)  --epochs N (12: also the cosine schedule's length)\n"
           "         --target A (0.99)  --stop-at-target 0|1 (0)\n"
           "prints one JSON line per epoch and a summary line on stdout";
}

inline options parse(int argc, char** argv) {
    args a(argc, argv, {"data", "threads", "seed", "epochs", "target", "stop-at-target"}, usage());
    options o;
    o.data = a.get("data", "");
    o.threads = static_cast<unsigned>(a.num("threads", 2));
    o.seed = static_cast<unsigned long>(a.num("seed", 1));
    o.epochs = static_cast<std::size_t>(a.num("epochs", double(default_epochs)));
    o.target = a.num("target", default_target);
    o.stop_at_target = a.num("stop-at-target", 0) != 0;
    if (o.threads < 1 || o.epochs < 1 || !(o.target > 0 && o.target <= 1)) {
        std::fprintf(stderr, "threads and epochs must be positive, target in (0, 1]\n%s\n", usage());
        std::exit(2);
    }
    return o;
}

/// The per-epoch and summary JSON lines (the same fields from both programs).
struct reporter {
    std::string impl;
    const options& o;
    double seconds_to_target = -1;
    std::size_t epoch_reached = 0;

    void epoch(std::size_t e, double accuracy, double loss, double seconds, double train_seconds) {
        if (seconds_to_target < 0 && accuracy >= o.target) {
            seconds_to_target = seconds;
            epoch_reached = e;
        }
        std::printf("{\"bench\":\"time_to_accuracy\",\"impl\":\"%s\",\"what\":\"resnet20_mnist\",\"phase\":\"epoch\","
                    "\"threads\":%u,\"seed\":%lu,\"epoch\":%zu,\"epochs\":%zu,\"accuracy\":%.4f,\"loss\":%.5f,"
                    "\"seconds\":%.3f,\"train_seconds\":%.3f,\"target\":%.4f,\"seconds_to_target\":%s,"
                    "\"peak_rss_mb\":%.1f}\n",
                    impl.c_str(), o.threads, o.seed, e, o.epochs, accuracy, loss, seconds, train_seconds, o.target,
                    number_or_null(seconds_to_target).c_str(), peak_rss_mb());
        std::fflush(stdout);
    }
    void summary(std::size_t epochs_run, double accuracy, double seconds, double train_seconds) {
        std::printf("{\"bench\":\"time_to_accuracy\",\"impl\":\"%s\",\"what\":\"resnet20_mnist\",\"phase\":\"summary\","
                    "\"threads\":%u,\"seed\":%lu,\"epochs_run\":%zu,\"epochs\":%zu,\"final_accuracy\":%.4f,"
                    "\"seconds\":%.3f,\"train_seconds\":%.3f,\"target\":%.4f,\"seconds_to_target\":%s,"
                    "\"epoch_reached\":%s,\"peak_rss_mb\":%.1f}\n",
                    impl.c_str(), o.threads, o.seed, epochs_run, o.epochs, accuracy, seconds, train_seconds, o.target,
                    number_or_null(seconds_to_target).c_str(),
                    epoch_reached ? std::to_string(epoch_reached).c_str() : "null", peak_rss_mb());
        std::fflush(stdout);
    }
    static std::string number_or_null(double v) {
        if (v < 0) return "null";
        char b[32];
        std::snprintf(b, sizeof b, "%.3f", v);
        return b;
    }
};

}  // namespace bench::tta
