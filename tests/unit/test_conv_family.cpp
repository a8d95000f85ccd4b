// The convolution family beyond the plain conv2d: dilated and grouped conv2d, depthwise_conv2d
// and conv_transpose2d. Gradient checks (central differences, double) and forward checks
// against naive loops written here (a grouped, dilated cross-correlation on an explicitly
// zero-padded copy; a transposed convolution as a scatter), on every backend in
// lamina::test::backends; hand-computed small examples; compile-time shapes (PyTorch's output
// sizes), names, parameter counts and fans.
#include <catch2/catch.hpp>

#include "gradient_check.hpp"

#include <lamina/layers/activations.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/layers/conv_transpose2d.hpp>
#include <lamina/layers/flatten.hpp>
#include <lamina/network/sequential.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace la = lamina;
namespace lt = lamina::test;
using vec = std::vector<double>;
using glorot = la::init::glorot_uniform;

namespace {

// ---- helpers -------------------------------------------------------------------------------

template <class L, class In, class Backend>
void require_gradients(lt::gradient_check_options o = {}) {
    auto r = lt::check_layer_gradients<L, In, Backend>(o);
    INFO(L::name() << " on " << In::str() << ", batch " << o.batch << ", backend " << Backend::name << ": "
                   << r.describe());
    CHECK(r.ok());
    CHECK(r.checked > 0);
    CHECK(r.max_abs_dx > 1e-3);  // not vacuous
    CHECK(r.max_abs_dw > 1e-3);
}

double max_abs_diff(const vec& a, const vec& b) {
    if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        double d = std::abs(a[i] - b[i]);
        if (!(d <= m)) m = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
    }
    return m;
}

/// Forward (inference and training) of layer L on random x and params vs `naive(x, w, batch)`.
template <class L, class In, class Backend, class Naive>
void check_forward(Naive naive, std::size_t batch = 2) {
    using harness = lt::node_harness<L, In, Backend>;
    harness h(batch);
    la::random_stream s{99, 7};
    vec w = lt::uniform_vector(harness::parameter_count, s.child(1), -1, 1);
    vec x = lt::random_vector(batch * In::size, s.child(2));
    h.set_params(w);
    vec expected = naive(x, w, batch);
    INFO(L::name() << " on " << In::str() << ", backend " << Backend::name);
    CHECK(max_abs_diff(h.forward(x), expected) < 1e-12);
    CHECK(max_abs_diff(h.forward_train(x, 0), expected) < 1e-12);
}

// ---- naive reference computations, written independently of lamina's kernels --------------

/// Grouped, dilated cross-correlation on an explicitly zero-padded copy of the input x
/// [N][C][H][W]. w is [K][C/G][R][R] followed by K biases when `bias`. Filter k belongs to
/// group k / (K/G) and reads channels (k / (K/G)) * (C/G) + c; tap (a, b) of output (i, j)
/// reads padded cell (i*S + a*D, j*S + b*D).
vec naive_conv(const vec& x, const vec& w, std::size_t N, std::size_t C, std::size_t H, std::size_t W, std::size_t K,
               std::size_t R, std::size_t S, std::size_t P, std::size_t D, std::size_t G, bool bias) {
    const std::size_t Hp = H + 2 * P, Wp = W + 2 * P, span = D * (R - 1) + 1;
    const std::size_t OH = (Hp - span) / S + 1, OW = (Wp - span) / S + 1;
    const std::size_t CG = C / G, KG = K / G;
    vec y(N * K * OH * OW, 0.0);
    for (std::size_t n = 0; n < N; ++n) {
        std::vector<vec> padded(C, vec(Hp * Wp, 0.0));
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t i = 0; i < H; ++i)
                for (std::size_t j = 0; j < W; ++j) padded[c][(i + P) * Wp + j + P] = x[((n * C + c) * H + i) * W + j];
        for (std::size_t k = 0; k < K; ++k)
            for (std::size_t oi = 0; oi < OH; ++oi)
                for (std::size_t oj = 0; oj < OW; ++oj) {
                    double s = bias ? w[K * CG * R * R + k] : 0.0;
                    for (std::size_t c = 0; c < CG; ++c)
                        for (std::size_t a = 0; a < R; ++a)
                            for (std::size_t b = 0; b < R; ++b)
                                s += padded[k / KG * CG + c][(oi * S + a * D) * Wp + oj * S + b * D] *
                                     w[((k * CG + c) * R + a) * R + b];
                    y[((n * K + k) * OH + oi) * OW + oj] = s;
                }
    }
    return y;
}

