// The host backend's convolution paths against the reference backend: the direct kernel (K <=
// 32, stride 1), the implicit GEMM (batch folded into columns, blocks split across threads,
// rows split when columns are few), the per-image 1x1 path, the implicit-GEMM backward data,
// the direct backward data (stride 1, 2 <= C <= 32: a forward of dy with rotated weights),
// and the compile-time conv_shape tag, on awkward shapes (C and K not
// multiples of the vector width, odd batches, strides 1 and 2, kernels 1 to 7, rectangular
// inputs), float and double, 1 to 3 threads.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "lamina/backends/host/host_backend.hpp"
#include "lamina/backends/reference/reference_backend.hpp"
#include "lamina/lamina.hpp"

using namespace lamina;

namespace {

template <class T>
std::vector<T> random_vec(std::size_t n, std::uint64_t seed) {
    random_stream s{seed, 7};
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(-1.0 + 2.0 * s.uniform_double(i));
    return v;
}

template <class T>
void check_close(const std::vector<T>& got, const std::vector<T>& ref, const std::string& what, double scale = 1) {
    const double rel = (std::is_same<T, float>::value ? 1e-5 : 1e-12) * scale;
    const double abs = (std::is_same<T, float>::value ? 1e-6 : 1e-13) * scale;
    REQUIRE(got.size() == ref.size());
    double max_ref = 0;
    for (T r : ref) max_ref = std::max(max_ref, std::abs(static_cast<double>(r)));
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const double a = got[i], b = ref[i];
        if (!(std::abs(a - b) <= rel * std::max(std::abs(a), std::abs(b)) + abs * max_ref) && bad++ == 0) first = i;
    }
    INFO(what << ": " << bad << " of " << ref.size() << " differ; first at " << first);
    CHECK(bad == 0);
}

conv_geometry make_conv(std::size_t n, std::size_t c, std::size_t h, std::size_t w, std::size_t k, std::size_t r,
                        std::size_t stride, std::size_t pad) {
    conv_geometry g;
    g.n = n; g.c = c; g.h = h; g.w = w; g.k = k; g.r = r; g.s = r;
    g.stride_h = g.stride_w = stride;
    g.pad_h = g.pad_w = pad;
    g.p = conv_geometry::out_extent(h, r, stride, pad);
    g.q = conv_geometry::out_extent(w, r, stride, pad);
    return g;
}

std::string describe(const conv_geometry& g) {
    return "conv n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) + " h=" + std::to_string(g.h) +
           " w=" + std::to_string(g.w) + " k=" + std::to_string(g.k) + " r=" + std::to_string(g.r) +
           " stride=" + std::to_string(g.stride_h) + " pad=" + std::to_string(g.pad_h);
}

std::vector<host::context>& contexts() {
    static std::vector<host::context> c{host::context(threads{1}), host::context(threads{2}),
                                        host::context(threads{3})};
    return c;
}

/// Runs forward, backward data and backward weights on host (runtime geometry, and the tag
/// when given) and checks them against the reference.
template <class T, class... Tag>
void check_conv(const conv_geometry& g, std::uint64_t seed, Tag... tag) {
    reference::context ref_ctx;
    const auto x = random_vec<T>(g.input_size(), seed + 1), w = random_vec<T>(g.weight_size(), seed + 2),
               b = random_vec<T>(g.k, seed + 3), dy = random_vec<T>(g.output_size(), seed + 4);
    std::vector<T> y_ref(g.output_size()), dx_ref(g.input_size()), dw_ref(g.weight_size()), db_ref(g.k);
    reference::conv2d_forward(ref_ctx, g, x.data(), w.data(), b.data(), y_ref.data(), static_cast<T*>(nullptr));
    reference::conv2d_backward_data(ref_ctx, g, dy.data(), w.data(), dx_ref.data(), static_cast<T*>(nullptr));
    reference::conv2d_backward_weights(ref_ctx, g, x.data(), dy.data(), dw_ref.data(), db_ref.data(),
                                       static_cast<T*>(nullptr));
    std::vector<T> y_first;
    for (auto& ctx : contexts()) {
        const std::string t = describe(g) + " threads=" + std::to_string(ctx.thread_count()) +
                              (sizeof...(Tag) ? " tagged" : "");
        std::vector<T> ws(host::conv2d_workspace<T>(g) + 1, std::numeric_limits<T>::quiet_NaN());
        std::vector<T> y(g.output_size(), std::numeric_limits<T>::quiet_NaN());
        std::vector<T> dx(g.input_size(), std::numeric_limits<T>::quiet_NaN());
        std::vector<T> dw(g.weight_size(), std::numeric_limits<T>::quiet_NaN()), db(g.k, T(99));
        host::conv2d_forward(ctx, g, x.data(), w.data(), b.data(), y.data(), ws.data(), tag...);
        host::conv2d_backward_data(ctx, g, dy.data(), w.data(), dx.data(), ws.data(), tag...);
        host::conv2d_backward_weights(ctx, g, x.data(), dy.data(), dw.data(), db.data(), ws.data(), tag...);
        check_close(y, y_ref, t + " forward");
        check_close(dx, dx_ref, t + " backward data");
        // Weight and bias gradients sum N*P*Q products (5000 here), in another order than the
        // reference's running sum: tolerance grows with the square root of the length.
        const double long_sum = std::max(1.0, std::sqrt(static_cast<double>(g.n * g.p * g.q)) / 8);
        check_close(dw, dw_ref, t + " backward weights", long_sum);
        check_close(db, db_ref, t + " bias gradient", long_sum);
        // The forward sums every output in a fixed order: identical at every thread count.
        if (y_first.empty())
            y_first = y;
        else
            CHECK(y == y_first);
        std::vector<T> y_nb(g.output_size(), std::numeric_limits<T>::quiet_NaN()), y_ref_nb(g.output_size());
        host::conv2d_forward(ctx, g, x.data(), w.data(), static_cast<const T*>(nullptr), y_nb.data(),
                             static_cast<T*>(nullptr), tag...);
        reference::conv2d_forward(ref_ctx, g, x.data(), w.data(), static_cast<const T*>(nullptr), y_ref_nb.data(),
                                  static_cast<T*>(nullptr));
        check_close(y_nb, y_ref_nb, t + " forward, no bias, null workspace");
    }
}

}  // namespace

