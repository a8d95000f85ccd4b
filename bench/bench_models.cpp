// lamina model benchmarks: MLP and LeNet-5 training steps and inference on synthetic data.
// The libtorch twin is bench_torch_models.cpp; both use common/model_specs.hpp.
//
//   bench_models --model mlp|lenet5|all --phase train|infer|all --threads N --min-time S
//
// Training uses the public trainer (train_batch: gather the batch, forward, softmax
// cross-entropy, backward, SGD-momentum update). Inference uses predict() on host pointers.
#include <cstdio>
#include <numeric>
#include <vector>

#include <lamina/lamina.hpp>

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

template <class Net>
void run_model(const bench::model_spec& spec, const bench::args& a, const bench::protocol& p, unsigned threads) {
    using model_t = typename Net::template model<lm::host>;
    static_assert(model_t::input_size == 784 && model_t::output_size == 10,
                  "model definition drifted from common/model_specs.hpp");
    if (model_t::parameter_count != spec.parameters) {
        std::fprintf(stderr, "bench_models: %s has %zu parameters, expected %zu\n", spec.name, model_t::parameter_count,
                     spec.parameters);
        std::exit(1);
    }
    bench::synthetic_batch data(spec);
    const std::size_t B = spec.batch;
    model_t net{lm::seed{1}, lm::threads{threads}};
    const unsigned used = net.context().thread_count();

    bench::record r;
    r.bench = "models";
    r.impl = lm::threading_enabled ? "lamina" : "lamina-no-threads";
    r.what = spec.name;
    r.shape = spec.shape;
    r.batch = B;
    r.threads = used;

    if (a.selects("phase", "train")) {
        lm::dataset_view<float> view{data.x.data(), data.labels.data(), B, spec.input_size, 1};
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{bench::sgd_lr, bench::sgd_momentum}};
        std::vector<std::size_t> idx(B);
        std::iota(idx.begin(), idx.end(), std::size_t{0});
        double last_loss = 0;
        r.phase = "train";
        r.t = bench::measure(p, [&] { last_loss = fit.train_batch(view, idx.data(), B, bench::sgd_lr); });
        r.images_per_s = static_cast<double>(B) / (r.t.median_ms * 1e-3);
        std::fprintf(stderr, "lamina %s train: final loss %.4f\n", spec.name, last_loss);
        bench::emit(r);
    }
    if (a.selects("phase", "infer")) {
        std::vector<float> out(B * spec.classes);
        r.phase = "infer";
        r.t = bench::measure(p, [&] { net.predict(data.x.data(), out.data(), B); });
        r.images_per_s = static_cast<double>(B) / (r.t.median_ms * 1e-3);
        std::fprintf(stderr, "lamina %s infer: out[0] %.4f\n", spec.name, static_cast<double>(out[0]));
        bench::emit(r);
    }
}

int main(int argc, char** argv) try {
    bench::args a(argc, argv, {"model", "phase", "threads", "min-time", "warmup", "min-reps"}, bench::models_usage());
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