/// Transposed convolution as a scatter: input cell (h, v) of channel ci adds
/// x * w[ci][co][a][b] to output cell (h*S + a - P, v*S + b - P) of channel co when that cell
/// lies inside the (Ho x Wo) output, Ho = (H - 1) S - 2P + R + OP. w is [C][K][R][R] followed
/// by K biases when `bias`.
vec naive_conv_transpose(const vec& x, const vec& w, std::size_t N, std::size_t C, std::size_t H, std::size_t W,
                         std::size_t K, std::size_t R, std::size_t S, std::size_t P, std::size_t OP, bool bias) {
    const long Ho = static_cast<long>((H - 1) * S + R + OP) - 2 * static_cast<long>(P);
    const long Wo = static_cast<long>((W - 1) * S + R + OP) - 2 * static_cast<long>(P);
    const std::size_t out_plane = static_cast<std::size_t>(Ho * Wo);
    vec y(N * K * out_plane, 0.0);
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t k = 0; k < K; ++k)
            for (std::size_t e = 0; e < out_plane; ++e) y[(n * K + k) * out_plane + e] = bias ? w[C * K * R * R + k] : 0.0;
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t ci = 0; ci < C; ++ci)
            for (std::size_t h = 0; h < H; ++h)
                for (std::size_t v = 0; v < W; ++v) {
                    const double xv = x[((n * C + ci) * H + h) * W + v];
                    for (std::size_t co = 0; co < K; ++co)
                        for (std::size_t a = 0; a < R; ++a)
                            for (std::size_t b = 0; b < R; ++b) {
                                const long oh = static_cast<long>(h * S + a) - static_cast<long>(P);
                                const long ow = static_cast<long>(v * S + b) - static_cast<long>(P);
                                if (oh < 0 || ow < 0 || oh >= Ho || ow >= Wo) continue;
                                y[(n * K + co) * out_plane + static_cast<std::size_t>(oh * Wo + ow)] +=
                                    xv * w[((ci * K + co) * R + a) * R + b];
                            }
                }
    return y;
}

// ---- per-configuration cases ---------------------------------------------------------------

/// conv2d<K, R, S, P, glorot, Bias, D, G> on (C, H, W): gradients and forward.
template <class Backend, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
          std::size_t P, std::size_t D, std::size_t G, bool Bias>
void conv_case(std::size_t batch = 2) {
    using L = la::conv2d<K, R, S, P, glorot, Bias, D, G>;
    using In = la::shape<C, H, W>;
    lt::gradient_check_options o;
    o.batch = batch;
    require_gradients<L, In, Backend>(o);
    check_forward<L, In, Backend>(
        [](const vec& x, const vec& w, std::size_t n) { return naive_conv(x, w, n, C, H, W, K, R, S, P, D, G, Bias); },
        batch);
}

/// depthwise_conv2d<R, S, P, M, glorot, Bias, D> on (C, H, W): the grouped naive conv with
/// G = C and K = C * M.
template <class Backend, std::size_t C, std::size_t H, std::size_t W, std::size_t R, std::size_t S, std::size_t P,
          std::size_t M, std::size_t D, bool Bias>
void depthwise_case(std::size_t batch = 2) {
    using L = la::depthwise_conv2d<R, S, P, M, glorot, Bias, D>;
    using In = la::shape<C, H, W>;
    lt::gradient_check_options o;
    o.batch = batch;
    require_gradients<L, In, Backend>(o);
    check_forward<L, In, Backend>(
        [](const vec& x, const vec& w, std::size_t n) {
            return naive_conv(x, w, n, C, H, W, C * M, R, S, P, D, C, Bias);
        },
        batch);
}

/// conv_transpose2d<K, R, S, P, OP, glorot, Bias> on (C, H, W): gradients and forward.
template <class Backend, std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
          std::size_t P, std::size_t OP, bool Bias>
