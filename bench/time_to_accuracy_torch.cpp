// Time to accuracy, libtorch: the twin of time_to_accuracy.cpp on the same recipe
// (common/tta_recipe.hpp): the same IDX files read with lamina's header-only reader
// (lamina/data/idx.hpp) and padded the same way, ResNet-20 with option-A shortcuts and one
// input channel (common/torch_resnets.hpp, initialised as lamina initialises), SGD momentum 0.9
// with weight decay 5e-4 on convolution and linear weights only (a second parameter group
// without decay for batch norm and the bias), the per-step cosine learning rate, batch 64, a
// fresh random order every epoch, evaluation in eval mode under NoGradGuard in batches of 256.
//
//   time_to_accuracy_torch --data ../shared/data/mnist --threads 2 [--epochs 12] [--stop-at-target 1]
//
// Threads: torch::set_num_threads(N), at::set_num_interop_threads(1); run it with the
// environment run_bench.py gives libtorch (OpenMP OpenBLAS, malloc tunables, OMP_NUM_THREADS).
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include <lamina/data/idx.hpp>
#include <lamina/data/image_transforms.hpp>

#include "common/torch_resnets.hpp"
#include "common/tta_recipe.hpp"

namespace tta = bench::tta;
namespace F = torch::nn::functional;

namespace {

struct tensors {
    torch::Tensor x, y;
};

tensors to_torch(const lamina::dataset<float>& d) {
    const auto n = static_cast<std::int64_t>(d.size());
    const lamina::dataset_view<float> v = d.view();
    tensors t;
    t.x = torch::from_blob(const_cast<float*>(v.inputs), {n, 1, 32, 32}, torch::kFloat32).clone();
    t.y = torch::from_blob(const_cast<float*>(v.targets), {n}, torch::kFloat32).to(torch::kInt64);
    return t;
}

}  // namespace

int main(int argc, char** argv) try {
    const tta::options o = tta::parse(argc, argv);
    at::set_num_interop_threads(1);
    torch::set_num_threads(static_cast<int>(o.threads));
    torch::manual_seed(o.seed);

    const std::string dir = lamina::data::find_data_dir(o.data.empty() ? nullptr : o.data.c_str());
    const lamina::dataset<float> all = lamina::data::read_mnist_dir(dir, "t10k");
    if (all.size() < tta::train_count + tta::test_count) {
        std::fprintf(stderr, "time_to_accuracy_torch: the t10k set in '%s' holds %zu images, expected 10000\n",
                     dir.c_str(), all.size());
        return 1;
    }
    const tensors train = to_torch(lamina::data::pad_images(all.slice(0, tta::train_count), 1, 28, 28, 2));
    const tensors test =
        to_torch(lamina::data::pad_images(all.slice(tta::train_count, tta::train_count + tta::test_count), 1, 28, 28, 2));

    bench_torch::ResNet20 net(1, 10);
    if (bench_torch::parameter_count(*net) != tta::parameters) {
        std::fprintf(stderr, "time_to_accuracy_torch: ResNet-20 has %zu parameters, expected %zu\n",
                     bench_torch::parameter_count(*net), tta::parameters);
        return 1;
    }
    // Weight decay on convolution and linear weights only, as lamina's tensors say (decay off
    // for batch norm's gamma and beta and for biases).
    std::vector<torch::Tensor> decay, no_decay;
    for (const auto& p : net->parameters()) (p.dim() > 1 ? decay : no_decay).push_back(p);
    using torch::optim::SGDOptions;
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, std::make_unique<SGDOptions>(
                                   SGDOptions(tta::base_lr).momentum(tta::momentum).weight_decay(tta::weight_decay)));
    groups.emplace_back(no_decay, std::make_unique<SGDOptions>(SGDOptions(tta::base_lr).momentum(tta::momentum)));
    torch::optim::SGD opt(std::move(groups), SGDOptions(tta::base_lr).momentum(tta::momentum));
    std::fprintf(stderr, "libtorch %d.%d.%d: %s; %lld training and %lld held-out images, %d threads\n",
                 TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH, dir.c_str(),
                 static_cast<long long>(train.x.size(0)), static_cast<long long>(test.x.size(0)),
                 torch::get_num_threads());

    const auto n_train = train.x.size(0), n_test = test.x.size(0);
    const auto B = static_cast<std::int64_t>(tta::batch);
    const std::size_t steps_per_epoch = static_cast<std::size_t>((n_train + B - 1) / B);
    tta::reporter rep{"libtorch", o};
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    double train_s = 0, accuracy = 0;
    std::size_t e = 0, step = 0;
    while (e < o.epochs) {
        const auto a = clock::now();
        net->train();
        const torch::Tensor order = torch::randperm(n_train, torch::kInt64);
        for (std::int64_t lo = 0; lo < n_train; lo += B, ++step) {
            const torch::Tensor idx = order.slice(0, lo, std::min(n_train, lo + B));
            const double lr = tta::cosine_lr(step, steps_per_epoch, o.epochs);
            for (auto& g : opt.param_groups()) static_cast<SGDOptions&>(g.options()).lr(lr);
            opt.zero_grad();
            torch::Tensor loss = F::cross_entropy(net->forward(train.x.index_select(0, idx)), train.y.index_select(0, idx));
            loss.backward();
            opt.step();
        }
        train_s += std::chrono::duration<double>(clock::now() - a).count();
        net->eval();
        double loss_sum = 0;
        std::int64_t correct = 0;
        {
            torch::NoGradGuard no_grad;
            const auto EB = static_cast<std::int64_t>(tta::eval_batch);
            for (std::int64_t lo = 0; lo < n_test; lo += EB) {
                const std::int64_t hi = std::min(n_test, lo + EB);
                const torch::Tensor logits = net->forward(test.x.slice(0, lo, hi));
                const torch::Tensor y = test.y.slice(0, lo, hi);
                loss_sum += F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().reduction(torch::kSum)).item<double>();
                correct += logits.argmax(1).eq(y).sum().item<std::int64_t>();
            }
        }
        ++e;
        accuracy = double(correct) / double(n_test);
        rep.epoch(e, accuracy, loss_sum / double(n_test), std::chrono::duration<double>(clock::now() - t0).count(),
                  train_s);
        if (o.stop_at_target && rep.seconds_to_target >= 0) break;
    }
    rep.summary(e, accuracy, std::chrono::duration<double>(clock::now() - t0).count(), train_s);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "time_to_accuracy_torch: error: %s\n", e.what());
    return 1;
}
