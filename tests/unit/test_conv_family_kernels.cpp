// The host backend's grouped, dilated and depthwise convolution paths against the reference
// backend, float and double, 1 to 3 threads, with the layer's workspace and with none, called
// with the runtime geometry and with the compile-time conv_shape tag: depthwise (multipliers
// 1 to 3, strides 1 to 3, dilations 1 to 3, rows longer than a vector), grouped im2col + GEMM
// (threads owning groups, images split into partial weight gradients, threaded GEMMs for one
// image, 1x1 groups), and dilation with one group. The reference's grouped, dilated loops are
// themselves checked against naive loops in test_conv_family.cpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "lamina/backends/host/host_backend.hpp"
#include "lamina/backends/reference/reference_backend.hpp"

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
                        std::size_t stride, std::size_t pad, std::size_t dilation, std::size_t groups) {
    conv_geometry g;
    g.n = n; g.c = c; g.h = h; g.w = w; g.k = k; g.r = r; g.s = r;
    g.stride_h = g.stride_w = stride;
    g.pad_h = g.pad_w = pad;
    g.dilation_h = g.dilation_w = dilation;
    g.groups = groups;
    g.p = conv_geometry::out_extent(h, r, stride, pad, dilation);
    g.q = conv_geometry::out_extent(w, r, stride, pad, dilation);
    return g;
}

std::string describe(const conv_geometry& g) {
    return "conv n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) + " h=" + std::to_string(g.h) +
           " w=" + std::to_string(g.w) + " k=" + std::to_string(g.k) + " r=" + std::to_string(g.r) +
           " stride=" + std::to_string(g.stride_h) + " pad=" + std::to_string(g.pad_h) +
           " dilation=" + std::to_string(g.dilation_h) + " groups=" + std::to_string(g.groups);
}

std::vector<host::context>& contexts() {
    static std::vector<host::context> c{host::context(threads{1}), host::context(threads{2}),
                                        host::context(threads{3})};
    return c;
}

/// Forward, backward data and backward weights on host against the reference; outputs start
/// as NaN so that an entry the host leaves unwritten fails.
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
    for (auto& ctx : contexts()) {
        for (bool with_ws : {true, false}) {
            const std::string t = describe(g) + " threads=" + std::to_string(ctx.thread_count()) +
                                  (sizeof...(Tag) ? " tagged" : "") + (with_ws ? "" : " null workspace");
            std::vector<T> ws(host::conv2d_workspace<T>(g) + 1, std::numeric_limits<T>::quiet_NaN());
            T* wsp = with_ws ? ws.data() : static_cast<T*>(nullptr);
            std::vector<T> y(g.output_size(), std::numeric_limits<T>::quiet_NaN());
            std::vector<T> dx(g.input_size(), std::numeric_limits<T>::quiet_NaN());
            std::vector<T> dw(g.weight_size(), std::numeric_limits<T>::quiet_NaN()), db(g.k, T(99));
            host::conv2d_forward(ctx, g, x.data(), w.data(), b.data(), y.data(), wsp, tag...);
            host::conv2d_backward_data(ctx, g, dy.data(), w.data(), dx.data(), wsp, tag...);
            host::conv2d_backward_weights(ctx, g, x.data(), dy.data(), dw.data(), db.data(), wsp, tag...);
            check_close(y, y_ref, t + " forward");
            check_close(dx, dx_ref, t + " backward data");
            const double long_sum = std::max(1.0, std::sqrt(static_cast<double>(g.n * g.p * g.q)) / 8);
            check_close(dw, dw_ref, t + " backward weights", long_sum);
            check_close(db, db_ref, t + " bias gradient", long_sum);
            std::vector<T> y_nb(g.output_size(), std::numeric_limits<T>::quiet_NaN()), y_ref_nb(g.output_size());
            host::conv2d_forward(ctx, g, x.data(), w.data(), static_cast<const T*>(nullptr), y_nb.data(), wsp, tag...);
            reference::conv2d_forward(ref_ctx, g, x.data(), w.data(), static_cast<const T*>(nullptr), y_ref_nb.data(),
                                      static_cast<T*>(nullptr));
            check_close(y_nb, y_ref_nb, t + " forward, no bias");
            std::vector<T> dw_nb(g.weight_size(), std::numeric_limits<T>::quiet_NaN());
            host::conv2d_backward_weights(ctx, g, x.data(), dy.data(), dw_nb.data(), static_cast<T*>(nullptr), wsp,
                                          tag...);
            check_close(dw_nb, dw_ref, t + " backward weights, no bias gradient", long_sum);
        }
    }
}

}  // namespace