TEMPLATE_TEST_CASE("host conv2d paths match reference", "[host][conv]", float, double) {
    using T = TestType;
    const std::vector<conv_geometry> geoms = {
        // 3x3, padding, C and K off the vector width, odd and unit batches
        make_conv(1, 3, 9, 9, 5, 3, 1, 1), make_conv(3, 7, 13, 11, 13, 3, 1, 1), make_conv(5, 17, 10, 10, 19, 3, 1, 1),
        make_conv(2, 16, 8, 8, 16, 3, 1, 1), make_conv(1, 9, 7, 7, 70, 3, 1, 1),
        // strides 2, kernels 1, 5, 7
        make_conv(3, 5, 15, 17, 11, 3, 2, 1), make_conv(2, 3, 30, 30, 8, 7, 2, 3), make_conv(3, 4, 12, 12, 6, 5, 1, 2),
        make_conv(7, 1, 28, 28, 6, 5, 1, 0), make_conv(5, 6, 12, 12, 16, 5, 1, 0), make_conv(2, 6, 9, 9, 10, 1, 2, 0),
        // 1x1: small maps (implicit GEMM, batch folded) and a large one (per-image GEMM)
        make_conv(3, 20, 7, 7, 33, 1, 1, 0), make_conv(1, 40, 14, 14, 12, 1, 1, 0), make_conv(2, 5, 48, 48, 7, 1, 1, 0),
        make_conv(2, 5, 48, 48, 40, 1, 1, 0), make_conv(3, 7, 13, 11, 37, 3, 1, 1), make_conv(2, 3, 9, 30, 33, 5, 1, 2),
        // more rows than columns (rows split across threads), C*R*S over one KC block
        make_conv(1, 40, 3, 3, 50, 3, 1, 0), make_conv(2, 64, 5, 5, 20, 3, 1, 1), make_conv(1, 3, 4, 4, 2, 3, 1, 1),
        // kernel as large as the padded input, output 1x1
        make_conv(3, 2, 3, 3, 4, 5, 1, 1),
        // direct backward data at its edges: C = 32 unpadded, C = 33 (implicit GEMM), and a
        // rectangular kernel with different paddings per axis; padding wider than half the
        // kernel
        make_conv(2, 32, 10, 10, 24, 3, 1, 0), make_conv(2, 33, 6, 6, 8, 3, 1, 1), make_conv(2, 3, 6, 6, 5, 5, 1, 3),
        make_conv(3, 5, 18, 18, 32, 3, 1, 1),
        [] {
            conv_geometry g = make_conv(3, 6, 11, 16, 9, 3, 1, 1);
            g.s = 5;
            g.pad_w = 2;
            g.q = conv_geometry::out_extent(g.w, g.s, g.stride_w, g.pad_w);
            return g;
        }(),
    };
    std::uint64_t seed = 1000;
    for (const auto& g : geoms) check_conv<T>(g, seed += 10);
}

TEMPLATE_TEST_CASE("host conv2d with compile-time shape tags", "[host][conv]", float, double) {
    using T = TestType;
    check_conv<T>(make_conv(3, 5, 11, 11, 9, 3, 1, 1), 1, conv_shape<5, 11, 11, 9, 3, 3, 1, 1>{});
    check_conv<T>(make_conv(2, 3, 20, 20, 8, 7, 2, 3), 2, conv_shape<3, 20, 20, 8, 7, 7, 2, 3>{});
    check_conv<T>(make_conv(3, 12, 7, 7, 10, 1, 1, 0), 3, conv_shape<12, 7, 7, 10, 1, 1, 1, 0>{});
    check_conv<T>(make_conv(2, 4, 50, 50, 6, 1, 1, 0), 4, conv_shape<4, 50, 50, 6, 1, 1, 1, 0>{});
    check_conv<T>(make_conv(5, 1, 28, 28, 6, 5, 1, 0), 5, conv_shape<1, 28, 28, 6, 5, 5, 1, 0>{});
    check_conv<T>(make_conv(2, 4, 50, 50, 40, 1, 1, 0), 6, conv_shape<4, 50, 50, 40, 1, 1, 1, 0>{});
    check_conv<T>(make_conv(3, 6, 9, 9, 35, 3, 1, 1), 7, conv_shape<6, 9, 9, 35, 3, 3, 1, 1>{});
    static_assert(conv_shape<64, 56, 56, 256, 1, 1, 1, 0>::pointwise, "1x1 is pointwise");
    static_assert(conv_shape<3, 224, 224, 64, 7, 7, 2, 3>::p == 112, "7x7/2 output extent");
}

TEST_CASE("conv2d layer passes its compile-time shape to backends that take it", "[host][conv][layer]") {
    using layer = conv2d<8, 3, 1, 1>;
    using in = shape<3, 10, 10>;
    static_assert(layer::impl<in, host, float>::tagged, "host takes the conv_shape tag");
    static_assert(layer::impl<in, reference, double>::tagged, "reference takes the conv_shape tag");
    static_assert(std::is_same<layer::impl<in, host, float>::shape_tag, conv_shape<3, 10, 10, 8, 3, 3, 1, 1>>::value,
                  "the layer's shape tag");
    SUCCEED();
}