void transpose_case(std::size_t batch = 2) {
    using L = la::conv_transpose2d<K, R, S, P, OP, glorot, Bias>;
    using In = la::shape<C, H, W>;
    lt::gradient_check_options o;
    o.batch = batch;
    require_gradients<L, In, Backend>(o);
    check_forward<L, In, Backend>(
        [](const vec& x, const vec& w, std::size_t n) {
            return naive_conv_transpose(x, w, n, C, H, W, K, R, S, P, OP, Bias);
        },
        batch);
}

}  // namespace

// ================================================================================================
// compile-time shapes, names, counts
// ================================================================================================

TEST_CASE("conv family: output shapes at compile time (PyTorch's sizes)", "[layers][conv_family][shape]") {
    // Conv2d(3, 8, 3, dilation=2): 10 - 2*(3-1) = 6; with padding 2 the size is kept.
    STATIC_REQUIRE(std::is_same_v<la::conv2d<8, 3, 1, 0, glorot, true, 2>::output_shape<la::shape<3, 10, 10>>,
                                  la::shape<8, 6, 6>>);
    STATIC_REQUIRE(std::is_same_v<la::conv2d<8, 3, 1, 2, glorot, true, 2>::output_shape<la::shape<3, 10, 12>>,
                                  la::shape<8, 10, 12>>);
    // Conv2d(16, 32, 3, stride=2, padding=1, dilation=3): floor((17 + 2 - 6 - 1) / 2) + 1 = 7
    STATIC_REQUIRE(std::is_same_v<la::conv2d<32, 3, 2, 1, glorot, true, 3, 4>::output_shape<la::shape<16, 17, 17>>,
                                  la::shape<32, 7, 7>>);
    // the autoencoder's encoder: Conv2d(k=3, s=2, p=1) halves 16 -> 8 -> 4
    STATIC_REQUIRE(std::is_same_v<la::conv2d<32, 3, 2, 1>::output_shape<la::shape<16, 16, 16>>, la::shape<32, 8, 8>>);
    // ConvTranspose2d(k=3, s=2, p=1, output_padding=1): (8-1)*2 - 2 + 3 + 1 = 16 (doubles)
    STATIC_REQUIRE(std::is_same_v<la::conv_transpose2d<16, 3, 2, 1, 1>::output_shape<la::shape<32, 8, 8>>,
                                  la::shape<16, 16, 16>>);
    STATIC_REQUIRE(std::is_same_v<la::conv_transpose2d<1, 3, 2, 1, 1>::output_shape<la::shape<8, 4, 7>>,
                                  la::shape<1, 8, 14>>);
    // without output padding: (8-1)*2 - 2 + 3 = 15
    STATIC_REQUIRE(std::is_same_v<la::conv_transpose2d<16, 3, 2, 1>::output_shape<la::shape<32, 8, 8>>,
                                  la::shape<16, 15, 15>>);
    // ConvTranspose2d(k=4, s=2, p=1): (8-1)*2 - 2 + 4 = 16; stride 1, k=3, no padding: 5 + 2 = 7
    STATIC_REQUIRE(std::is_same_v<la::conv_transpose2d<4, 4, 2, 1>::output_shape<la::shape<2, 8, 8>>,
                                  la::shape<4, 16, 16>>);
    STATIC_REQUIRE(std::is_same_v<la::conv_transpose2d<4, 3>::output_shape<la::shape<2, 5, 6>>, la::shape<4, 7, 8>>);
    // k=5, s=3, p=2, op=2: (4-1)*3 - 4 + 5 + 2 = 12
    STATIC_REQUIRE(std::is_same_v<la::conv_transpose2d<4, 5, 3, 2, 2>::output_shape<la::shape<2, 4, 4>>,
                                  la::shape<4, 12, 12>>);
    // depthwise, multiplier 2, stride 2, padding 1: channels 3 -> 6, (8 + 2 - 3) / 2 + 1 = 4
    STATIC_REQUIRE(std::is_same_v<la::depthwise_conv2d<3, 2, 1, 2>::output_shape<la::shape<3, 8, 8>>,
                                  la::shape<6, 4, 4>>);
    STATIC_REQUIRE(std::is_same_v<la::depthwise_conv2d<3, 1, 2, 1, glorot, true, 2>::output_shape<la::shape<5, 9, 7>>,
                                  la::shape<5, 9, 7>>);

    // the autoencoder round trip: 1x16x16 -> 8x8x8 -> 16x4x4 -> 8x8x8 -> 1x16x16
    using autoencoder = la::sequential<la::input<1, 16, 16>, la::conv2d<8, 3, 2, 1>, la::relu, la::conv2d<16, 3, 2, 1>,
                                       la::relu, la::conv_transpose2d<8, 3, 2, 1, 1>, la::relu,
                                       la::conv_transpose2d<1, 3, 2, 1, 1>>;
    STATIC_REQUIRE(std::is_same_v<autoencoder::output_shape, la::shape<1, 16, 16>>);

    // shape rules: channels must divide by the groups; the dilated kernel must fit
    using g4 = la::conv2d<8, 3, 1, 1, glorot, true, 1, 4>;
    STATIC_REQUIRE(g4::accepts<la::shape<8, 5, 5>>);
    STATIC_REQUIRE(!g4::accepts<la::shape<6, 5, 5>>);
    STATIC_REQUIRE(std::is_same_v<g4::expected_input<la::shape<6, 5, 5>>, la::channels_divisible_by<4>>);
    STATIC_REQUIRE(!g4::accepts<la::shape<8 * 5 * 5>>);
    using d3 = la::conv2d<4, 3, 1, 0, glorot, true, 3>;  // span 7
    STATIC_REQUIRE(d3::accepts<la::shape<1, 7, 7>>);
    STATIC_REQUIRE(!d3::accepts<la::shape<1, 6, 7>>);
    STATIC_REQUIRE(std::is_same_v<d3::expected_input<la::shape<1, 6, 7>>, la::spatial_at_least<7, 7>>);
    // the transposed conv needs a non-empty output: k=3, p=2 leaves (H-1) + 3 - 4 = H - 2 rows
    using t = la::conv_transpose2d<4, 3, 1, 2>;
    STATIC_REQUIRE(t::accepts<la::shape<2, 3, 3>>);
    STATIC_REQUIRE(!t::accepts<la::shape<2, 2, 3>>);
    STATIC_REQUIRE(std::is_same_v<t::expected_input<la::shape<2, 2, 3>>, la::spatial_at_least<3, 3>>);
    STATIC_REQUIRE(la::depthwise_conv2d<5>::accepts<la::shape<7, 5, 5>>);
    STATIC_REQUIRE(!la::depthwise_conv2d<5>::accepts<la::shape<7, 4, 5>>);
}

