// lamina model benchmarks: MLP, LeNet-5, ResNet-20 and ResNet-50 training steps and inference
// on synthetic data; the science models (fcae, deepgalaxy_fcae, hep_cnn, mcnn) are in
// bench_models_science.cpp, linked into the same program. The libtorch twin is
// bench_torch_models.cpp; both use common/model_specs.hpp.
//
//   bench_models --model mlp|lenet5|resnet20|resnet50|fcae|deepgalaxy_fcae|hep_cnn|mcnn|all
//                --phase train|infer|all --threads N [--batch N] --min-time S [--profile PREFIX]
//
// Training uses the public trainer (train_batch: gather the batch, forward, the loss (softmax
// cross-entropy; MSE or MAE against the input for the autoencoders), backward, SGD-momentum
// update; batch norm in training mode). Inference uses predict() on host pointers (batch norm
// with its running statistics). The planned memory (summary(batch)) goes to stderr; every JSON
// line carries the process's peak RSS (common/lamina_run_model.hpp).
#include <cstdio>
#include <string>

#include <lamina/lamina.hpp>
#include <lamina/models/resnet.hpp>

#include "common/lamina_run_model.hpp"
#include "common/model_specs.hpp"

namespace lm = lamina;

using mlp_net = lm::sequential<lm::input<784>, lm::dense<512>, lm::relu, lm::dense<512>, lm::relu, lm::dense<10>>;

using lenet5_net = lm::sequential<
    lm::input<1, 28, 28>,
    lm::conv2d<6, 5>, lm::relu, lm::max_pool<2>,
    lm::conv2d<16, 5>, lm::relu, lm::max_pool<2>,
    lm::flatten,
    lm::dense<120>, lm::relu,
    lm::dense<84>, lm::relu,
    lm::dense<10>>;

#ifndef LAMINA_NO_THREADS
using resnet20_net = lm::models::resnet20<10>;    // option-A shortcuts, 3x32x32
using resnet50_net = lm::models::resnet50<1000>;  // v1.5, 3x224x224
#endif

int main(int argc, char** argv) try {
    bench::args a(argc, argv, {"model", "phase", "threads", "batch", "min-time", "warmup", "min-reps", "profile"},
                  bench::models_usage());
    const auto p = bench::protocol_from(a);
    const auto threads = static_cast<unsigned>(a.num("threads", 2));
    const std::string phase = a.get("phase", "all");
    if (phase != "all" && phase != "train" && phase != "infer") {
        std::fprintf(stderr, "bench_models: unknown --phase '%s'\n%s\n", phase.c_str(), bench::models_usage());
        return 2;
    }
    bool any = false;
    if (a.selects("model", "mlp")) {
        bench::run_model<mlp_net>(bench::mlp_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "lenet5")) {
        bench::run_model<lenet5_net>(bench::lenet5_spec, a, p, threads);
        any = true;
    }
#ifndef LAMINA_NO_THREADS
    if (a.selects("model", "resnet20")) {
        bench::run_model<resnet20_net>(bench::resnet20_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "resnet50")) {
        bench::run_model<resnet50_net>(bench::resnet50_spec, a, p, threads);
        any = true;
    }
    if (run_science_models(a, p, threads)) any = true;
#else
    // bench_models_serial serves the threading-cost rows (mlp, lenet5) only: the ResNets and the
    // science models would double their compile for nothing.
    if (a.get("model", "all") != "all" && a.get("model", "all") != "mlp" && a.get("model", "all") != "lenet5") {
        std::fprintf(stderr, "bench_models: this build (LAMINA_NO_THREADS) has mlp and lenet5 only\n");
        return 2;
    }
#endif
    if (!any) {
        std::fprintf(stderr, "bench_models: unknown --model '%s'\n%s\n", a.get("model", "").c_str(),
                     bench::models_usage());
        return 2;
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_models: error: %s\n", e.what());
    return 1;
}
