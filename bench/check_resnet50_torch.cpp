// Does lamina's models::resnet50<1000> mean what torchvision's resnet50 means? Builds
// torchvision's ResNet-50 v1.5 in libtorch, writes its state_dict and a batch to a temporary
// safetensors file, loads that into lamina (io/safetensors.hpp, io/pytorch_names.hpp'
// torchvision_resnet50 names) and compares eval-mode logits and the parameter gradients of one
// training step (train mode, mean softmax cross-entropy, same batch and labels), all of them.
//
//   check_resnet50_torch [--batch 2] [--threads 2] [--seed 50] [--double] [--keep file.safetensors] [--verbose]
//
// Prints one JSON line: the largest absolute differences, each also relative to the largest
// magnitude of its reference (the logits; per gradient tensor, the worst tensor), and times.
// In float32 (the default) libtorch also runs the same network and batch in double, and the
// line has lamina float32 vs libtorch double and libtorch float32 vs libtorch double: a
// randomly initialised ResNet-50's train-mode backward amplifies rounding (relu masks flip,
// batch norm over a batch of 2 at 7x7), so float32 gradients of two correct implementations
// differ by percents; what shows lamina is right is that its float32 error against the double
// reference is of the size of libtorch's own, and that with --double (both in double) every
// gradient agrees to about 1e-13. Exit 1 when the logits differ by more than 1e-3 of their
// scale, or lamina's worst gradient tensor is more than 4x libtorch's own float32 error (at
// least 1e-3) off the double reference, or, with --double, more than 1e-9 off.
//
// The network is initialised as torchvision does (He-normal fan-out convolutions), then made
// less trivial: gammas 1 + 0.1 N(0, 1), betas 0.1 N(0, 1), and running statistics measured on
// a random batch (one train-mode pass with momentum 1), so that eval mode normalises.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include <lamina/lamina.hpp>
#include <lamina/io/pytorch_names.hpp>
#include <lamina/io/safetensors.hpp>

namespace nn = torch::nn;
namespace F = torch::nn::functional;
namespace lm = lamina;
namespace lio = lamina::io;

namespace {

nn::BatchNorm2d bn(std::int64_t c) { return nn::BatchNorm2d(nn::BatchNorm2dOptions(c).eps(1e-5).momentum(0.1)); }
nn::Conv2d conv(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t stride, std::int64_t pad) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(false));
}

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
    ResNet50Impl() {
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
        fc = register_module("fc", nn::Linear(2048, 1000));
        for (auto& p : named_parameters())
            if (p.value().dim() == 4) nn::init::kaiming_normal_(p.value(), 0, torch::kFanOut, torch::kReLU);
    }
    torch::Tensor forward(const torch::Tensor& x) {
        torch::Tensor out = F::max_pool2d(torch::relu(bn1(conv1(x))), F::MaxPool2dFuncOptions(3).stride(2).padding(1));
        out = layer4->forward(layer3->forward(layer2->forward(layer1->forward(out))));
        return fc(out.mean({2, 3}));
    }
};
TORCH_MODULE(ResNet50);