TEST_CASE("conv family: names, parameter counts, FLOPs and fans", "[layers][conv_family]") {
    CHECK(la::conv2d<32, 3, 1, 1, glorot, true, 2, 4>::name() == "conv2d<32,3x3,p1,d2,g4>");
    CHECK(la::conv2d<32, 3, 1, 0, glorot, true, 2, 4>::name() == "conv2d<32,3x3,d2,g4>");
    CHECK(la::conv2d<16, 3, 1, 1>::name() == "conv2d<16,3x3,p1>");  // unchanged
    CHECK(la::conv2d<16, 5, 2>::name() == "conv2d<16,5x5,s2>");
    CHECK(la::conv_transpose2d<16, 3, 2, 1, 1>::name() == "conv_transpose2d<16,3x3,s2,p1,op1>");
    CHECK(la::conv_transpose2d<4, 3>::name() == "conv_transpose2d<4,3x3>");
    CHECK(la::depthwise_conv2d<3, 2, 1, 2>::name() == "depthwise_conv2d<3x3,s2,p1,m2>");
    CHECK(la::depthwise_conv2d<3>::name() == "depthwise_conv2d<3x3>");

    {  // 8 channels, 4 groups: each of the 8 filters reads 2 channels x 9 taps
        using I = la::conv2d<8, 3, 1, 1, glorot, true, 1, 4>::impl<la::shape<8, 5, 5>, la::reference, double>;
        STATIC_REQUIRE(I::parameter_count == 8 * 2 * 9 + 8);
        CHECK(I::flops_per_sample == 2.0 * 8 * 2 * 9 * 25);
        auto specs = I{}.tensor_specs();
        REQUIRE(specs.size() == 2);
        CHECK(specs[0].count == 144);
        CHECK(specs[0].fan_in == 2 * 9);   // channels per group x taps
        CHECK(specs[0].fan_out == 2 * 9);  // filters per group x taps
        CHECK(specs[1].count == 8);
        CHECK(!specs[1].decay);
    }
    {  // depthwise, multiplier 2 on 3 channels: 6 filters of 1 x 3 x 3
        using I = la::depthwise_conv2d<3, 2, 1, 2>::impl<la::shape<3, 8, 8>, la::reference, double>;
        STATIC_REQUIRE(I::parameter_count == 6 * 9 + 6);
        CHECK(I::flops_per_sample == 2.0 * 6 * 9 * 16);
        auto specs = I{}.tensor_specs();
        CHECK(specs[0].fan_in == 9);
        CHECK(specs[0].fan_out == 2 * 9);
    }
    {  // transposed: weights [C_in = 3][C_out = 4][3][3]
        using I = la::conv_transpose2d<4, 3, 2, 1, 1, glorot, true>::impl<la::shape<3, 5, 5>, la::reference, double>;
        STATIC_REQUIRE(I::parameter_count == 3 * 4 * 9 + 4);
        CHECK(I::flops_per_sample == 2.0 * 3 * 4 * 9 * 25);
        auto specs = I{}.tensor_specs();
        REQUIRE(specs.size() == 2);
        CHECK(specs[0].fan_in == 3 * 9);
        CHECK(specs[0].fan_out == 4 * 9);
        CHECK(specs[1].count == 4);
        using N = la::conv_transpose2d<4, 3, 2, 1, 1, glorot, false>::impl<la::shape<3, 5, 5>, la::reference, double>;
        STATIC_REQUIRE(N::parameter_count == 3 * 4 * 9);
    }
}

