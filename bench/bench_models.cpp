// lamina model benchmarks: MLP, LeNet-5, ResNet-20 and ResNet-50 training steps and inference
// on synthetic data. The libtorch twin is bench_torch_models.cpp; both use common/model_specs.hpp.
//
//   bench_models --model mlp|lenet5|resnet20|resnet50|all --phase train|infer|all --threads N
//                [--batch N] --min-time S [--profile PREFIX]
//
// Training uses the public trainer (train_batch: gather the batch, forward, softmax
// cross-entropy, backward, SGD-momentum update; batch norm in training mode). Inference uses
// predict() on host pointers (batch norm with its running statistics). The planned memory
// (summary(batch)) goes to stderr; every JSON line carries the process's peak RSS.
#include <cstdio>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <lamina/lamina.hpp>
#include <lamina/models/resnet.hpp>

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

template <class Net>
void run_model(const bench::model_spec& spec, const bench::args& a, const bench::protocol& p, unsigned threads) {
    using model_t = typename Net::template model<lm::host>;
    if (model_t::parameter_count != spec.parameters || model_t::input_size != spec.input_size ||
        model_t::output_size != spec.classes) {
        std::fprintf(stderr, "bench_models: %s has %zu parameters, %zu inputs, %zu outputs; expected %zu, %zu, %zu\n",
                     spec.name, model_t::parameter_count, model_t::input_size, model_t::output_size, spec.parameters,
                     spec.input_size, spec.classes);
        std::exit(1);
    }
    bench::synthetic_batch data(spec, bench::batch_option(a));
    const std::size_t B = data.batch;
    auto net = std::make_unique<model_t>(lm::seed{1}, lm::threads{threads});  // ResNet-50's nodes: not on the stack
    const unsigned used = net->context().thread_count();
    {
        const std::string sum = net->summary(B);
        const auto at = sum.find("planned memory");
        std::fprintf(stderr, "lamina %s: %zu parameters; %s", spec.name, model_t::parameter_count,
                     at == std::string::npos ? "\n" : sum.c_str() + at);
    }

    bench::record r;
    r.bench = "models";
    r.impl = lm::threading_enabled ? "lamina" : "lamina-no-threads";
    r.what = spec.name;
    r.shape = spec.shape;
    r.batch = B;
    r.threads = used;

    if (a.selects("phase", "train")) {
        lm::dataset_view<float> view{data.x.data(), data.labels.data(), B, spec.input_size, 1};
        lm::trainer fit{*net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{bench::sgd_lr, bench::sgd_momentum}};
        std::vector<std::size_t> idx(B);
        std::iota(idx.begin(), idx.end(), std::size_t{0});
        double last_loss = 0;
        r.phase = "train";
        r.t = bench::measure(p, [&] { last_loss = fit.train_batch(view, idx.data(), B, bench::sgd_lr); });
        r.images_per_s = static_cast<double>(B) / (r.t.median_ms * 1e-3);
        std::fprintf(stderr, "lamina %s train: final loss %.4f\n", spec.name, last_loss);
        bench::emit(r);
        if (!a.get("profile", "").empty()) {  // three more steps with the per-node profiler attached
            lm::node_profiler prof;
            net->profile(&prof);
            for (int i = 0; i < 3; ++i) fit.train_batch(view, idx.data(), B, bench::sgd_lr);
            net->profile(nullptr);
            prof.write_chrome_trace(a.get("profile", "") + "_train.json", net->graph());
            std::fprintf(stderr, "%s", prof.report(net->graph(), sizeof(float)).c_str());
        }
    }
    if (a.selects("phase", "infer")) {
        std::vector<float> out(B * spec.classes);
        const model_t& embedded = *net;  // predict is const: the embedding call
        r.phase = "infer";
        r.t = bench::measure(p, [&] { embedded.predict(data.x.data(), out.data(), B); });
        r.images_per_s = static_cast<double>(B) / (r.t.median_ms * 1e-3);
        std::fprintf(stderr, "lamina %s infer: out[0] %.4f\n", spec.name, static_cast<double>(out[0]));
        bench::emit(r);
        if (!a.get("profile", "").empty()) {
            lm::node_profiler prof;
            net->profile(&prof);
            for (int i = 0; i < 3; ++i) embedded.predict(data.x.data(), out.data(), B);
            net->profile(nullptr);
            prof.write_chrome_trace(a.get("profile", "") + "_infer.json", net->graph());
            std::fprintf(stderr, "%s", prof.report(net->graph(), sizeof(float)).c_str());
        }
    }
}

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
        run_model<mlp_net>(bench::mlp_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "lenet5")) {
        run_model<lenet5_net>(bench::lenet5_spec, a, p, threads);
        any = true;
    }
#ifndef LAMINA_NO_THREADS
    if (a.selects("model", "resnet20")) {
        run_model<resnet20_net>(bench::resnet20_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "resnet50")) {
        run_model<resnet50_net>(bench::resnet50_spec, a, p, threads);
        any = true;
    }
#else
    // bench_models_serial serves the threading-cost rows (mlp, lenet5) only: the ResNets would
    // double the ResNet-50 compile for nothing.
    if (a.get("model", "all") == "resnet20" || a.get("model", "all") == "resnet50") {
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