lio::named_tensor to_named(const std::string& name, torch::Tensor t) {
    t = t.detach().contiguous().cpu();
    lio::named_tensor n;
    n.name = name;
    const auto st = t.scalar_type();
    n.dtype = st == torch::kInt64 ? lio::tensor_dtype::i64 : st == torch::kFloat64 ? lio::tensor_dtype::f64 : lio::tensor_dtype::f32;
    if (st != torch::kInt64 && st != torch::kFloat32 && st != torch::kFloat64) std::abort();
    for (auto d : t.sizes()) n.shape.push_back(static_cast<std::size_t>(d));
    n.bytes.resize(static_cast<std::size_t>(t.numel()) * t.element_size());
    if (!n.bytes.empty()) std::memcpy(n.bytes.data(), t.data_ptr(), n.bytes.size());
    return n;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// What libtorch computed (as double whatever the scalar type).
struct reference {
    std::vector<double> logits;
    std::map<std::string, std::vector<double>> grads;
    double loss = 0;
};

std::vector<double> as_double(const torch::Tensor& t) {
    torch::Tensor d = t.detach().to(torch::kFloat64).contiguous().reshape({-1});
    return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

/// Eval-mode logits of x, then one training step's gradients (train mode, mean cross-entropy).
reference run_torch(ResNet50& net, const torch::Tensor& x, const torch::Tensor& y) {
    reference r;
    {
        torch::NoGradGuard no_grad;
        net->eval();
        r.logits = as_double(net->forward(x));
    }
    net->train();
    net->zero_grad();
    torch::Tensor loss = F::cross_entropy(net->forward(x), y);
    loss.backward();
    r.loss = loss.item<double>();
    for (const auto& p : net->named_parameters()) r.grads[p.key()] = as_double(p.value().grad());
    return r;
}

/// Largest |a - b| over the logits, and over the gradients: the largest absolute difference
/// and the worst tensor's largest difference relative to its largest |b|.
struct differences {
    double logits = 0, logit_scale = 0, grad = 0, grad_rel = 0;
    std::string worst;
};
template <class Grad>
differences diff(const std::vector<double>& logits_a, const reference& b,
                 const std::vector<std::pair<std::string, const Grad*>>& grads_a, bool verbose) {
    differences d;
    for (std::size_t i = 0; i < logits_a.size(); ++i) {
        d.logits = std::max(d.logits, std::fabs(logits_a[i] - b.logits[i]));
        d.logit_scale = std::max(d.logit_scale, std::fabs(b.logits[i]));
    }
    for (const auto& [name, ga] : grads_a) {
        const std::vector<double>& gb = b.grads.at(name);
        double m = 0, s = 0;
        for (std::size_t k = 0; k < gb.size(); ++k) {
            m = std::max(m, std::fabs(double(ga[k]) - gb[k]));
            s = std::max(s, std::fabs(gb[k]));
        }
        if (verbose)
            std::fprintf(stderr, "%-32s %10zu elements  max|torch| %.3g  max|diff| %.3g  relative %.3g\n", name.c_str(),
                         gb.size(), s, m, s > 0 ? m / s : m);
        d.grad = std::max(d.grad, m);
        const double rel = s > 0 ? m / s : m;
        if (rel >= d.grad_rel) {
            d.grad_rel = rel;
            d.worst = name;
        }
    }
    return d;
}

std::string json(const char* prefix, const differences& d) {
    char b[512];
    std::snprintf(b, sizeof b,
                  "\"%s_logits_max_abs_diff\": %.3g, \"%s_logits_rel_diff\": %.3g, \"%s_grad_max_abs_diff\": %.3g, "
                  "\"%s_grad_worst_tensor\": \"%s\", \"%s_grad_worst_tensor_rel_diff\": %.3g",
                  prefix, d.logits, prefix, d.logit_scale > 0 ? d.logits / d.logit_scale : d.logits, prefix, d.grad, prefix,
                  d.worst.c_str(), prefix, d.grad_rel);
    return b;
}

/// Loads `path` into lamina's resnet50 (scalar T), predicts and takes one training step;
/// compares with libtorch in T (`ref`) and, when given, in double (`ref64`). Prints the JSON
/// line; returns whether lamina is within the limits against `ref`.
template <class T>
bool compare(const std::string& path, bool remove_file, const torch::Tensor& y, unsigned threads, const reference& ref,
             const reference* ref64, double torch_s, bool verbose) {
    using model_t = typename lm::models::resnet50<1000>::template model<lm::host, T>;
    const auto B = static_cast<std::size_t>(y.size(0));
    auto t1 = std::chrono::steady_clock::now();
    auto lnet = std::make_unique<model_t>(lm::seed{1}, lm::threads{threads});
    lio::tensor_map sd = lio::read_safetensors(path).map();
    if (remove_file) std::remove(path.c_str());
    const std::vector<T> input = sd.at("input").template to<T>();
    lio::pytorch_load_options opt;
    opt.ignore = [](const std::string& n) { return n == "input"; };
    const auto report = lio::load_pytorch_state_dict(*lnet, sd, lio::pytorch_names::torchvision_resnet50(), opt, path);
    sd.clear();
    const double load_s = seconds_since(t1);

    auto t2 = std::chrono::steady_clock::now();
    std::vector<T> out(B * 1000);
    lnet->predict(input.data(), out.data(), B);
    std::vector<T> labels(B);
    for (std::size_t i = 0; i < B; ++i) labels[i] = static_cast<T>(y[static_cast<std::int64_t>(i)].item<std::int64_t>());
    std::vector<T> loss_rows(B);
    const T* lo = lnet->forward_train(input.data(), B, 0);
    const T lloss = lm::loss::softmax_cross_entropy{}.template operator()<lm::host, T>(
        lnet->context(), lo, labels.data(), lnet->output_gradient(), loss_rows.data(), B, 1000);
    lnet->backward();
    const std::vector<T> g = lnet->get_gradients();
    const double lamina_s = seconds_since(t2);

    std::map<std::string, std::string> torch_name;
    for (const auto& [seg, name] : report.loaded) torch_name[seg] = name;
    std::vector<std::pair<std::string, const T*>> grads;
    for (const auto& r : lio::lamina_tensors(*lnet))
        if (!r.running_state) grads.emplace_back(torch_name.at(r.segment), g.data() + r.offset);
    const std::vector<double> logits(out.begin(), out.end());
    const differences d = diff(logits, ref, grads, verbose);
    std::string extra;
    bool ok = d.logits <= 1e-3 * std::max(1.0, d.logit_scale);
    if (ref64) {
        // lamina against exact arithmetic (near enough), and libtorch's own float32 against it
        std::vector<std::pair<std::string, const double*>> torch_grads;
        for (const auto& [name, v] : ref.grads) torch_grads.emplace_back(name, v.data());
        const differences l64 = diff(logits, *ref64, grads, false), t64 = diff(ref.logits, *ref64, torch_grads, false);
        extra = ", " + json("lamina_vs_torch_double", l64) + ", " + json("torch_vs_torch_double", t64);
        ok = ok && l64.grad_rel <= std::max(4 * t64.grad_rel, 1e-3);
    } else {
        ok = ok && d.grad_rel <= 1e-9;
    }
    std::printf("{\"check\": \"resnet50_torch\", \"scalar\": \"%s\", \"batch\": %zu, \"threads\": %u, \"tensors_loaded\": %zu, "
                "\"logits_max_abs\": %.4g, \"loss_torch\": %.9g, \"loss_lamina\": %.9g, \"grad_elements\": %zu, %s%s, "
                "\"torch_s\": %.2f, \"lamina_load_s\": %.2f, \"lamina_s\": %.2f, \"ok\": %s}\n",
                sizeof(T) == 4 ? "float" : "double", B, threads, report.loaded.size(), d.logit_scale, ref.loss,
                double(lloss), static_cast<std::size_t>(model_t::parameter_count), json("lamina_vs_torch", d).c_str(),
                extra.c_str(), torch_s, load_s, lamina_s, ok ? "true" : "false");
    return ok;
}

}  // namespace

int main(int argc, char** argv) {
    std::int64_t batch = 2;
    unsigned threads = 2;
    std::uint64_t seed = 50;
    std::string keep;
    bool verbose = false, dbl = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--batch" && i + 1 < argc) batch = std::atoll(argv[++i]);
        else if (a == "--threads" && i + 1 < argc) threads = static_cast<unsigned>(std::atoi(argv[++i]));
        else if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
        else if (a == "--keep" && i + 1 < argc) keep = argv[++i];
        else if (a == "--verbose") verbose = true;
        else if (a == "--double") dbl = true;
        else {
            std::fprintf(stderr, "usage: check_resnet50_torch [--batch N] [--threads N] [--seed N] [--double] [--keep file] "
                                 "[--verbose]\n");
            return 2;
        }
    }
    if (batch < 1 || threads < 1) {
        std::fprintf(stderr, "check_resnet50_torch: batch and threads must be positive\n");
        return 2;
    }
    torch::set_num_threads(static_cast<int>(threads));
    torch::manual_seed(seed);
    const auto dtype = dbl ? torch::kFloat64 : torch::kFloat32;

    // ---- libtorch: the network, its statistics, the reference logits and gradients ----
    auto t0 = std::chrono::steady_clock::now();
    ResNet50 net;
    {
        torch::NoGradGuard no_grad;
        for (auto& m : net->modules(false))
            if (auto* b = m->as<nn::BatchNorm2d>()) {
                b->weight.copy_(1.0 + 0.1 * torch::randn_like(b->weight));
                b->bias.copy_(0.1 * torch::randn_like(b->bias));
                b->options.momentum(1.0);
            }
        net->train();
        net->forward(torch::randn({4, 3, 224, 224}));
        for (auto& m : net->modules(false))
            if (auto* b = m->as<nn::BatchNorm2d>()) b->options.momentum(0.1);
    }
    net->to(dtype);
    const torch::Tensor x = torch::randn({batch, 3, 224, 224}).to(dtype);
    const torch::Tensor y = torch::randint(0, 1000, {batch}, torch::kInt64);
    std::vector<lio::named_tensor> file;
    std::map<std::string, torch::Tensor> state;
    for (const auto& p : net->named_parameters()) state[p.key()] = p.value().detach().clone();
    for (const auto& b : net->named_buffers()) state[b.key()] = b.value().detach().clone();
    for (const auto& [name, t] : state) file.push_back(to_named(name, t));
    file.push_back(to_named("input", x));
    const reference ref = run_torch(net, x, y);
    const double torch_s = seconds_since(t0);
    reference ref64;
    if (!dbl) {  // the same network and batch in double: what float32 rounding alone does
        ResNet50 net64;
        net64->to(torch::kFloat64);
        {
            torch::NoGradGuard no_grad;
            for (auto& p : net64->named_parameters()) p.value().copy_(state.at(p.key()));
            for (auto& b : net64->named_buffers()) b.value().copy_(state.at(b.key()));
        }
        ref64 = run_torch(net64, x.to(torch::kFloat64), y);
    }

    char tmpl[] = "/tmp/lamina_resnet50_XXXXXX";
    std::string path = keep;
    if (path.empty()) {
        const int fd = ::mkstemp(tmpl);
        if (fd < 0) {
            std::perror("check_resnet50_torch: mkstemp");
            return 1;
        }
        ::close(fd);
        path = tmpl;
    }
    lio::save_safetensors(path, file, {{"generator", "bench/check_resnet50_torch.cpp"}});
    file.clear();

    // ---- lamina: load the file, predict, one training step ----
    const bool ok = dbl ? compare<double>(path, keep.empty(), y, threads, ref, nullptr, torch_s, verbose)
                        : compare<float>(path, keep.empty(), y, threads, ref, &ref64, torch_s, verbose);
    return ok ? 0 : 1;
}