TEST_CASE("conv family: the layers pass their compile-time shape to backends that take it", "[layers][conv_family]") {
    using grouped = la::conv2d<8, 3, 1, 1, glorot, true, 2, 4>::impl<la::shape<8, 9, 9>, la::host, float>;
    STATIC_REQUIRE(grouped::tagged);
    STATIC_REQUIRE(std::is_same_v<grouped::shape_tag, la::conv_shape<8, 9, 9, 8, 3, 3, 1, 1, 2, 4>>);
    STATIC_REQUIRE(grouped::shape_tag::p == 7);
    // the transposed conv's tag is its adjoint convolution: from its output back to its input
    using up = la::conv_transpose2d<16, 3, 2, 1, 1>::impl<la::shape<32, 8, 8>, la::host, float>;
    STATIC_REQUIRE(up::tagged);
    STATIC_REQUIRE(std::is_same_v<up::shape_tag, la::conv_shape<16, 16, 16, 32, 3, 3, 2, 1>>);
    STATIC_REQUIRE(up::shape_tag::plain);  // the plain conv paths serve it
    STATIC_REQUIRE(up::shape_tag::p == 8);
}

// ================================================================================================
// gradients and forward vs naive loops
// ================================================================================================

TEMPLATE_LIST_TEST_CASE("conv2d with dilation: gradients and forward", "[layers][conv_family][gradient]",
                        lt::backends) {
    using B = TestType;
    //          C  H  W  K  R  S  P  D  G  bias
    conv_case<B, 3, 7, 7, 4, 3, 1, 0, 2, 1, true>();
    conv_case<B, 2, 8, 6, 5, 3, 1, 2, 2, 1, false>();  // padding = dilation: size kept
    conv_case<B, 3, 9, 8, 4, 3, 2, 1, 2, 1, true>();   // stride 2
    conv_case<B, 2, 9, 9, 3, 2, 1, 1, 3, 1, true>();   // even kernel, dilation 3
}

TEMPLATE_LIST_TEST_CASE("conv2d with groups: gradients and forward", "[layers][conv_family][gradient]",
                        lt::backends) {
    using B = TestType;
    //          C  H  W  K  R  S  P  D  G  bias
    conv_case<B, 4, 6, 6, 6, 3, 1, 1, 1, 2, true>();
    conv_case<B, 4, 6, 5, 2, 3, 1, 0, 1, 2, false>();  // one filter per group
    conv_case<B, 8, 7, 7, 8, 3, 2, 1, 1, 4, true>();
    conv_case<B, 8, 6, 6, 4, 1, 1, 0, 1, 4, true>();   // 1x1 grouped (the pointwise route)
    conv_case<B, 4, 9, 9, 8, 3, 1, 2, 2, 4, false>();  // groups and dilation
    conv_case<B, 6, 5, 5, 6, 3, 1, 1, 1, 2, true>(5);  // more images than threads
    conv_case<B, 6, 5, 5, 6, 3, 1, 1, 1, 3, true>(1);  // one image
}

