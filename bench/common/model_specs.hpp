// lamina benchmarks: the model definitions shared by bench_models (lamina) and
// bench_torch_models (libtorch): names, default batch sizes, shapes, parameter counts, the
// optimizer and the synthetic data. Both programs build the same networks from this.
//
//   mlp      784-512-relu-512-relu-10, softmax cross-entropy, batch 128 (669,706 parameters)
//   lenet5   1x28x28, conv5x5(6)-relu-maxpool2-conv5x5(16)-relu-maxpool2-fc120-relu-fc84-relu-fc10,
//            batch 64 (44,426 parameters)
//   resnet20 3x32x32, CIFAR ResNet-20 (He et al. 2016, section 4.2): conv3x3(16)-bn-relu, three
//            stages of three basic blocks (16, 32, 64 channels, stride 2 at stages 2 and 3),
//            option-A shortcuts (stride-2 subsample, channels zero-padded equally on both
//            sides), convolutions without bias, batch norm eps 1e-5 momentum 0.1, global
//            average pool, linear 64->10; batch 32 (269,722 parameters)
//   resnet50 3x224x224, ResNet-50 v1.5 as torchvision's: bottlenecks 3-4-6-3, the stride on the
//            3x3 convolution, projection shortcuts (1x1 conv + batch norm), linear 2048->1000;
//            batch 8 (25,557,032 parameters)
//
// The science models (issue 11), lamina's models/ headers and their twins:
//   fcae            1x128x128 autoencoder (models/conv_autoencoder.hpp): 4x [conv3x3 stride 2 pad 1
//                   + relu] with 32, 64, 128, 256 filters, 4x [transposed conv3x3 stride 2 pad 1
//                   output padding 1] to 128, 64, 32, 1 channels, relu between, sigmoid at the end;
//                   MSE against the input, batch 16 (775,425 parameters)
//   deepgalaxy_fcae the DeepGalaxy FCAE (models/deepgalaxy.hpp) at 1x256x256: the paper's layer table
//                   (VGG16 encoder 64-128-256-512-512 with 2-2-3-3-3 conv3x3+relu and a max-pool 2
//                   per group, to 8x8x512; centre 2x [conv3x3 512 no bias, batch norm, relu];
//                   decoder 5x [nearest upsample 2, 2x (conv3x3 no bias, batch norm, relu)] with
//                   256-128-64-32-16; conv3x3 to 1 channel + sigmoid); MAE against the input (the
//                   paper's loss), batch 4 (the paper's per-worker batch) (21,793,297 parameters)
//   hep_cnn         3x224x224, Kurth et al. (models/hep_cnn.hpp): 4x [conv3x3 128 + relu, max-pool
//                   2, dropout 0.5], conv3x3 128 + relu, global average pool, linear 128->2;
//                   batch 8 (594,178 parameters)
//   mcnn            3x256x320 M-CNN (models/mcnn.hpp): 7 branches (pre-max-pool s, 3x [conv5x5
//                   SAME + relu], max-pool 64/s; s = 1..64, 16-16-16-32-32-32-64 filters) joined by
//                   concat at 4x5x208, conv1x1 1024 + relu, max-pool 2 (2x2), linear 4096->512,
//                   relu, linear 512->13; batch 4 (2,731,373 parameters)
// Images of the autoencoders are in [0, 1) (the sigmoid's range); the classifiers' in [-1, 1).
//
// `--batch N` overrides a model's batch (the batch-1 rows: a simulation calling its surrogate
// once per cell).
//
// Training step: forward, loss, backward, SGD with momentum (lr 0.01, momentum 0.9, no
// Nesterov, no weight decay; the same for every model). Inference: forward only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace bench {

/// The training loss: softmax cross-entropy on class labels, or MSE / MAE against the input
/// (autoencoders).
enum class loss_kind { cross_entropy, mse, mae };

struct model_spec {
    const char* name;
    const char* shape;  // input shape as reported in the JSON lines
    std::size_t batch;  // the default batch
    std::size_t input_size;
    std::size_t classes;
    std::size_t parameters;
    std::size_t channels = 0, height = 0, width = 0;  // image input (0: a flat vector)
    loss_kind loss = loss_kind::cross_entropy;
    /// values per output: the classes, or the reconstructed input
    constexpr std::size_t outputs() const { return loss == loss_kind::cross_entropy ? classes : input_size; }
    /// values per target: a class index, or the input itself
    constexpr std::size_t target_size() const { return loss == loss_kind::cross_entropy ? 1 : input_size; }
};

