// The Kokkos backend's grouped, dilated and depthwise convolution kernels against the
// reference backend (forward with and without bias, backward data, backward weights with and
// without the bias gradient; the small-kernel and the large-kernel (> 49 taps) weight
// gradients), and the layers built on them (conv2d with dilation and groups, depthwise_conv2d,
// conv_transpose2d through the plain kernels) as whole networks on Kokkos against the same
// networks on the reference: forward, input and parameter gradients, accumulation into dx.
// On every execution space of this Kokkos build.
#include "kokkos_test_support.hpp"

#include <lamina/backends/reference/reference_backend.hpp>
#include <lamina/layers/activations.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/layers/conv_transpose2d.hpp>
#include <lamina/layers/flatten.hpp>
#include <lamina/network/sequential.hpp>

#include <string>
#include <vector>

namespace lm = lamina;
using ref = lm::reference;
using kt::dev;
using kt::random_vector;

#define KOKKOS_SPACES_TEST(name, tags) TEMPLATE_TEST_CASE(name, tags, LAMINA_KOKKOS_TEST_SPACES)

namespace {

lm::conv_geometry conv(std::size_t n, std::size_t c, std::size_t h, std::size_t w, std::size_t k, std::size_t r,
                       std::size_t s, std::size_t pad, std::size_t dilation, std::size_t groups) {
    lm::conv_geometry g;
    g.n = n; g.c = c; g.h = h; g.w = w; g.k = k; g.r = g.s = r; g.stride_h = g.stride_w = s; g.pad_h = g.pad_w = pad;
    g.dilation_h = g.dilation_w = dilation;
    g.groups = groups;
    g.p = lm::conv_geometry::out_extent(h, r, s, pad, dilation);
    g.q = lm::conv_geometry::out_extent(w, r, s, pad, dilation);
    return g;
}

/// The same network on the reference and on Kokkos backend B (same seed, so the same
/// parameters): forward_train, backward with dx, backward accumulating into dx.
template <class Net, class B>
void compare_network(std::uint64_t seed, std::size_t batch) {
    typename Net::template model<ref> r{lm::seed{seed}};
    typename Net::template model<B> k{lm::seed{seed}};
    REQUIRE(k.get_parameters() == r.get_parameters());
    const std::size_t nin = batch * Net::template model<ref>::input_size;
    const std::size_t nout = batch * Net::template model<ref>::output_size;
    const auto x = random_vector<float>(nin, seed + 1), dy = random_vector<float>(nout, seed + 2);
    const auto base = random_vector<float>(nin, seed + 3, 5, 6);

    const float* ry = r.forward_train(x.data(), batch, 0);
    const std::vector<float> ref_y(ry, ry + nout);
    std::copy(dy.begin(), dy.end(), r.output_gradient());
    std::vector<float> ref_dx(nin, 777.0f);
    r.backward(ref_dx.data());
    const auto ref_grads = r.get_gradients();
    r.forward_train(x.data(), batch, 0);
    std::copy(dy.begin(), dy.end(), r.output_gradient());
    std::vector<float> ref_acc = base;
    r.backward_accumulate(ref_acc.data());

    dev<B, float> dx_in(x), ddx(std::vector<float>(nin, 777.0f)), dacc(base);
    const float* ky = k.forward_train(dx_in.data(), batch, 0);
    std::vector<float> got_y(nout);
    B::download(k.context(), got_y.data(), ky, nout);
    KT_REQUIRE_CLOSE(got_y, ref_y);
    B::upload(k.context(), k.output_gradient(), dy.data(), nout);
    k.backward(ddx.data());
    KT_REQUIRE_CLOSE(ddx.host(), ref_dx);
    KT_REQUIRE_CLOSE(k.get_gradients(), ref_grads);
    k.forward_train(dx_in.data(), batch, 0);
    B::upload(k.context(), k.output_gradient(), dy.data(), nout);
    k.backward_accumulate(dacc.data());
    KT_REQUIRE_CLOSE(dacc.host(), ref_acc);
}

}  // namespace