TEMPLATE_LIST_TEST_CASE("depthwise_conv2d: gradients and forward", "[layers][conv_family][gradient]", lt::backends) {
    using B = TestType;
    //              C  H  W  R  S  P  M  D  bias
    depthwise_case<B, 3, 6, 6, 3, 1, 1, 1, 1, true>();
    depthwise_case<B, 3, 7, 7, 3, 2, 1, 2, 1, true>();   // multiplier 2, stride 2
    depthwise_case<B, 4, 9, 8, 3, 1, 2, 1, 2, false>();  // dilation 2
    depthwise_case<B, 2, 7, 6, 5, 1, 2, 2, 1, false>();  // 5x5, multiplier 2
    depthwise_case<B, 5, 11, 20, 3, 1, 1, 1, 1, true>(1);  // rows longer than a vector
    depthwise_case<B, 3, 8, 9, 2, 3, 0, 3, 1, true>(3);  // even kernel, stride 3, multiplier 3
}

TEMPLATE_LIST_TEST_CASE("conv_transpose2d: gradients and forward", "[layers][conv_family][gradient]", lt::backends) {
    using B = TestType;
    //               C  H  W  K  R  S  P  OP bias
    transpose_case<B, 2, 5, 5, 3, 3, 1, 0, 0, true>();   // stride 1: a full convolution
    transpose_case<B, 3, 4, 4, 2, 3, 1, 1, 0, false>();  // stride 1, padding 1: size kept
    transpose_case<B, 3, 4, 5, 4, 3, 2, 1, 1, true>();   // the autoencoder's upsampling
    transpose_case<B, 3, 4, 4, 4, 3, 2, 1, 0, false>();  // stride 2 without output padding
    transpose_case<B, 2, 3, 3, 3, 4, 2, 1, 0, true>();   // 4x4 stride 2: exact doubling
    transpose_case<B, 2, 3, 4, 2, 5, 3, 2, 2, true>();   // stride 3, output padding 2
    transpose_case<B, 2, 4, 4, 3, 2, 2, 0, 1, true>();   // output padding beyond the scatter: bias only there
    transpose_case<B, 1, 3, 3, 5, 3, 2, 0, 0, true>(3);  // one input channel
    transpose_case<B, 40, 3, 3, 3, 3, 2, 1, 1, true>(1);  // many input channels, one image
}

TEMPLATE_LIST_TEST_CASE("conv family: chains through the new layers", "[layers][conv_family][gradient]",
                        lt::backends) {
    using B = TestType;
    lt::gradient_check_options o;
    o.batch = 2;
    o.input = lt::input_kind::away_from_zero;
    SECTION("the autoencoder: conv s2 -> relu -> conv s2 -> relu -> transposed s2 -> relu -> transposed s2") {
        auto r = lt::check_chain_gradients<la::shape<1, 8, 8>, B, la::conv2d<4, 3, 2, 1>, la::tanh_layer,
                                           la::conv2d<6, 3, 2, 1>, la::tanh_layer, la::conv_transpose2d<4, 3, 2, 1, 1>,
                                           la::tanh_layer, la::conv_transpose2d<1, 3, 2, 1, 1>>(o);
        INFO(r.describe());
        CHECK(r.ok());
        CHECK(r.max_abs_dx > 1e-3);
    }
    SECTION("depthwise separable: depthwise -> tanh -> 1x1 conv -> grouped dilated conv -> flatten") {
        auto r = lt::check_chain_gradients<la::shape<4, 7, 7>, B, la::depthwise_conv2d<3, 1, 1, 2>, la::tanh_layer,
                                           la::conv2d<6, 1>, la::conv2d<4, 3, 1, 2, glorot, true, 2, 2>, la::flatten>(o);
        INFO(r.describe());
        CHECK(r.ok());
        CHECK(r.max_abs_dx > 1e-3);
    }
}

// ================================================================================================
// hand-computed examples
// ================================================================================================

