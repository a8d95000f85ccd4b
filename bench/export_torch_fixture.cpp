// libtorch twin of lamina's models::cifar_resnet<20, 10> that writes the fixture
// tests/unit/test_pytorch_weights.cpp checks lamina against:
//
//   export_torch_fixture tests/fixtures/resnet20_torch.safetensors [--seed 20]
//
// The network is the common PyTorch CIFAR ResNet-20 (He et al. 2016, section 4.2): conv1 3x3
// (16), bn1, relu; three stages of three basic blocks (16, 32, 64 channels; the first block of
// stages 2 and 3 has stride 2 on its first conv); option A shortcuts: x[:, :, ::2, ::2] with
// (Cout - Cin) / 2 zero channels on each side; global average pooling; `linear` (64 -> 10).
// Convolutions have no bias; batch norm eps 1e-5, momentum 0.1. Weights: He-normal (fan in)
// for convolutions, PyTorch's default for the linear layer.
//
// It trains the network 10 SGD steps (lr 0.05, momentum 0.9) on a fixed random batch of 16,
// so that the batch norm running statistics and the gammas and betas are not their initial
// values, then writes (float32 unless said):
//   <state_dict names>      every parameter and buffer (num_batches_tracked as I64)
//   input                   [4, 3, 32, 32] another random batch
//   labels                  [4] I64, its labels
//   logits                  [4, 10] eval-mode logits of input
//   train_logits, loss      train-mode logits of input and the mean cross-entropy with labels
//   grad.<parameter name>   the gradient of that loss (one training step from the state above,
//                           train mode): the FIRST min(numel, 256) elements of each parameter's
//                           gradient in row-major order, shape [min(numel, 256)] (all of them
//                           would double the file; 256 per tensor keeps it under 2 MB)
// The state_dict is the one before that training step (the step moves running statistics).
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <lamina/io/safetensors.hpp>

namespace nn = torch::nn;
namespace F = torch::nn::functional;
namespace lio = lamina::io;

namespace {

nn::Conv2d conv3x3(std::int64_t in, std::int64_t out, std::int64_t stride) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}
nn::BatchNorm2d bn(std::int64_t c) { return nn::BatchNorm2d(nn::BatchNorm2dOptions(c).eps(1e-5).momentum(0.1)); }

struct BasicBlockImpl : nn::Module {
    nn::Conv2d conv1{nullptr}, conv2{nullptr};
    nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
    std::int64_t stride, pad;
    bool option_a;
    BasicBlockImpl(std::int64_t in, std::int64_t planes, std::int64_t s)
        : stride(s), pad((planes - in) / 2), option_a(s != 1 || in != planes) {
        conv1 = register_module("conv1", conv3x3(in, planes, s));
        bn1 = register_module("bn1", bn(planes));
        conv2 = register_module("conv2", conv3x3(planes, planes, 1));
        bn2 = register_module("bn2", bn(planes));
    }
    torch::Tensor forward(const torch::Tensor& x) {
        torch::Tensor out = torch::relu(bn1(conv1(x)));
        out = bn2(conv2(out));
        torch::Tensor sc = x;
        if (option_a) {
            sc = x.slice(2, 0, x.size(2), stride).slice(3, 0, x.size(3), stride);
            sc = F::pad(sc, F::PadFuncOptions({0, 0, 0, 0, pad, pad}));
        }
        return torch::relu(out + sc);
    }
};
TORCH_MODULE(BasicBlock);

struct ResNet20Impl : nn::Module {
    nn::Conv2d conv1{nullptr};
    nn::BatchNorm2d bn1{nullptr};
    nn::Sequential layer1, layer2, layer3;
    nn::Linear linear{nullptr};
    explicit ResNet20Impl(std::int64_t classes = 10, std::int64_t n = 3) {
        conv1 = register_module("conv1", conv3x3(3, 16, 1));
        bn1 = register_module("bn1", bn(16));
        std::int64_t in = 16;
        auto stage = [&](std::int64_t planes, std::int64_t stride) {
            nn::Sequential s;
            for (std::int64_t b = 0; b < n; ++b) {
                s->push_back(BasicBlock(in, planes, b == 0 ? stride : 1));
                in = planes;
            }
            return s;
        };
        layer1 = register_module("layer1", stage(16, 1));
        layer2 = register_module("layer2", stage(32, 2));
        layer3 = register_module("layer3", stage(64, 2));
        linear = register_module("linear", nn::Linear(64, classes));
        for (auto& p : named_parameters())
            if (p.value().dim() == 4) nn::init::kaiming_normal_(p.value());
    }
    torch::Tensor forward(const torch::Tensor& x) {
        torch::Tensor out = torch::relu(bn1(conv1(x)));
        out = layer3->forward(layer2->forward(layer1->forward(out)));
        return linear(out.mean({2, 3}));
    }
};
TORCH_MODULE(ResNet20);

