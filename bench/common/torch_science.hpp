// libtorch twins of lamina's science models (issue 11), for bench_torch_models.cpp only; the
// layer tables are in bench/common/model_specs.hpp and lamina's headers in include/lamina/models/:
//
//   make_fcae()             conv_autoencoder.hpp at 1x128x128 (775,425 parameters)
//   make_deepgalaxy_fcae()  deepgalaxy.hpp's fcae at 1x256x256 with the paper's widths
//                           (21,793,297 parameters; batch norm weight and bias are parameters,
//                           the running statistics buffers, as in lamina)
//   make_hep_cnn()          hep_cnn.hpp at 3x224x224, 128 filters, dropout 0.5 (594,178)
//   MCNN(h, w, classes)     mcnn.hpp: the seven branches built the same way, joined by
//                           torch::cat on the channels (2,731,373 parameters at 256x320, 13 classes)
//
// Initialisation is libtorch's default (irrelevant to step times). Batch norm eps 1e-5,
// momentum 0.1 (lamina's defaults).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace bench_torch {

namespace tnn = torch::nn;

inline tnn::Conv2d conv3x3(std::int64_t in, std::int64_t out, std::int64_t stride, bool bias) {
    return tnn::Conv2d(tnn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(bias));
}

/// 4x [conv3x3 stride 2 pad 1 + relu] to 32-64-128-256, 4x [transposed conv3x3 stride 2 pad 1
/// output padding 1] to 128-64-32-1, relu between, sigmoid at the end.
inline tnn::Sequential make_fcae() {
    tnn::Sequential s;
    std::int64_t c = 1;
    for (std::int64_t f : {32, 64, 128, 256}) {
        s->push_back(conv3x3(c, f, 2, true));
        s->push_back(tnn::ReLU());
        c = f;
    }
    const std::int64_t up[] = {128, 64, 32, 1};
    for (int i = 0; i < 4; ++i) {
        s->push_back(tnn::ConvTranspose2d(tnn::ConvTranspose2dOptions(c, up[i], 3).stride(2).padding(1).output_padding(1)));
        if (i < 3)
            s->push_back(tnn::ReLU());
        else
            s->push_back(tnn::Sigmoid());
        c = up[i];
    }
    return s;
}

/// The DeepGalaxy FCAE: VGG16 groups (conv3x3 + bias + relu, max-pool 2), centre 2x (conv3x3
/// 512 without bias, batch norm, relu), decoder 5x [nearest upsample 2, 2x (conv3x3 without
/// bias, batch norm, relu)], conv3x3 to 1 channel with bias, sigmoid.
inline tnn::Sequential make_deepgalaxy_fcae() {
    tnn::Sequential s;
    std::int64_t c = 1;
    const std::int64_t widths[] = {64, 128, 256, 512, 512}, convs[] = {2, 2, 3, 3, 3};
    for (int g = 0; g < 5; ++g) {
        for (std::int64_t k = 0; k < convs[g]; ++k) {
            s->push_back(conv3x3(c, widths[g], 1, true));
            s->push_back(tnn::ReLU());
            c = widths[g];
        }
        s->push_back(tnn::MaxPool2d(tnn::MaxPool2dOptions(2)));
    }
    auto conv_bn_relu = [&](std::int64_t f) {
        s->push_back(conv3x3(c, f, 1, false));
        s->push_back(tnn::BatchNorm2d(tnn::BatchNorm2dOptions(f).eps(1e-5).momentum(0.1)));
        s->push_back(tnn::ReLU());
        c = f;
    };
    conv_bn_relu(512);
    conv_bn_relu(512);
    for (std::int64_t f : {256, 128, 64, 32, 16}) {
        s->push_back(tnn::Upsample(
            tnn::UpsampleOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest)));
        conv_bn_relu(f);
        conv_bn_relu(f);
    }
    s->push_back(conv3x3(c, 1, 1, true));
    s->push_back(tnn::Sigmoid());
    return s;
}

/// Kurth et al.: 4x [conv3x3 128 + relu, max-pool 2, dropout 0.5], conv3x3 128 + relu, global
/// average pool, linear 128 -> 2.
inline tnn::Sequential make_hep_cnn() {
    tnn::Sequential s;
    std::int64_t c = 3;
    for (int i = 0; i < 4; ++i) {
        s->push_back(conv3x3(c, 128, 1, true));
        s->push_back(tnn::ReLU());
        s->push_back(tnn::MaxPool2d(tnn::MaxPool2dOptions(2)));
        s->push_back(tnn::Dropout(0.5));
        c = 128;
    }
    s->push_back(conv3x3(c, 128, 1, true));
    s->push_back(tnn::ReLU());
    s->push_back(tnn::AdaptiveAvgPool2d(tnn::AdaptiveAvgPool2dOptions(1)));
    s->push_back(tnn::Flatten());
    s->push_back(tnn::Linear(128, 2));
    return s;
}

/// M-CNN: branch s (1..64) = max-pool s (none for s = 1), 3x [conv5x5 SAME + bias + relu],
/// max-pool 64/s (none for s = 64); concat; conv1x1 1024 + relu, max-pool 2, flatten,
/// linear -> 512 + relu, linear -> classes.
struct MCNNImpl : tnn::Module {
    std::vector<tnn::Sequential> paths;
    tnn::Sequential head;
    MCNNImpl(std::int64_t h, std::int64_t w, std::int64_t classes) {
        const std::int64_t scales[] = {1, 2, 4, 8, 16, 32, 64}, filters[] = {16, 16, 16, 32, 32, 32, 64};
        std::int64_t total = 0;
        for (int b = 0; b < 7; ++b) {
            const std::int64_t s = scales[b], f = filters[b];
            tnn::Sequential p;
            if (s > 1) p->push_back(tnn::MaxPool2d(tnn::MaxPool2dOptions(s).stride(s)));
            std::int64_t c = 3;
            for (int k = 0; k < 3; ++k) {
                p->push_back(tnn::Conv2d(tnn::Conv2dOptions(c, f, 5).padding(2)));
                p->push_back(tnn::ReLU());
                c = f;
            }
            if (s < 64) p->push_back(tnn::MaxPool2d(tnn::MaxPool2dOptions(64 / s).stride(64 / s)));
            paths.push_back(register_module("branch" + std::to_string(s), p));
            total += f;
        }
        head = register_module(
            "head", tnn::Sequential(tnn::Conv2d(tnn::Conv2dOptions(total, 1024, 1)), tnn::ReLU(),
                                    tnn::MaxPool2d(tnn::MaxPool2dOptions(2)), tnn::Flatten(),
                                    tnn::Linear((h / 128) * (w / 128) * 1024, 512), tnn::ReLU(),
                                    tnn::Linear(512, classes)));
    }
    torch::Tensor forward(const torch::Tensor& x) {
        std::vector<torch::Tensor> outs;
        outs.reserve(paths.size());
        for (auto& p : paths) outs.push_back(p->forward(x));
        return head->forward(torch::cat(outs, 1));
    }
};
TORCH_MODULE(MCNN);

}  // namespace bench_torch