TEMPLATE_LIST_TEST_CASE("conv family: hand-computed examples", "[layers][conv_family]", lt::backends) {
    using B = TestType;
    SECTION("transposed 2x2 stride 2: each input cell stamps the kernel onto its own 2x2 block") {
        // x = [[1, 2], [3, 4]], w = [[1, 10], [100, 1000]], bias 0.5
        lt::node_harness<la::conv_transpose2d<1, 2, 2>, la::shape<1, 2, 2>, B> h(1);
        h.set_params({1, 10, 100, 1000, 0.5});
        const vec x{1, 2, 3, 4};
        const vec y{1.5,   10.5,   2.5,   20.5,    //
                    100.5, 1000.5, 200.5, 2000.5,  //
                    3.5,   30.5,   4.5,   40.5,    //
                    300.5, 3000.5, 400.5, 4000.5};
        CHECK(h.forward_train(x, 0) == y);
        CHECK(h.forward(x) == y);
        // dy = 1 on the top-left block only: dx[0][0] = 1 + 10 + 100 + 1000, the rest 0;
        // dw = x[0][0] * ones = 1 each; db = 4
        vec dy(16, 0.0);
        dy[0] = dy[1] = dy[4] = dy[5] = 1;
        CHECK(h.backward(dy) == vec{1111, 0, 0, 0});
        CHECK(h.param_grads() == vec{1, 1, 1, 1, 4});
    }
    SECTION("transposed 3x3 stride 1 padding 1: each input cell stamps the kernel centred on itself") {
        // y[i][j] = sum_{a,b} x[i + 1 - a][j + 1 - b] w[a][b]: a single 1 at the centre of a 3x3
        // map gives the kernel itself.
        lt::node_harness<la::conv_transpose2d<1, 3, 1, 1, 0, glorot, false>, la::shape<1, 3, 3>, B> h(1);
        const vec w{1, 2, 3, 4, 5, 6, 7, 8, 9};
        h.set_params(w);
        CHECK(h.forward_train({0, 0, 0, 0, 1, 0, 0, 0, 0}, 0) == w);
        // a 1 in the top-left corner: the kernel's bottom-right 2x2 part lands at the top left
        CHECK(h.forward_train({1, 0, 0, 0, 0, 0, 0, 0, 0}, 0) == vec{5, 6, 0, 8, 9, 0, 0, 0, 0});
    }
    SECTION("dilated 2x2 kernel, dilation 2: taps at (0,0), (0,2), (2,0), (2,2)") {
        // x = 1..9 on a 3x3 map, w = [[1, 10], [100, 1000]]: y = 1*1 + 3*10 + 7*100 + 9*1000 = 9731
        lt::node_harness<la::conv2d<1, 2, 1, 0, glorot, false, 2>, la::shape<1, 3, 3>, B> h(1);
        h.set_params({1, 10, 100, 1000});
        CHECK(h.forward_train({1, 2, 3, 4, 5, 6, 7, 8, 9}, 0) == vec{9731});
        // dy = 1: dx holds the weights at the tapped cells
        CHECK(h.backward({1}) == vec{1, 0, 10, 0, 0, 0, 100, 0, 1000});
        CHECK(h.param_grads() == vec{1, 3, 7, 9});
    }
    SECTION("two groups on 1x1 maps: each filter sees only its group's channels") {
        // C = 4, K = 2, 1x1 kernel: filter 0 reads channels 0, 1 and filter 1 channels 2, 3.
        // w = [[1, 2], [3, 4]] (each filter's two channel weights), x = [1, 10, 100, 1000]
        lt::node_harness<la::conv2d<2, 1, 1, 0, glorot, false, 1, 2>, la::shape<4, 1, 1>, B> h(1);
        h.set_params({1, 2, 3, 4});
        CHECK(h.forward_train({1, 10, 100, 1000}, 0) == vec{21, 4300});
        CHECK(h.backward({1, -1}) == vec{1, 2, -3, -4});
        CHECK(h.param_grads() == vec{1, 10, -100, -1000});
    }
    SECTION("depthwise, multiplier 2: filters 2c and 2c+1 read channel c") {
        // C = 2 on 1x2 maps, 1x1 kernel: y = [w0 x0, w1 x0, w2 x1, w3 x1] per position.
        lt::node_harness<la::depthwise_conv2d<1, 1, 0, 2, glorot, false>, la::shape<2, 1, 2>, B> h(1);
        h.set_params({1, 2, 3, 4});
        CHECK(h.forward_train({5, 6, 7, 8}, 0) == vec{5, 6, 10, 12, 21, 24, 28, 32});
    }
}