inline constexpr model_spec mlp_spec{"mlp", "784-512-512-10", 128, 784, 10, 669706};
inline constexpr model_spec lenet5_spec{"lenet5", "1x28x28", 64, 784, 10, 44426, 1, 28, 28};
inline constexpr model_spec resnet20_spec{"resnet20", "3x32x32", 32, 3 * 32 * 32, 10, 269722, 3, 32, 32};
inline constexpr model_spec resnet50_spec{"resnet50", "3x224x224", 8, 3 * 224 * 224, 1000, 25557032, 3, 224, 224};
inline constexpr model_spec fcae_spec{"fcae", "1x128x128", 16, 128 * 128, 0, 775425, 1, 128, 128, loss_kind::mse};
inline constexpr model_spec deepgalaxy_fcae_spec{"deepgalaxy_fcae", "1x256x256", 4, 256 * 256, 0, 21793297,
                                                 1, 256, 256, loss_kind::mae};
inline constexpr model_spec hep_cnn_spec{"hep_cnn", "3x224x224", 8, 3 * 224 * 224, 2, 594178, 3, 224, 224};
inline constexpr model_spec mcnn_spec{"mcnn", "3x256x320", 4, 3 * 256 * 320, 13, 2731373, 3, 256, 320};
inline constexpr double sgd_lr = 0.01, sgd_momentum = 0.9;

/// Synthetic batch: inputs uniform in [-1, 1) (in [0, 1) for the autoencoders), labels
/// 0..classes-1 (as float; none for the autoencoders, whose targets are x), fixed seeds.
/// `batch` 0 means the model's default.
struct synthetic_batch {
    std::vector<float> x, labels;
    std::size_t batch;
    explicit synthetic_batch(const model_spec& m, std::size_t batch_ = 0, std::uint64_t seed = 42)
        : batch(batch_ ? batch_ : m.batch) {
        x.resize(batch * m.input_size);
        fill_random(x.data(), x.size(), seed);
        if (m.loss != loss_kind::cross_entropy) {
            for (float& v : x) v = 0.5f * (v + 1.0f);
            return;
        }
        labels.resize(batch);
        std::vector<float> r(batch);
        fill_random(r.data(), r.size(), seed + 1);
        for (std::size_t i = 0; i < batch; ++i) {
            auto c = static_cast<std::size_t>((r[i] + 1.0f) * 0.5f * static_cast<float>(m.classes));
            labels[i] = static_cast<float>(c < m.classes ? c : m.classes - 1);
        }
    }
};

inline const char* models_usage() {
    return "options: --model mlp|lenet5|resnet20|resnet50|fcae|deepgalaxy_fcae|hep_cnn|mcnn|all\n"
           "         --phase train|infer|all  --threads N\n"
           "         --batch N (default: the model's, mlp 128, lenet5 64, resnet20 32, resnet50 8, fcae 16,\n"
           "           deepgalaxy_fcae 4, hep_cnn 8, mcnn 4)\n"
           "         --min-time S (1)  --warmup N (3)  --min-reps N (5)\n"
           "         --profile PREFIX (bench_models only: three more steps with the per-node profiler, its table on\n"
           "           stderr and Chrome traces PREFIX_train.json / PREFIX_infer.json)\n"
           "prints one JSON line per measurement on stdout (notes on stderr)";
}

/// The --batch option: 0 (absent) means the model's default; otherwise a positive integer.
inline std::size_t batch_option(const args& a) {
    if (a.get("batch", "").empty()) return 0;
    const double b = a.num("batch", 0);
    if (b < 1 || b > 1e7 || b != static_cast<double>(static_cast<std::size_t>(b))) {
        std::fprintf(stderr, "option --batch: '%s' is not a positive integer\n%s\n", a.get("batch", "").c_str(),
                     models_usage());
        std::exit(2);
    }
    return static_cast<std::size_t>(b);
}

inline protocol protocol_from(const args& a) {
    protocol p;
    p.min_time = a.num("min-time", 1.0);
    p.warmup = static_cast<std::size_t>(a.num("warmup", 3));
    p.min_reps = static_cast<std::size_t>(a.num("min-reps", 5));
    return p;
}

}  // namespace bench