KOKKOS_SPACES_TEST("kokkos grouped, dilated and depthwise convolution match the reference", "[kokkos][conv]") {
    using B = lm::kokkos_backend<TestType>;
    typename B::context c;
    ref::context rc;
    //              n  c   h   w   k  r  s  p  d  g
    for (auto g : {conv(2, 6, 9, 7, 9, 3, 1, 1, 2, 3),     // groups and dilation
                   conv(2, 8, 10, 10, 16, 3, 2, 1, 1, 4),  // 4 groups, stride 2
                   conv(3, 4, 8, 8, 6, 1, 1, 0, 1, 2),     // 1x1 groups
                   conv(2, 3, 12, 12, 8, 3, 1, 2, 2, 1),   // dilation, one group
                   conv(3, 2, 11, 9, 5, 3, 2, 0, 3, 1),    // dilation 3, stride 2
                   conv(2, 5, 9, 11, 5, 3, 1, 1, 1, 5),    // depthwise
                   conv(3, 4, 12, 10, 8, 3, 2, 1, 1, 4),   // depthwise, multiplier 2, stride 2
                   conv(2, 3, 15, 17, 6, 3, 1, 2, 2, 3),   // depthwise, dilation 2
                   conv(1, 2, 7, 7, 6, 2, 3, 0, 1, 2),     // depthwise, even kernel, stride 3, multiplier 3
                   conv(2, 4, 20, 19, 4, 8, 1, 5, 2, 2),   // 64 taps: the large-kernel weight gradient
                   conv(1, 3, 9, 30, 3, 7, 2, 3, 1, 3),    // 49 taps, depthwise
                   conv(2, 2, 6, 6, 4, 3, 1, 0, 1, 1)}) {  // plain (the host spaces' implicit GEMM)
        INFO("n " << g.n << " c " << g.c << " h " << g.h << " w " << g.w << " k " << g.k << " r " << g.r << " stride "
                  << g.stride_h << " pad " << g.pad_h << " dilation " << g.dilation_h << " groups " << g.groups);
        REQUIRE(B::template conv2d_workspace<float>(g) == 0);
        auto x = random_vector<float>(g.input_size(), 17), w = random_vector<float>(g.weight_size(), 18);
        auto b = random_vector<float>(g.k, 19), dy = random_vector<float>(g.output_size(), 20);
        for (bool with_bias : {false, true}) {
            std::vector<float> ry(g.output_size());
            ref::conv2d_forward(rc, g, x.data(), w.data(), with_bias ? b.data() : nullptr, ry.data(),
                                static_cast<float*>(nullptr));
            dev<B, float> dx(x), dw(w), db(b), dyv(random_vector<float>(g.output_size(), 94));
            B::conv2d_forward(c, g, static_cast<const float*>(dx.data()), static_cast<const float*>(dw.data()),
                              with_bias ? static_cast<const float*>(db.data()) : nullptr, dyv.data(),
                              static_cast<float*>(nullptr));
            KT_REQUIRE_CLOSE(dyv.host(), ry);
        }
        std::vector<float> rdx(g.input_size()), rdw(g.weight_size()), rdb(g.k);
        ref::conv2d_backward_data(rc, g, dy.data(), w.data(), rdx.data(), static_cast<float*>(nullptr));
        ref::conv2d_backward_weights(rc, g, x.data(), dy.data(), rdw.data(), rdb.data(), static_cast<float*>(nullptr));
        dev<B, float> dx(x), dw(w), ddy(dy), ddx(random_vector<float>(g.input_size(), 97)),
            ddw(random_vector<float>(g.weight_size(), 96)), ddb(random_vector<float>(g.k, 95));
        B::conv2d_backward_data(c, g, static_cast<const float*>(ddy.data()), static_cast<const float*>(dw.data()),
                                ddx.data(), static_cast<float*>(nullptr));
        KT_REQUIRE_CLOSE(ddx.host(), rdx);
        B::conv2d_backward_weights(c, g, static_cast<const float*>(dx.data()), static_cast<const float*>(ddy.data()),
                                   ddw.data(), ddb.data(), static_cast<float*>(nullptr));
        KT_REQUIRE_CLOSE(ddw.host(), rdw);
        KT_REQUIRE_CLOSE(ddb.host(), rdb);
        dev<B, float> ddw2(random_vector<float>(g.weight_size(), 93));
        B::conv2d_backward_weights(c, g, static_cast<const float*>(dx.data()), static_cast<const float*>(ddy.data()),
                                   ddw2.data(), static_cast<float*>(nullptr), static_cast<float*>(nullptr));
        KT_REQUIRE_CLOSE(ddw2.host(), rdw);
        // the compile-time shape tag is accepted (and changes nothing)
        dev<B, float> ddx2(random_vector<float>(g.input_size(), 92));
        B::conv2d_backward_data(c, g, static_cast<const float*>(ddy.data()), static_cast<const float*>(dw.data()),
                                ddx2.data(), static_cast<float*>(nullptr), lm::conv_shape<1, 1, 1, 1, 1, 1, 1, 0, 2, 1>{});
        KT_REQUIRE_CLOSE(ddx2.host(), rdx);
    }
}

KOKKOS_SPACES_TEST("kokkos conv family layers match the reference", "[kokkos][conv][layers]") {
    using B = lm::kokkos_backend<TestType>;
    using glorot = lm::init::glorot_uniform;
    SECTION("transposed convolutions: the autoencoder's upsampling, stride 1, no bias, output padding 2") {
        using net = lm::sequential<lm::input<3, 4, 5>, lm::conv_transpose2d<4, 3, 2, 1, 1>, lm::tanh_layer,
                                   lm::conv_transpose2d<3, 3, 1, 1, 0, glorot, false>, lm::tanh_layer,
                                   lm::conv_transpose2d<2, 5, 3, 2, 2>>;
        compare_network<net, B>(11, 3);
    }
    SECTION("depthwise, grouped and dilated convolutions") {
        using net = lm::sequential<lm::input<4, 9, 8>, lm::depthwise_conv2d<3, 1, 1, 2>, lm::tanh_layer,
                                   lm::conv2d<6, 3, 1, 2, glorot, true, 2, 2>, lm::tanh_layer,
                                   lm::depthwise_conv2d<3, 2, 2, 1, glorot, false, 2>, lm::flatten>;
        compare_network<net, B>(12, 2);
    }
}
