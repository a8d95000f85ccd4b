// lamina benchmarks: one model's training-step and inference measurements with lamina, shared
// by bench_models.cpp and bench_models_science.cpp (one translation unit each, so the science
// models do not lengthen the other rows' compile). Loss: softmax cross-entropy on the labels,
// or loss::mse / loss::mae against the input for the autoencoders (model_specs.hpp).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <lamina/lamina.hpp>

#include "model_specs.hpp"

namespace bench {

template <class Net, class Loss = lamina::loss::softmax_cross_entropy>
void run_model(const bench::model_spec& spec, const bench::args& a, const bench::protocol& p, unsigned threads) {
    using model_t = typename Net::template model<lamina::host>;
    if (model_t::parameter_count != spec.parameters || model_t::input_size != spec.input_size ||
        model_t::output_size != spec.outputs()) {
        std::fprintf(stderr, "bench_models: %s has %zu parameters, %zu inputs, %zu outputs; expected %zu, %zu, %zu\n",
                     spec.name, model_t::parameter_count, model_t::input_size, model_t::output_size, spec.parameters,
                     spec.input_size, spec.outputs());
        std::exit(1);
    }
    const char* loss_name = spec.loss == loss_kind::cross_entropy ? "softmax_cross_entropy"
                            : spec.loss == loss_kind::mse         ? "mse"
                                                                  : "mae";
    if (Loss::name() != loss_name) {
        std::fprintf(stderr, "bench_models: %s trains with %s; its spec says %s\n", spec.name, Loss::name().c_str(),
                     loss_name);
        std::exit(1);
    }
    bench::synthetic_batch data(spec, bench::batch_option(a));
    const std::size_t B = data.batch;
    auto net = std::make_unique<model_t>(lamina::seed{1}, lamina::threads{threads});  // ResNet-50's nodes: not on the stack
    const unsigned used = net->context().thread_count();
    {
        const std::string sum = net->summary(B);
        const auto at = sum.find("planned memory");
        std::fprintf(stderr, "lamina %s: %zu parameters; %s", spec.name, model_t::parameter_count,
                     at == std::string::npos ? "\n" : sum.c_str() + at);
    }

    bench::record r;
    r.bench = "models";
    r.impl = lamina::threading_enabled ? "lamina" : "lamina-no-threads";
    r.what = spec.name;
    r.shape = spec.shape;
    r.batch = B;
    r.threads = used;

    if (a.selects("phase", "train")) {
        // classifiers: one label per sample; autoencoders: the targets are the inputs
        const float* targets = spec.loss == bench::loss_kind::cross_entropy ? data.labels.data() : data.x.data();
        lamina::dataset_view<float> view{data.x.data(), targets, B, spec.input_size, spec.target_size()};
        lamina::trainer fit{*net, Loss{}, lamina::optim::sgd{bench::sgd_lr, bench::sgd_momentum}};
        // Step times, not convergence: a diverging step (the HEP CNN's loss on its random labels
        // spikes before it settles) carries on as libtorch's does, instead of stopping the run.
        fit.on_non_finite(lamina::non_finite::keep_going);
        std::vector<std::size_t> idx(B);
        std::iota(idx.begin(), idx.end(), std::size_t{0});
        double last_loss = 0;
        r.phase = "train";
        r.t = bench::measure(p, [&] { last_loss = fit.train_batch(view, idx.data(), B, bench::sgd_lr); });
        r.images_per_s = static_cast<double>(B) / (r.t.median_ms * 1e-3);
        std::fprintf(stderr, "lamina %s train: final loss %.4f\n", spec.name, last_loss);
        bench::emit(r);
        if (!a.get("profile", "").empty()) {  // three more steps with the per-node profiler attached
            lamina::node_profiler prof;
            net->profile(&prof);
            for (int i = 0; i < 3; ++i) fit.train_batch(view, idx.data(), B, bench::sgd_lr);
            net->profile(nullptr);
            prof.write_chrome_trace(a.get("profile", "") + "_train.json", net->graph());
            std::fprintf(stderr, "%s", prof.report(net->graph(), sizeof(float)).c_str());
        }
    }
    if (a.selects("phase", "infer")) {
        std::vector<float> out(B * spec.outputs());
        const model_t& embedded = *net;  // predict is const: the embedding call
        r.phase = "infer";
        r.t = bench::measure(p, [&] { embedded.predict(data.x.data(), out.data(), B); });
        r.images_per_s = static_cast<double>(B) / (r.t.median_ms * 1e-3);
        std::fprintf(stderr, "lamina %s infer: out[0] %.4f\n", spec.name, static_cast<double>(out[0]));
        bench::emit(r);
        if (!a.get("profile", "").empty()) {
            lamina::node_profiler prof;
            net->profile(&prof);
            for (int i = 0; i < 3; ++i) embedded.predict(data.x.data(), out.data(), B);
            net->profile(nullptr);
            prof.write_chrome_trace(a.get("profile", "") + "_infer.json", net->graph());
            std::fprintf(stderr, "%s", prof.report(net->graph(), sizeof(float)).c_str());
        }
    }
}

}  // namespace bench

/// bench_models_science.cpp: runs the science models that --model selects; false when none.
bool run_science_models(const bench::args& a, const bench::protocol& p, unsigned threads);
