// libtorch twin of bench_models.cpp: the same MLP, LeNet-5, ResNet-20 (option A) and ResNet-50
// v1.5 (common/torch_resnets.hpp), the same science models (common/torch_science.hpp: fcae,
// deepgalaxy_fcae, hep_cnn, mcnn), the same synthetic data, the same training step (forward,
// cross-entropy or MSE / MAE against the input, backward, SGD momentum 0.9, lr 0.01) and the
// same measurement loop (common/bench_util.hpp; peak RSS in every JSON line).
//
//   bench_torch_models --model mlp|lenet5|resnet20|resnet50|fcae|deepgalaxy_fcae|hep_cnn|mcnn|all
//                      --phase train|infer|all --threads N [--batch N] --min-time S
//
// Threads: torch::set_num_threads(N) (intra-op) and at::set_num_interop_threads(1).
// Inference: torch::NoGradGuard and eval mode. Run it with the environment run_bench.py sets
// (OpenMP OpenBLAS, glibc malloc tunables, OMP_NUM_THREADS) for libtorch at its best.
#include <torch/torch.h>

#include <cstdio>

#include "common/model_specs.hpp"
#include "common/torch_resnets.hpp"
#include "common/torch_science.hpp"

namespace nn = torch::nn;

static nn::Sequential make_mlp() {
    return nn::Sequential(nn::Linear(784, 512), nn::ReLU(), nn::Linear(512, 512), nn::ReLU(), nn::Linear(512, 10));
}

static nn::Sequential make_lenet5() {
    return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 6, 5)), nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                          nn::Conv2d(nn::Conv2dOptions(6, 16, 5)), nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                          nn::Flatten(), nn::Linear(256, 120), nn::ReLU(), nn::Linear(120, 84), nn::ReLU(),
                          nn::Linear(84, 10));
}

template <class Net>
static void run_model(Net net, const bench::model_spec& spec, const bench::args& a, const bench::protocol& p,
                      unsigned threads) {
    const std::size_t count = bench_torch::parameter_count(*net);
    if (count != spec.parameters) {
        std::fprintf(stderr, "bench_torch_models: %s has %zu parameters, expected %zu\n", spec.name, count,
                     spec.parameters);
        std::exit(1);
    }
    std::fprintf(stderr, "libtorch %s: %zu parameters\n", spec.name, count);
    bench::synthetic_batch data(spec, bench::batch_option(a));
    const auto B = static_cast<std::int64_t>(data.batch);
    std::vector<std::int64_t> xs{B, static_cast<std::int64_t>(spec.input_size)};
    if (spec.channels)
        xs = {B, static_cast<std::int64_t>(spec.channels), static_cast<std::int64_t>(spec.height),
              static_cast<std::int64_t>(spec.width)};
    torch::Tensor x = torch::from_blob(data.x.data(), xs, torch::kFloat32).clone();
    torch::Tensor y;  // class labels; the autoencoders' targets are x
    if (spec.loss == bench::loss_kind::cross_entropy)
        y = torch::from_blob(data.labels.data(), {B}, torch::kFloat32).to(torch::kInt64);

    bench::record r;
    r.bench = "models";
    r.impl = "libtorch";
    r.what = spec.name;
    r.shape = spec.shape;
    r.batch = data.batch;
    r.threads = threads;

    if (a.selects("phase", "train")) {
        net->train();
        torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(bench::sgd_lr).momentum(bench::sgd_momentum));
        double last_loss = 0;
        r.phase = "train";
        r.t = bench::measure(p, [&] {
            opt.zero_grad();
            torch::Tensor out = net->forward(x);
            torch::Tensor loss = spec.loss == bench::loss_kind::cross_entropy ? torch::nn::functional::cross_entropy(out, y)
                                 : spec.loss == bench::loss_kind::mse         ? torch::nn::functional::mse_loss(out, x)
                                                                              : torch::nn::functional::l1_loss(out, x);
            loss.backward();
            opt.step();
            last_loss = loss.item<double>();
        });
        r.images_per_s = static_cast<double>(B) / (r.t.median_ms * 1e-3);
        std::fprintf(stderr, "libtorch %s train: final loss %.4f\n", spec.name, last_loss);
        bench::emit(r);
    }
    if (a.selects("phase", "infer")) {
        net->eval();
        torch::NoGradGuard no_grad;
        torch::Tensor out;
        r.phase = "infer";
        r.t = bench::measure(p, [&] { out = net->forward(x); });
        r.images_per_s = static_cast<double>(B) / (r.t.median_ms * 1e-3);
        std::fprintf(stderr, "libtorch %s infer: out[0] %.4f\n", spec.name, out.flatten()[0].item<double>());
        bench::emit(r);
    }
}

int main(int argc, char** argv) try {
    bench::args a(argc, argv, {"model", "phase", "threads", "batch", "min-time", "warmup", "min-reps"},
                  bench::models_usage());
    const auto p = bench::protocol_from(a);
    const auto threads = static_cast<unsigned>(a.num("threads", 2));
    const std::string phase = a.get("phase", "all");
    if (phase != "all" && phase != "train" && phase != "infer") {
        std::fprintf(stderr, "bench_torch_models: unknown --phase '%s'\n%s\n", phase.c_str(), bench::models_usage());
        return 2;
    }
    at::set_num_interop_threads(1);
    torch::set_num_threads(static_cast<int>(threads));
    torch::manual_seed(1);
    std::fprintf(stderr, "libtorch %d.%d.%d, intra-op threads %d\n", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR,
                 TORCH_VERSION_PATCH, torch::get_num_threads());
    bool any = false;
    if (a.selects("model", "mlp")) {
        run_model(make_mlp(), bench::mlp_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "lenet5")) {
        run_model(make_lenet5(), bench::lenet5_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "resnet20")) {
        run_model(bench_torch::ResNet20(3, 10), bench::resnet20_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "resnet50")) {
        run_model(bench_torch::ResNet50(1000), bench::resnet50_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "fcae")) {
        run_model(bench_torch::make_fcae(), bench::fcae_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "deepgalaxy_fcae")) {
        run_model(bench_torch::make_deepgalaxy_fcae(), bench::deepgalaxy_fcae_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "hep_cnn")) {
        run_model(bench_torch::make_hep_cnn(), bench::hep_cnn_spec, a, p, threads);
        any = true;
    }
    if (a.selects("model", "mcnn")) {
        run_model(bench_torch::MCNN(static_cast<std::int64_t>(bench::mcnn_spec.height),
                                    static_cast<std::int64_t>(bench::mcnn_spec.width),
                                    static_cast<std::int64_t>(bench::mcnn_spec.classes)),
                  bench::mcnn_spec, a, p, threads);
        any = true;
    }
    if (!any) {
        std::fprintf(stderr, "bench_torch_models: unknown --model '%s'\n%s\n", a.get("model", "").c_str(),
                     bench::models_usage());
        return 2;
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_torch_models: error: %s\n", e.what());
    return 1;
}
