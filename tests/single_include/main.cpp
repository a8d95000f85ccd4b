// Smoke test of the single-header edition: this program is compiled against single_include/
// only (plus Eigen and xsimd), never include/, so it proves single_include/lamina/lamina.hpp
// is self-contained. It builds a small network from the umbrella API and runs a forward pass.
#include <lamina/lamina.hpp>

#include <cmath>
#include <cstdio>
#include <type_traits>
#include <vector>

#ifndef LAMINA_SMOKE_BACKEND
#define LAMINA_SMOKE_BACKEND host
#endif

namespace {
int failures = 0;
void check(bool ok, const char* what) {
    if (!ok) {
        std::printf("FAILED: %s\n", what);
        ++failures;
    }
}
}  // namespace

int main() {
    using backend = lamina::LAMINA_SMOKE_BACKEND;

    // Shapes are types.
    using image = lamina::shape<1, 8, 8>;
    static_assert(image::rank == 3 && image::size == 64, "lamina::shape");
    check(image::str() == "(1,8,8)", "shape<1,8,8>::str()");

    // Counter-based random numbers are reproducible.
    lamina::random_stream a{42, 0}, b{42, 0};
    check(a.child(3).uniform(0) == b.child(3).uniform(0), "random_stream is deterministic");

    // A small convolutional network; its output shape is deduced while compiling.
    using net_type = lamina::sequential<lamina::input<1, 8, 8>, lamina::conv2d<2, 3>, lamina::relu,
                                        lamina::max_pool<2>, lamina::flatten, lamina::dense<4>, lamina::softmax>;
    static_assert(std::is_same_v<net_type::output_shape, lamina::shape<4>>, "deduced output shape");

    net_type::model<backend> net{lamina::seed{7}, lamina::threads{1}};
    std::printf("%s", net.summary().c_str());
    check(net.parameter_count > 0, "the network has parameters");

    const std::size_t batch = 3;
    std::vector<float> x(batch * image::size), y(batch * 4, -1.0f);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 37) % 11) / 11.0f;
    net.predict(x.data(), y.data(), batch);
    for (std::size_t s = 0; s < batch; ++s) {
        float sum = 0;
        for (std::size_t k = 0; k < 4; ++k) {
            const float p = y[s * 4 + k];
            check(std::isfinite(p) && p >= 0.0f && p <= 1.0f, "softmax output in [0, 1]");
            sum += p;
        }
        check(std::fabs(sum - 1.0f) < 1e-4f, "softmax outputs sum to 1");
        std::printf("sample %zu: %.4f %.4f %.4f %.4f\n", s, y[s * 4], y[s * 4 + 1], y[s * 4 + 2], y[s * 4 + 3]);
    }

    if (failures) {
        std::printf("single_include smoke test: %d check(s) failed\n", failures);
        return 1;
    }
    std::printf("single_include smoke test: OK\n");
    return 0;
}