lio::named_tensor to_named(const std::string& name, torch::Tensor t) {
    t = t.detach().contiguous().cpu();
    lio::named_tensor n;
    n.name = name;
    if (t.scalar_type() == torch::kFloat32) n.dtype = lio::tensor_dtype::f32;
    else if (t.scalar_type() == torch::kInt64) n.dtype = lio::tensor_dtype::i64;
    else {
        std::fprintf(stderr, "export_torch_fixture: %s has an unexpected dtype\n", name.c_str());
        std::exit(1);
    }
    for (auto d : t.sizes()) n.shape.push_back(static_cast<std::size_t>(d));
    n.bytes.resize(static_cast<std::size_t>(t.numel()) * t.element_size());
    if (!n.bytes.empty()) std::memcpy(n.bytes.data(), t.data_ptr(), n.bytes.size());  // little-endian host
    return n;
}

}  // namespace

int main(int argc, char** argv) {
    std::string out;
    std::uint64_t seed = 20;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
        else if (out.empty() && a.rfind("--", 0) != 0) out = a;
        else {
            std::fprintf(stderr, "usage: export_torch_fixture <out.safetensors> [--seed N]\n");
            return 2;
        }
    }
    if (out.empty()) {
        std::fprintf(stderr, "usage: export_torch_fixture <out.safetensors> [--seed N]\n");
        return 2;
    }
    torch::set_num_threads(1);
    torch::manual_seed(seed);
    ResNet20 net;

    // A few training steps, so that running statistics, gammas and betas move.
    const torch::Tensor xt = torch::randn({16, 3, 32, 32});
    const torch::Tensor yt = torch::randint(0, 10, {16}, torch::kInt64);
    torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
    net->train();
    for (int step = 0; step < 10; ++step) {
        opt.zero_grad();
        torch::Tensor loss = F::cross_entropy(net->forward(xt), yt);
        loss.backward();
        opt.step();
        std::fprintf(stderr, "step %d: loss %.4f\n", step, loss.item<double>());
    }

    const torch::Tensor x = torch::randn({4, 3, 32, 32});
    const torch::Tensor y = torch::randint(0, 10, {4}, torch::kInt64);
    std::vector<lio::named_tensor> file;
    for (const auto& p : net->named_parameters()) file.push_back(to_named(p.key(), p.value().clone()));
    for (const auto& b : net->named_buffers()) file.push_back(to_named(b.key(), b.value().clone()));
    torch::Tensor logits;
    {
        torch::NoGradGuard no_grad;
        net->eval();
        logits = net->forward(x);
    }
    net->train();
    opt.zero_grad();
    torch::Tensor train_logits = net->forward(x);
    torch::Tensor loss = F::cross_entropy(train_logits, y);
    loss.backward();
    file.push_back(to_named("input", x));
    file.push_back(to_named("labels", y));
    file.push_back(to_named("logits", logits));
    file.push_back(to_named("train_logits", train_logits));
    file.push_back(to_named("loss", loss));
    for (const auto& p : net->named_parameters()) {
        torch::Tensor g = p.value().grad().detach().reshape({-1});
        file.push_back(to_named("grad." + p.key(), g.slice(0, 0, std::min<std::int64_t>(g.numel(), 256)).clone()));
    }
    const std::map<std::string, std::string> meta = {
        {"generator", "bench/export_torch_fixture.cpp (libtorch " TORCH_VERSION ")"},
        {"model", "CIFAR ResNet-20, option A shortcuts (lamina::models::cifar_resnet<20, 10>)"},
        {"seed", std::to_string(seed)},
        {"training", "10 SGD steps, lr 0.05, momentum 0.9, on a random batch of 16"},
        {"gradients", "grad.<name>: first min(numel, 256) elements of the parameter's gradient of loss (mean "
                      "cross-entropy of train-mode logits of input with labels), from the saved state"}};
    lio::save_safetensors(out, file, meta);
    std::printf("wrote %s: %zu tensors, loss %.6f, logits[0][0] %.6f\n", out.c_str(), file.size(), loss.item<double>(),
                logits[0][0].item<double>());
    return 0;
}
