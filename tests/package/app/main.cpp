// The program both consumer projects build (installed package, add_subdirectory): it uses
// lamina through the umbrella header, as the README tells users to.
#if __has_include(<lamina/lamina.hpp>)
#include <lamina/lamina.hpp>
#define LAMINA_APP_UMBRELLA 1
#else
// Before the umbrella header exists, use what every lamina has.
#include <lamina/core/config.hpp>
#include <lamina/core/philox.hpp>
#include <lamina/core/shape.hpp>
#define LAMINA_APP_UMBRELLA 0
#endif

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
    std::printf("lamina %d.%d.%d\n", LAMINA_VERSION_MAJOR, LAMINA_VERSION_MINOR, LAMINA_VERSION_PATCH);
    using s = lamina::shape<1, 28, 28>;
    static_assert(s::size == 784, "shape");
    lamina::random_stream r{1, 0};
    const float u = r.uniform(0);
    if (!(u >= 0.0f && u < 1.0f)) {
        std::printf("random_stream out of range\n");
        return 1;
    }
#if LAMINA_APP_UMBRELLA
    using net = lamina::sequential<lamina::input<4>, lamina::dense<8>, lamina::relu, lamina::dense<3>, lamina::softmax>;
    net::model<> model{lamina::seed{1}, lamina::threads{1}};
    std::vector<float> x{0.1f, 0.2f, 0.3f, 0.4f, 1.0f, 0.0f, -1.0f, 0.5f}, y(2 * 3);
    model.predict(x.data(), y.data(), 2);
    for (int b = 0; b < 2; ++b) {
        const float sum = y[b * 3] + y[b * 3 + 1] + y[b * 3 + 2];
        if (!(std::fabs(sum - 1.0f) < 1e-4f)) {
            std::printf("softmax row %d sums to %f\n", b, sum);
            return 1;
        }
    }
    std::printf("forward pass OK: %.4f %.4f %.4f\n", y[0], y[1], y[2]);
#else
    std::printf("(no umbrella header yet: built against lamina/core only)\n");
#endif
    std::printf("consumer OK\n");
    return 0;
}
