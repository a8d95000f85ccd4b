// lamina benchmarks: the two model definitions shared by bench_models (lamina) and
// bench_torch_models (libtorch): names, batch sizes, shapes, parameter counts, the
// optimizer and the synthetic data. Both programs build the same networks from this.
//
//   mlp    784-512-relu-512-relu-10, softmax cross-entropy, batch 128 (669,706 parameters)
//   lenet5 1x28x28, conv5x5(6)-relu-maxpool2-conv5x5(16)-relu-maxpool2-fc120-relu-fc84-relu-fc10,
//          batch 64 (44,426 parameters)
//
// Training step: forward, loss, backward, SGD with momentum (lr 0.01, momentum 0.9, no
// Nesterov, no weight decay). Inference: forward only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace bench {

struct model_spec {
    const char* name;
    const char* shape;  // input shape as reported in the JSON lines
    std::size_t batch;
    std::size_t input_size;
    std::size_t classes;
    std::size_t parameters;
};

inline constexpr model_spec mlp_spec{"mlp", "784-512-512-10", 128, 784, 10, 669706};
inline constexpr model_spec lenet5_spec{"lenet5", "1x28x28", 64, 784, 10, 44426};
inline constexpr double sgd_lr = 0.01, sgd_momentum = 0.9;

/// Synthetic batch: inputs uniform in [-1, 1), labels 0..classes-1 (as float), fixed seeds.
struct synthetic_batch {
    std::vector<float> x, labels;
    synthetic_batch(const model_spec& m, std::uint64_t seed = 42) : x(m.batch * m.input_size), labels(m.batch) {
        fill_random(x.data(), x.size(), seed);
        std::vector<float> r(m.batch);
        fill_random(r.data(), r.size(), seed + 1);
        for (std::size_t i = 0; i < m.batch; ++i) {
            auto c = static_cast<std::size_t>((r[i] + 1.0f) * 0.5f * static_cast<float>(m.classes));
            labels[i] = static_cast<float>(c < m.classes ? c : m.classes - 1);
        }
    }
};

inline const char* models_usage() {
    return "options: --model mlp|lenet5|all  --phase train|infer|all  --threads N  --min-time S\n"
           "         --warmup N (3)  --min-reps N (5)\n"
           "prints one JSON line per measurement on stdout";
}

inline protocol protocol_from(const args& a) {
    protocol p;
    p.min_time = a.num("min-time", 1.0);
    p.warmup = static_cast<std::size_t>(a.num("warmup", 3));
    p.min_reps = static_cast<std::size_t>(a.num("min-reps", 5));
    return p;
}

}  // namespace bench