TEMPLATE_TEST_CASE("host depthwise convolution matches reference", "[host][conv][depthwise]", float, double) {
    using T = TestType;
    //                               n  c   h   w  k  r  s  p  d  g
    const std::vector<conv_geometry> geoms = {
        make_conv(2, 5, 9, 11, 5, 3, 1, 1, 1, 5),    // multiplier 1
        make_conv(3, 4, 12, 10, 8, 3, 2, 1, 1, 4),   // multiplier 2, stride 2
        make_conv(2, 3, 15, 17, 6, 3, 1, 2, 2, 3),   // dilation 2
        make_conv(1, 6, 20, 37, 6, 5, 1, 2, 1, 6),   // rows longer than a vector
        make_conv(4, 2, 7, 7, 6, 2, 3, 0, 1, 2),     // even kernel, stride 3, multiplier 3
        make_conv(2, 3, 11, 9, 3, 3, 2, 0, 3, 3),    // dilation 3, stride 2
        make_conv(1, 7, 5, 5, 7, 7, 1, 3, 1, 7),     // kernel larger than the map
        make_conv(5, 16, 6, 6, 16, 1, 1, 0, 1, 16),  // 1x1
    };
    std::uint64_t seed = 2000;
    for (const auto& g : geoms) check_conv<T>(g, seed += 10);
    check_conv<T>(make_conv(2, 4, 10, 10, 8, 3, 1, 1, 1, 4), 2500, conv_shape<4, 10, 10, 8, 3, 3, 1, 1, 1, 4>{});
    STATIC_REQUIRE(!conv_shape<4, 10, 10, 8, 3, 3, 1, 1, 1, 4>::plain);
    CHECK(host::conv2d_workspace<T>(make_conv(2, 4, 10, 10, 8, 3, 1, 1, 1, 4)) == 0);  // direct: no im2col
}

TEMPLATE_TEST_CASE("host grouped and dilated convolution matches reference", "[host][conv][grouped]", float, double) {
    using T = TestType;
    //                               n  c   h   w   k  r  s  p  d  g
    const std::vector<conv_geometry> geoms = {
        make_conv(3, 6, 9, 7, 9, 3, 1, 1, 2, 3),     // groups and dilation
        make_conv(2, 8, 10, 10, 16, 3, 2, 1, 1, 4),  // 4 groups: threads own groups
        make_conv(6, 4, 8, 8, 6, 3, 1, 1, 1, 2),     // 2 groups, 6 images: images split, partials
        make_conv(1, 4, 9, 9, 4, 3, 1, 1, 1, 2),     // one image: threaded GEMMs
        make_conv(2, 8, 6, 6, 4, 1, 1, 0, 1, 4),     // 1x1 groups (no im2col)
        make_conv(2, 6, 7, 7, 4, 1, 2, 0, 1, 2),     // 1x1 stride 2 groups
        make_conv(2, 3, 12, 12, 8, 3, 1, 2, 2, 1),   // dilation, one group
        make_conv(3, 2, 11, 9, 5, 3, 2, 0, 3, 1),    // dilation 3, stride 2
        make_conv(1, 4, 10, 10, 40, 3, 1, 1, 2, 1),  // many filters, dilation 2
        make_conv(5, 12, 5, 6, 18, 2, 1, 1, 2, 6),   // 6 groups of 2 channels, even kernel
    };
    std::uint64_t seed = 3000;
    for (const auto& g : geoms) check_conv<T>(g, seed += 10);
    check_conv<T>(make_conv(2, 6, 9, 9, 6, 3, 1, 2, 2, 3), 3500, conv_shape<6, 9, 9, 6, 3, 3, 1, 2, 2, 3>{});
    check_conv<T>(make_conv(3, 3, 12, 12, 8, 3, 1, 2, 2, 1), 3600, conv_shape<3, 12, 12, 8, 3, 3, 1, 2, 2, 1>{});
    // one group's im2col matrix (C/G * R * S x P * Q)
    CHECK(host::conv2d_workspace<T>(make_conv(2, 8, 10, 10, 16, 3, 2, 1, 1, 4)) == 2 * 9 * 5 * 5);
}
