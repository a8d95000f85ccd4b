// ResNet-50 v1.5 inference as a simulation code would embed it: build the model (1000
// classes, torchvision's layout and 25,557,032 parameters), fold its batch norms into the
// convolutions for inference, and time predict() on a batch.
//
//   ./resnet50 [--batch N] [--threads N] [--repeat N]
//
// Weights: random (seeded) unless the PyTorch loader in include/lamina/io/ is given a file
// (see the README's "Weights from PyTorch").
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <lamina/lamina.hpp>

namespace lm = lamina;
using resnet50 = lm::models::resnet50<1000>;
using resnet50_folded = lm::fold_batch_norm_t<resnet50>;

int main(int argc, char** argv) try {
    std::size_t batch = 8, repeat = 3;
    unsigned threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i];
        const unsigned long v = std::strtoul(argv[i + 1], nullptr, 10);
        if (k == "--batch") batch = v;
        else if (k == "--threads") threads = static_cast<unsigned>(v);
        else if (k == "--repeat") repeat = v;
        else {
            std::fprintf(stderr, "usage: %s [--batch N] [--threads N] [--repeat N]\n", argv[0]);
            return 2;
        }
    }
    resnet50::model<lm::host> net{lm::seed{1}, lm::threads{threads}};
    std::printf("%s", net.summary(batch).c_str());
    resnet50_folded::model<lm::host> fast{lm::seed{1}, lm::threads{threads}};
    lm::fold_batch_norm(net, fast);

    std::vector<float> x(batch * net.input_size), y(batch * 1000), z(batch * 1000);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    auto time = [&](auto& m, std::vector<float>& out) {
        m.predict(x.data(), out.data(), batch);  // plans the buffers
        const auto t0 = std::chrono::steady_clock::now();
        for (std::size_t r = 0; r < repeat; ++r) m.predict(x.data(), out.data(), batch);
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / double(repeat);
    };
    const double t_bn = time(net, y), t_folded = time(fast, z);
    double diff = 0;
    for (std::size_t i = 0; i < y.size(); ++i) diff = std::max(diff, double(std::abs(y[i] - z[i])));
    std::printf("batch %zu on %u threads: %.1f ms per batch (%.1f img/s); batch norm folded: %.1f ms (%.1f img/s), "
                "largest difference %.2g\n",
                batch, net.context().thread_count(), 1e3 * t_bn, double(batch) / t_bn, 1e3 * t_folded,
                double(batch) / t_folded, diff);
    return 0;
} catch (const lamina::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
