// libtorch twins of lamina's ResNets (include/lamina/models/resnet.hpp), for the libtorch
// benchmark programs only (bench_torch_models.cpp, time_to_accuracy_torch.cpp):
//
//   ResNet20(in_channels, classes)  the CIFAR ResNet-20 of He et al. 2016, section 4.2, as
//       lamina's models::resnet20<Classes, Channels> with option-A shortcuts:
//       x[:, :, ::2, ::2] with (Cout - Cin) / 2 zero channels on each side; conv1 3x3 (16), bn,
//       relu; three stages of three basic blocks (16, 32, 64 channels, stride 2 on the first
//       conv of stages 2 and 3); global average pool; linear 64 -> classes (269,722 parameters
//       for 3 input channels and 10 classes).
//   ResNet50(classes)  torchvision's ResNet-50 v1.5 as lamina's models::resnet50<Classes>:
//       7x7/2 conv, bn, relu, 3x3/2 max pool; bottlenecks 3-4-6-3 with the stride on the 3x3
//       conv, projection shortcuts (1x1 conv with the stride + bn) where the shape changes;
//       global average pool; linear 2048 -> classes (25,557,032 parameters for 1000 classes).
//
// Convolutions have no bias; batch norm eps 1e-5, momentum 0.1 (lamina's defaults).
// Initialisation as lamina's: He-normal (fan in) convolutions, batch norm gamma 1 and beta 0,
// the linear layer Glorot-uniform with a zero bias (lamina's dense default), so the
// time-to-accuracy twins start from the same distribution.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace bench_torch {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

inline nn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t stride, std::int64_t pad) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(false));
}
inline nn::BatchNorm2d bn(std::int64_t c) { return nn::BatchNorm2d(nn::BatchNorm2dOptions(c).eps(1e-5).momentum(0.1)); }

/// lamina's initialisation on a module tree (see the file comment).
inline void init_like_lamina(nn::Module& m) {
    torch::NoGradGuard no_grad;
    for (auto& p : m.named_parameters()) {
        auto& t = p.value();
        if (t.dim() == 4) nn::init::kaiming_normal_(t, 0, torch::kFanIn, torch::kReLU);
    }
    for (auto& sub : m.modules(false))
        if (auto* l = sub->as<nn::Linear>()) {
            nn::init::xavier_uniform_(l->weight);
            if (l->bias.defined()) nn::init::zeros_(l->bias);
        }
}

struct BasicBlockImpl : nn::Module {
    nn::Conv2d conv1{nullptr}, conv2{nullptr};
    nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
    std::int64_t stride, pad;
    bool option_a;
    BasicBlockImpl(std::int64_t in, std::int64_t planes, std::int64_t s)
        : stride(s), pad((planes - in) / 2), option_a(s != 1 || in != planes) {
        conv1 = register_module("conv1", conv(in, planes, 3, s, 1));
        bn1 = register_module("bn1", bn(planes));
        conv2 = register_module("conv2", conv(planes, planes, 3, 1, 1));
        bn2 = register_module("bn2", bn(planes));
    }
    torch::Tensor forward(const torch::Tensor& x) {
        torch::Tensor out = torch::relu(bn1(conv1(x)));
        out = bn2(conv2(out));
        torch::Tensor sc = x;
        if (option_a) {  // option A: subsample, then zero channels on both sides
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
    nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr};
    nn::Linear linear{nullptr};
    explicit ResNet20Impl(std::int64_t in_channels = 3, std::int64_t classes = 10) {
        conv1 = register_module("conv1", conv(in_channels, 16, 3, 1, 1));
        bn1 = register_module("bn1", bn(16));
        std::int64_t in = 16;
        auto stage = [&](std::int64_t planes, std::int64_t stride) {
            nn::Sequential s;
            for (std::int64_t b = 0; b < 3; ++b) {
                s->push_back(BasicBlock(in, planes, b == 0 ? stride : 1));
                in = planes;
            }
            return s;
        };
        layer1 = register_module("layer1", stage(16, 1));
        layer2 = register_module("layer2", stage(32, 2));
        layer3 = register_module("layer3", stage(64, 2));
        linear = register_module("linear", nn::Linear(64, classes));
        init_like_lamina(*this);
    }
    torch::Tensor forward(const torch::Tensor& x) {
        torch::Tensor out = torch::relu(bn1(conv1(x)));
        out = layer3->forward(layer2->forward(layer1->forward(out)));
        return linear(out.mean({2, 3}));
    }
};
TORCH_MODULE(ResNet20);

struct BottleneckImpl : nn::Module {
    nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
    nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
    nn::Sequential downsample{nullptr};
    BottleneckImpl(std::int64_t in, std::int64_t planes, std::int64_t stride) {
        conv1 = register_module("conv1", conv(in, planes, 1, 1, 0));
        bn1 = register_module("bn1", bn(planes));
        conv2 = register_module("conv2", conv(planes, planes, 3, stride, 1));  // v1.5: the stride here
        bn2 = register_module("bn2", bn(planes));
        conv3 = register_module("conv3", conv(planes, planes * 4, 1, 1, 0));
        bn3 = register_module("bn3", bn(planes * 4));
        if (stride != 1 || in != planes * 4)
            downsample = register_module("downsample", nn::Sequential(conv(in, planes * 4, 1, stride, 0), bn(planes * 4)));
    }
    torch::Tensor forward(const torch::Tensor& x) {
        torch::Tensor out = torch::relu(bn1(conv1(x)));
        out = torch::relu(bn2(conv2(out)));
        out = bn3(conv3(out));
        return torch::relu(out + (downsample ? downsample->forward(x) : x));
    }
};
TORCH_MODULE(Bottleneck);

struct ResNet50Impl : nn::Module {
    nn::Conv2d conv1{nullptr};
    nn::BatchNorm2d bn1{nullptr};
    nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
    nn::Linear fc{nullptr};
    explicit ResNet50Impl(std::int64_t classes = 1000) {
        conv1 = register_module("conv1", conv(3, 64, 7, 2, 3));
        bn1 = register_module("bn1", bn(64));
        std::int64_t in = 64;
        auto stage = [&](std::int64_t planes, std::int64_t blocks, std::int64_t stride) {
            nn::Sequential s;
            for (std::int64_t b = 0; b < blocks; ++b) {
                s->push_back(Bottleneck(in, planes, b == 0 ? stride : 1));
                in = planes * 4;
            }
            return s;
        };
        layer1 = register_module("layer1", stage(64, 3, 1));
        layer2 = register_module("layer2", stage(128, 4, 2));
        layer3 = register_module("layer3", stage(256, 6, 2));
        layer4 = register_module("layer4", stage(512, 3, 2));
        fc = register_module("fc", nn::Linear(2048, classes));
        init_like_lamina(*this);
    }
    torch::Tensor forward(const torch::Tensor& x) {
        torch::Tensor out = F::max_pool2d(torch::relu(bn1(conv1(x))), F::MaxPool2dFuncOptions(3).stride(2).padding(1));
        out = layer4->forward(layer3->forward(layer2->forward(layer1->forward(out))));
        return fc(out.mean({2, 3}));
    }
};
TORCH_MODULE(ResNet50);

/// Trainable parameters of a module tree (running statistics are buffers, not counted).
inline std::size_t parameter_count(const nn::Module& m) {
    std::size_t n = 0;
    for (const auto& t : m.parameters()) n += static_cast<std::size_t>(t.numel());
    return n;
}

}  // namespace bench_torch
