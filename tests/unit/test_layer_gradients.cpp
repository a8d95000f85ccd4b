// Gradient checks of every layer (central differences against each layer's backward), and
// forward checks against naive loops written here and hand-computed small examples. Run on
// every backend in lamina::test::backends (reference; host once its header exists), T = double.
#include <catch2/catch.hpp>

#include "gradient_check.hpp"

#include <lamina/layers/activations.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/layers/dense.hpp>
#include <lamina/layers/dropout.hpp>
#include <lamina/layers/flatten.hpp>
#include <lamina/layers/pooling.hpp>
#include <lamina/layers/softmax.hpp>
#include <lamina/network/sequential.hpp>

#include <cmath>
#include <limits>
#include <ratio>
#include <string>
#include <vector>

namespace la = lamina;
namespace lt = lamina::test;
using vec = std::vector<double>;

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
}

template <class In, class Backend, class... Layers>
void require_chain_gradients(lt::gradient_check_options o = {}) {
    auto r = lt::check_chain_gradients<In, Backend, Layers...>(o);
    std::string names;
    ((names += Layers::name() + " "), ...);
    INFO("chain " << names << "on " << In::str() << ", backend " << Backend::name << ": " << r.describe());
    CHECK(r.ok());
    CHECK(r.max_abs_dx > 1e-3);
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
void check_forward(Naive naive, std::size_t batch = 2, lt::input_kind kind = lt::input_kind::gaussian) {
    using harness = lt::node_harness<L, In, Backend>;
    harness h(batch);
    la::random_stream s{99, 7};
    vec w = lt::uniform_vector(harness::parameter_count, s.child(1), -1, 1);
    vec x = lt::random_vector(batch * In::size, s.child(2), kind);
    h.set_params(w);
    vec expected = naive(x, w, batch);
    INFO(L::name() << " on " << In::str() << ", backend " << Backend::name);
    CHECK(max_abs_diff(h.forward(x), expected) < 1e-12);
    CHECK(max_abs_diff(h.forward_train(x, 0), expected) < 1e-12);
}

// ---- naive reference computations, written independently of lamina's kernels --------------

/// Cross-correlation on an explicitly zero-padded copy of the input. w is [K][C][R][R]
/// followed by K biases when `bias`.
vec naive_conv(const vec& x, const vec& w, std::size_t N, std::size_t C, std::size_t H, std::size_t W, std::size_t K,
               std::size_t R, std::size_t S, std::size_t P, bool bias) {
    const std::size_t Hp = H + 2 * P, Wp = W + 2 * P;
    const std::size_t OH = (Hp - R) / S + 1, OW = (Wp - R) / S + 1;
    vec y(N * K * OH * OW, 0.0);
    for (std::size_t n = 0; n < N; ++n) {
        std::vector<vec> padded(C, vec(Hp * Wp, 0.0));
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t i = 0; i < H; ++i)
                for (std::size_t j = 0; j < W; ++j) padded[c][(i + P) * Wp + j + P] = x[((n * C + c) * H + i) * W + j];
        for (std::size_t k = 0; k < K; ++k)
            for (std::size_t oi = 0; oi < OH; ++oi)
                for (std::size_t oj = 0; oj < OW; ++oj) {
                    double s = bias ? w[K * C * R * R + k] : 0.0;
                    for (std::size_t c = 0; c < C; ++c)
                        for (std::size_t a = 0; a < R; ++a)
                            for (std::size_t b = 0; b < R; ++b)
                                s += padded[c][(oi * S + a) * Wp + oj * S + b] * w[((k * C + c) * R + a) * R + b];
                    y[((n * K + k) * OH + oi) * OW + oj] = s;
                }
    }
    return y;
}

/// Pooling on an explicitly padded copy: max pads with -inf (never wins), avg pads with 0
/// and divides by the full window (count_include_pad).
vec naive_pool(const vec& x, std::size_t N, std::size_t C, std::size_t H, std::size_t W, std::size_t Win, std::size_t S,
               std::size_t P, bool is_max) {
    const std::size_t Hp = H + 2 * P, Wp = W + 2 * P;
    const std::size_t OH = (Hp - Win) / S + 1, OW = (Wp - Win) / S + 1;
    const double pad_value = is_max ? -std::numeric_limits<double>::infinity() : 0.0;
    vec y(N * C * OH * OW);
    for (std::size_t nc = 0; nc < N * C; ++nc) {
        vec padded(Hp * Wp, pad_value);
        for (std::size_t i = 0; i < H; ++i)
            for (std::size_t j = 0; j < W; ++j) padded[(i + P) * Wp + j + P] = x[nc * H * W + i * W + j];
        for (std::size_t oi = 0; oi < OH; ++oi)
            for (std::size_t oj = 0; oj < OW; ++oj) {
                double acc = is_max ? -std::numeric_limits<double>::infinity() : 0.0;
                for (std::size_t a = 0; a < Win; ++a)
                    for (std::size_t b = 0; b < Win; ++b) {
                        double v = padded[(oi * S + a) * Wp + oj * S + b];
                        acc = is_max ? std::max(acc, v) : acc + v;
                    }
                y[(nc * OH + oi) * OW + oj] = is_max ? acc : acc / static_cast<double>(Win * Win);
            }
    }
    return y;
}

// ---- per-configuration cases ---------------------------------------------------------------

template <class Backend, std::size_t C, std::size_t HW, std::size_t K, std::size_t R, std::size_t S, std::size_t P,
          bool Bias>
void conv_case() {
    using L = la::conv2d<K, R, S, P, la::init::glorot_uniform, Bias>;
    using In = la::shape<C, HW, HW>;
    lt::gradient_check_options o;
    o.batch = 2;
    require_gradients<L, In, Backend>(o);
    check_forward<L, In, Backend>(
        [](const vec& x, const vec& w, std::size_t n) { return naive_conv(x, w, n, C, HW, HW, K, R, S, P, Bias); });
}

template <class Backend, std::size_t C, std::size_t HW, std::size_t Win, std::size_t S, std::size_t P>
void max_pool_case() {
    using L = la::max_pool<Win, S, P>;
    using In = la::shape<C, HW, HW>;
    lt::gradient_check_options o;
    o.input = lt::input_kind::distinct;  // no ties: the max is differentiable
    o.batch = 2;
    require_gradients<L, In, Backend>(o);
    check_forward<L, In, Backend>(
        [](const vec& x, const vec&, std::size_t n) { return naive_pool(x, n, C, HW, HW, Win, S, P, true); }, 2,
        lt::input_kind::distinct);
}

template <class Backend, std::size_t C, std::size_t HW, std::size_t Win, std::size_t S, std::size_t P>
void avg_pool_case() {
    using L = la::avg_pool<Win, S, P>;
    using In = la::shape<C, HW, HW>;
    lt::gradient_check_options o;
    o.batch = 3;
    require_gradients<L, In, Backend>(o);
    check_forward<L, In, Backend>(
        [](const vec& x, const vec&, std::size_t n) { return naive_pool(x, n, C, HW, HW, Win, S, P, false); }, 3);
}

/// Elementwise activation: gradient check and forward vs the scalar formula `fn`.
template <class L, class Backend, class Fn>
void activation_case(Fn fn, lt::input_kind kind) {
    using In = la::shape<3, 5, 7>;  // 105 values per sample: not a multiple of any SIMD width
    lt::gradient_check_options o;
    o.batch = 3;
    o.input = kind;
    require_gradients<L, In, Backend>(o);
    // also a rank-1 shape
    require_gradients<L, la::shape<37>, Backend>(o);
    check_forward<L, In, Backend>(
        [&](const vec& x, const vec&, std::size_t) {
            vec y(x.size());
            for (std::size_t i = 0; i < x.size(); ++i) y[i] = fn(x[i]);
            return y;
        },
        3, kind);
}

}  // namespace

// ================================================================================================
// dense
// ================================================================================================

TEMPLATE_LIST_TEST_CASE("dense: gradients with and without bias", "[layers][dense][gradient]", lt::backends) {
    using B = TestType;
    lt::gradient_check_options o;
    o.batch = 3;
    require_gradients<la::dense<19>, la::shape<37>, B>(o);
    require_gradients<la::dense<19, la::init::he_normal, false>, la::shape<37>, B>(o);
    require_gradients<la::dense<1>, la::shape<5>, B>(o);
    require_gradients<la::dense<8>, la::shape<16>, B>(o);
    o.batch = 1;
    require_gradients<la::dense<5>, la::shape<3>, B>(o);
    // dense takes a flattened vector: y = x W^T + b with W [out][in]
    auto naive = [](std::size_t out, std::size_t in, bool bias) {
        return [=](const vec& x, const vec& w, std::size_t n) {
            vec y(n * out);
            for (std::size_t b = 0; b < n; ++b)
                for (std::size_t o2 = 0; o2 < out; ++o2) {
                    double s = bias ? w[out * in + o2] : 0.0;
                    for (std::size_t i = 0; i < in; ++i) s += x[b * in + i] * w[o2 * in + i];
                    y[b * out + o2] = s;
                }
            return y;
        };
    };
    check_forward<la::dense<19>, la::shape<37>, B>(naive(19, 37, true), 3);
    check_forward<la::dense<19, la::init::he_normal, false>, la::shape<37>, B>(naive(19, 37, false), 3);
}

TEMPLATE_LIST_TEST_CASE("dense: hand-computed forward and backward", "[layers][dense]", lt::backends) {
    using B = TestType;
    lt::node_harness<la::dense<2>, la::shape<3>, B> h(1);
    // W = [[1, 2, 3], [4, 5, 6]] (row = output), b = [0.5, -1], x = [1, 0, -1]
    // y0 = 1*1 + 2*0 + 3*(-1) + 0.5 = -1.5 ; y1 = 4*1 + 5*0 + 6*(-1) - 1 = -3
    h.set_params({1, 2, 3, 4, 5, 6, 0.5, -1});
    auto y = h.forward_train({1, 0, -1}, 0);
    CHECK(y == vec{-1.5, -3});
    // dy = [2, -1]: dW = dy^T x = [[2, 0, -2], [-1, 0, 1]], db = dy = [2, -1],
    // dx = dy W = [2*1 - 1*4, 2*2 - 1*5, 2*3 - 1*6] = [-2, -1, 0]
    auto dx = h.backward({2, -1});
    CHECK(dx == vec{-2, -1, 0});
    CHECK(h.param_grads() == vec{2, 0, -2, -1, 0, 1, 2, -1});
}

// ================================================================================================
// conv2d
// ================================================================================================

TEMPLATE_LIST_TEST_CASE("conv2d: gradients and forward over kernels, strides and paddings",
                        "[layers][conv2d][gradient]", lt::backends) {
    using B = TestType;
    //        C  HW  K  R  S  P  bias
    conv_case<B, 3, 6, 5, 1, 1, 0, true>();
    conv_case<B, 3, 7, 5, 1, 2, 0, true>();
    conv_case<B, 2, 5, 3, 1, 1, 1, true>();   // 1x1 kernel with padding: the border sees only the bias
    conv_case<B, 3, 7, 5, 3, 1, 1, true>();
    conv_case<B, 3, 7, 5, 3, 2, 1, true>();
    conv_case<B, 5, 6, 6, 3, 2, 0, false>();  // stride 2 leaves the last row/column unused
    conv_case<B, 3, 6, 5, 3, 1, 2, true>();   // padding 2 with a 3x3 kernel
    conv_case<B, 3, 7, 2, 5, 1, 2, true>();
    conv_case<B, 2, 8, 3, 5, 2, 2, true>();
    conv_case<B, 1, 5, 1, 5, 1, 0, true>();   // one output pixel
    conv_case<B, 7, 5, 6, 3, 1, 0, true>();
    conv_case<B, 3, 7, 5, 5, 2, 1, false>();
}

TEMPLATE_LIST_TEST_CASE("conv2d: hand-computed 1x3x3 input, 2x2 kernel", "[layers][conv2d]", lt::backends) {
    using B = TestType;
    // x = [[1, 2, 3],      w = [[1, 2],
    //      [4, 5, 6],           [3, 4]]
    //      [7, 8, 9]]
    const vec x{1, 2, 3, 4, 5, 6, 7, 8, 9};
    SECTION("stride 1, no padding, bias 1") {
        // y[p][q] = 1 + sum_{a,b} x[p+a][q+b] w[a][b]
        // y00 = 1 + 1*1 + 2*2 + 4*3 + 5*4 = 1 + 37 = 38
        // y01 = 1 + 2*1 + 3*2 + 5*3 + 6*4 = 1 + 47 = 48
        // y10 = 1 + 4*1 + 5*2 + 7*3 + 8*4 = 1 + 67 = 68
        // y11 = 1 + 5*1 + 6*2 + 8*3 + 9*4 = 1 + 77 = 78
        lt::node_harness<la::conv2d<1, 2>, la::shape<1, 3, 3>, B> h(1);
        h.set_params({1, 2, 3, 4, 1});
        CHECK(h.forward_train(x, 0) == vec{38, 48, 68, 78});
        CHECK(h.forward(x) == vec{38, 48, 68, 78});
        // dy = [1, 0, 0, -1]: dw[a][b] = x[a][b] - x[1+a][1+b] = [[1-5, 2-6], [4-8, 5-9]] = -4 each;
        // db = 1 - 1 = 0; dx = w placed at (0,0) minus w placed at (1,1):
        // dx = [[1, 2, 0], [3, 4-1, -2], [0, -3, -4]]
        auto dx = h.backward({1, 0, 0, -1});
        CHECK(dx == vec{1, 2, 0, 3, 3, -2, 0, -3, -4});
        CHECK(h.param_grads() == vec{-4, -4, -4, -4, 0});
    }
    SECTION("stride 2, padding 1, no bias") {
        // out extent (3 + 2 - 2) / 2 + 1 = 2; windows start at rows/cols -1 and 1:
        // y00: rows -1..0, cols -1..0 -> only x[0][0] w[1][1] = 1*4 = 4
        // y01: rows -1..0, cols  1..2 -> x[0][1] w[1][0] + x[0][2] w[1][1] = 2*3 + 3*4 = 18
        // y10: rows  1..2, cols -1..0 -> x[1][0] w[0][1] + x[2][0] w[1][1] = 4*2 + 7*4 = 36
        // y11: rows  1..2, cols  1..2 -> 5*1 + 6*2 + 8*3 + 9*4 = 77
        lt::node_harness<la::conv2d<1, 2, 2, 1, la::init::glorot_uniform, false>, la::shape<1, 3, 3>, B> h(1);
        h.set_params({1, 2, 3, 4});
        CHECK(h.forward_train(x, 0) == vec{4, 18, 36, 77});
        CHECK(h.forward(x) == vec{4, 18, 36, 77});
    }
    SECTION("two channels, two filters, batch 2") {
        // filter k applies w[k][c] = (k + 1) * (c == 0 ? 1 : -1) to a 1x1... no: a 2x2 kernel of
        // ones times that factor, so y[n][k] = sum(window of ch0) * (k+1) - sum(window of ch1) * (k+1).
        // Sample 0: ch0 = x, ch1 = all ones -> window sums ch0 = 12, 16, 24, 28; ch1 = 4.
        // Sample 1: ch0 = 0, ch1 = x -> ch1 sums 12, 16, 24, 28.
        lt::node_harness<la::conv2d<2, 2, 1, 0, la::init::glorot_uniform, false>, la::shape<2, 3, 3>, B> h(2);
        vec w(16);
        for (std::size_t k = 0; k < 2; ++k)
            for (std::size_t c = 0; c < 2; ++c)
                for (std::size_t i = 0; i < 4; ++i) w[(k * 2 + c) * 4 + i] = double(k + 1) * (c == 0 ? 1.0 : -1.0);
        h.set_params(w);
        vec in(36, 0.0);
        for (std::size_t i = 0; i < 9; ++i) {
            in[i] = x[i];            // n0 c0
            in[9 + i] = 1.0;         // n0 c1
            in[27 + i] = x[i];       // n1 c1
        }
        // n0 k0: (12-4, 16-4, 24-4, 28-4) = (8, 12, 20, 24); n0 k1: twice that.
        // n1 k0: -(12, 16, 24, 28); n1 k1: twice that.
        CHECK(h.forward_train(in, 0) == vec{8, 12, 20, 24, 16, 24, 40, 48, -12, -16, -24, -28, -24, -32, -48, -56});
    }
}

// ================================================================================================
// pooling
// ================================================================================================

TEMPLATE_LIST_TEST_CASE("max_pool: gradients and forward", "[layers][pool][gradient]", lt::backends) {
    using B = TestType;
    //            C  HW Win S  P
    max_pool_case<B, 3, 6, 2, 2, 0>();
    max_pool_case<B, 2, 7, 2, 2, 0>();  // odd extent: last row/column dropped
    max_pool_case<B, 3, 7, 3, 2, 1>();
    max_pool_case<B, 2, 6, 3, 1, 1>();  // overlapping windows: dx accumulates
    max_pool_case<B, 2, 5, 2, 1, 1>();
    max_pool_case<B, 2, 6, 3, 3, 0>();
    max_pool_case<B, 3, 6, 2, 1, 0>();
    max_pool_case<B, 5, 8, 2, 2, 1>();
}

TEMPLATE_LIST_TEST_CASE("avg_pool: gradients and forward", "[layers][pool][gradient]", lt::backends) {
    using B = TestType;
    //            C  HW Win S  P
    avg_pool_case<B, 3, 6, 2, 2, 0>();
    avg_pool_case<B, 2, 7, 3, 2, 1>();
    avg_pool_case<B, 2, 5, 2, 1, 1>();
    avg_pool_case<B, 2, 6, 3, 1, 1>();
    avg_pool_case<B, 1, 7, 3, 3, 0>();
    avg_pool_case<B, 5, 7, 2, 2, 0>();
}

TEMPLATE_LIST_TEST_CASE("max_pool: hand-computed argmax routing", "[layers][pool]", lt::backends) {
    using B = TestType;
    SECTION("2x2 windows, stride 2") {
        // x = [[1, 5, 2, 0  ],   windows: TL {1,5,3,4} -> 5 at (0,1)   TR {2,0,8,6} -> 8 at (1,2)
        //      [3, 4, 8, 6  ],            BL {9,7,2,0} -> 9 at (2,0)   BR {1,1.5,3,2.5} -> 3 at (3,2)
        //      [9, 7, 1, 1.5],
        //      [2, 0, 3, 2.5]]
        lt::node_harness<la::max_pool<2>, la::shape<1, 4, 4>, B> h(1);
        const vec x{1, 5, 2, 0, 3, 4, 8, 6, 9, 7, 1, 1.5, 2, 0, 3, 2.5};
        CHECK(h.forward_train(x, 0) == vec{5, 8, 9, 3});
        CHECK(h.forward(x) == vec{5, 8, 9, 3});
        // dy = (10, 20, 30, 40) goes to (0,1), (1,2), (2,0), (3,2); everything else 0
        auto dx = h.backward({10, 20, 30, 40});
        CHECK(dx == vec{0, 10, 0, 0, 0, 0, 20, 0, 30, 0, 0, 0, 0, 0, 40, 0});
    }
    SECTION("overlapping windows pick the same cell: gradients add up") {
        // x = [[1, 2, 3], [4, 9, 5], [6, 7, 8]], window 2 stride 1: all four windows hold the 9.
        lt::node_harness<la::max_pool<2, 1>, la::shape<1, 3, 3>, B> h(1);
        CHECK(h.forward_train({1, 2, 3, 4, 9, 5, 6, 7, 8}, 0) == vec{9, 9, 9, 9});
        CHECK(h.backward({1, 2, 3, 4}) == vec{0, 0, 0, 0, 10, 0, 0, 0, 0});
    }
    SECTION("padding never wins, even over negative inputs") {
        // x = [[-1, -2], [-3, -4]], window 2, stride 2, padding 1: out extent (2+2-2)/2+1 = 2 and
        // each window holds exactly one real cell, so y = x (not the padding's 0).
        lt::node_harness<la::max_pool<2, 2, 1>, la::shape<1, 2, 2>, B> h(1);
        CHECK(h.forward_train({-1, -2, -3, -4}, 0) == vec{-1, -2, -3, -4});
        CHECK(h.forward({-1, -2, -3, -4}) == vec{-1, -2, -3, -4});
        CHECK(h.backward({1, 2, 3, 4}) == vec{1, 2, 3, 4});
    }
    SECTION("window 3, stride 2, padding 1, all negative") {
        // x (3x3) = -[[1, 2, 3], [4, 5, 6], [7, 8, 9]]; out extent (3+2-3)/2+1 = 2;
        // windows rows/cols {-1,0,1} and {1,2,3}: y00 = max{-1,-2,-4,-5} = -1 at (0,0),
        // y01 = max{-2,-3,-5,-6} = -2 at (0,1), y10 = max{-4,-5,-7,-8} = -4 at (1,0), y11 = -5 at (1,1)
        lt::node_harness<la::max_pool<3, 2, 1>, la::shape<1, 3, 3>, B> h(1);
        CHECK(h.forward_train({-1, -2, -3, -4, -5, -6, -7, -8, -9}, 0) == vec{-1, -2, -4, -5});
        CHECK(h.backward({1, 2, 3, 4}) == vec{1, 2, 0, 3, 4, 0, 0, 0, 0});
    }
}

TEMPLATE_LIST_TEST_CASE("avg_pool: hand-computed, padding counts as zero", "[layers][pool]", lt::backends) {
    using B = TestType;
    // x = [[1, 2], [3, 4]], window 2, stride 2, padding 1: each window holds one real cell and
    // three padded ones; count_include_pad divides by 4: y = (0.25, 0.5, 0.75, 1).
    lt::node_harness<la::avg_pool<2, 2, 1>, la::shape<1, 2, 2>, B> h(1);
    CHECK(h.forward_train({1, 2, 3, 4}, 0) == vec{0.25, 0.5, 0.75, 1});
    CHECK(h.backward({4, 8, 12, 16}) == vec{1, 2, 3, 4});
    // window 2, stride 1, no padding on 3x3 x = 1..9: y = (1+2+4+5, 2+3+5+6, 4+5+7+8, 5+6+8+9)/4
    lt::node_harness<la::avg_pool<2, 1>, la::shape<1, 3, 3>, B> h2(1);
    CHECK(h2.forward_train({1, 2, 3, 4, 5, 6, 7, 8, 9}, 0) == vec{3, 4, 6, 7});
    // dy = 4 everywhere: dx = number of windows covering each cell = [[1,2,1],[2,4,2],[1,2,1]]
    CHECK(h2.backward({4, 4, 4, 4}) == vec{1, 2, 1, 2, 4, 2, 1, 2, 1});
}

// ================================================================================================
// flatten, activations, softmax
// ================================================================================================

TEMPLATE_LIST_TEST_CASE("flatten: gradients and identity forward", "[layers][flatten][gradient]", lt::backends) {
    using B = TestType;
    require_gradients<la::flatten, la::shape<3, 4, 5>, B>();
    check_forward<la::flatten, la::shape<3, 4, 5>, B>([](const vec& x, const vec&, std::size_t) { return x; });
    static_assert(std::is_same_v<la::flatten::output_shape<la::shape<3, 4, 5>>, la::shape<60>>);
}

TEMPLATE_LIST_TEST_CASE("activations: gradients and forward formulas", "[layers][activation][gradient]",
                        lt::backends) {
    using B = TestType;
    using kind = lt::input_kind;
    SECTION("relu") {
        activation_case<la::relu, B>([](double x) { return x > 0 ? x : 0.0; }, kind::away_from_zero);
    }
    SECTION("leaky_relu (0.01)") {
        activation_case<la::leaky_relu, B>([](double x) { return x > 0 ? x : 0.01 * x; }, kind::away_from_zero);
    }
    SECTION("leaky_relu (slope 1/5)") {
        activation_case<la::leaky_relu_slope<std::ratio<1, 5>>, B>([](double x) { return x > 0 ? x : 0.2 * x; },
                                                                  kind::away_from_zero);
    }
    SECTION("sigmoid") {
        activation_case<la::sigmoid, B>([](double x) { return 1.0 / (1.0 + std::exp(-x)); }, kind::gaussian);
    }
    SECTION("tanh") {
        activation_case<la::tanh_layer, B>([](double x) { return std::tanh(x); }, kind::gaussian);
    }
    SECTION("gelu (erf form)") {
        activation_case<la::gelu, B>([](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); },
                                     kind::gaussian);
    }
}

TEMPLATE_LIST_TEST_CASE("activations: hand-computed values", "[layers][activation]", lt::backends) {
    using B = TestType;
    const vec x{-2, -0.5, 0.5, 3};
    auto run = [&](auto layer_tag) {
        using L = decltype(layer_tag);
        lt::node_harness<L, la::shape<4>, B> h(1);
        return h.forward(x);
    };
    CHECK(run(la::relu{}) == vec{0, 0, 0.5, 3});
    auto lr = run(la::leaky_relu{});
    CHECK(lr[0] == Approx(-0.02).epsilon(1e-14));
    CHECK(lr[1] == Approx(-0.005).epsilon(1e-14));
    CHECK(lr[3] == 3.0);
    // sigmoid(0.5) = 0.6224593312018546, tanh(-0.5) = -0.46211715726000974,
    // gelu(3) = 1.5 (1 + erf(3/sqrt2)) = 1.5 * 1.9973002039367398 = 2.9959503059051097,
    // gelu(-0.5) = -0.25 (1 + erf(-0.35355)) = -0.25 * 0.6170750774519738 = -0.15426876936299345
    CHECK(run(la::sigmoid{})[2] == Approx(0.6224593312018546).epsilon(1e-13));
    CHECK(run(la::tanh_layer{})[1] == Approx(-0.46211715726000974).epsilon(1e-13));
    auto g = run(la::gelu{});
    CHECK(g[3] == Approx(2.9959503059051097).epsilon(1e-13));
    CHECK(g[1] == Approx(-0.15426876936299345).epsilon(1e-12));
}

TEMPLATE_LIST_TEST_CASE("softmax: gradients and forward", "[layers][softmax][gradient]", lt::backends) {
    using B = TestType;
    lt::gradient_check_options o;
    o.batch = 3;
    require_gradients<la::softmax, la::shape<10>, B>(o);
    require_gradients<la::softmax, la::shape<17>, B>(o);
    auto naive = [](const vec& x, const vec&, std::size_t n) {
        const std::size_t cols = x.size() / n;
        vec y(x.size());
        for (std::size_t r = 0; r < n; ++r) {
            double z = 0;
            for (std::size_t c = 0; c < cols; ++c) z += std::exp(x[r * cols + c]);
            for (std::size_t c = 0; c < cols; ++c) y[r * cols + c] = std::exp(x[r * cols + c]) / z;
        }
        return y;
    };
    check_forward<la::softmax, la::shape<17>, B>(naive, 3);
    // (1, 2, 3): e^k / (e + e^2 + e^3) = (0.09003057317038046, 0.24472847105479767, 0.6652409557748219)
    lt::node_harness<la::softmax, la::shape<3>, B> h(2);
    // large logits must not overflow: (1001, 1002, 1003) gives the same probabilities
    auto y = h.forward({1, 2, 3, 1001, 1002, 1003});
    const vec p{0.09003057317038046, 0.24472847105479767, 0.6652409557748219};
    for (std::size_t i = 0; i < 6; ++i) CHECK(y[i] == Approx(p[i % 3]).epsilon(1e-13));
}

// ================================================================================================
// dropout
// ================================================================================================

TEMPLATE_LIST_TEST_CASE("dropout: gradients, mask statistics, inference identity", "[layers][dropout][gradient]",
                        lt::backends) {
    using B = TestType;
    using half = la::dropout<std::ratio<1, 2>>;
    SECTION("gradient with a fixed step (same mask in every evaluation)") {
        lt::gradient_check_options o;
        o.batch = 3;
        o.inference_matches_train = false;
        require_gradients<half, la::shape<4, 5, 5>, B>(o);
        o.step = 12345;
        require_gradients<la::dropout_p<20>, la::shape<41>, B>(o);
    }
    SECTION("mask statistics, scaling and the documented keep rule") {
        constexpr std::size_t n = 4 * 50 * 50, batch = 2;
        lt::node_harness<half, la::shape<4, 50, 50>, B> h(batch, 2024);
        // the model keys each dropout layer's stream by its seed and position (network/model.hpp)
        const la::random_stream stream = la::random_stream{2024, 0}.child(0xD0D0D0D0ull).child(0);
        vec x = lt::random_vector(n * batch, {5, 5}, lt::input_kind::away_from_zero);
        // inference is the identity
        CHECK(h.forward(x) == x);
        auto y = h.forward_train(x, 3);
        std::size_t kept = 0, rule_mismatch = 0, bad_value = 0;
        const la::random_stream masks = stream.child(3);  // the layer keys its mask by the step
        for (std::size_t i = 0; i < n * batch; ++i) {
            bool k = y[i] != 0.0;
            kept += k;
            if (k && y[i] != 2.0 * x[i]) ++bad_value;  // inverted dropout: kept values scaled by 1/(1-p)
            // documented rule (reference backend): element i is kept iff stream.uniform(i) >= p
            if (k != (masks.uniform(i) >= 0.5f)) ++rule_mismatch;
        }
        double frac = double(kept) / double(n * batch);
        // 20000 Bernoulli(0.5): sd of the fraction 0.0035; allow ~6 sd
        CHECK(frac == Approx(0.5).margin(0.02));
        CHECK(bad_value == 0);
        CHECK(rule_mismatch == 0);
        // backward multiplies by the same mask
        vec dy(n * batch, 1.0);
        auto dx = h.backward(dy);
        std::size_t dx_mismatch = 0;
        for (std::size_t i = 0; i < n * batch; ++i) dx_mismatch += dx[i] != (y[i] != 0.0 ? 2.0 : 0.0);
        CHECK(dx_mismatch == 0);
        // the same step gives the same mask, another step another one
        CHECK(h.forward_train(x, 3) == y);
        auto y4 = h.forward_train(x, 4);
        std::size_t differ = 0;
        for (std::size_t i = 0; i < n * batch; ++i) differ += (y4[i] != 0.0) != (y[i] != 0.0);
        CHECK(differ > n * batch / 4);  // independent masks differ in about half the places
    }
    SECTION("p = 0.2 keeps 80% and scales by 1.25") {
        constexpr std::size_t n = 10000;
        lt::node_harness<la::dropout_p<20>, la::shape<n>, B> h(1);
        vec x(n, 1.0);
        auto y = h.forward_train(x, 0);
        std::size_t kept = 0, bad = 0;
        for (double v : y) {
            kept += v != 0.0;
            bad += v != 0.0 && v != 1.25;
        }
        CHECK(double(kept) / n == Approx(0.8).margin(0.025));  // sd 0.004
        CHECK(bad == 0);
    }
}

// ================================================================================================
// whole chains: the wiring of the model (planned, shared activation and gradient buffers)
// ================================================================================================

TEMPLATE_LIST_TEST_CASE("chains: gradients through whole networks", "[network][chain][gradient]",
                        lt::backends) {
    using B = TestType;
    lt::gradient_check_options o;
    o.batch = 2;
    o.max_entries = 400;
    SECTION("conv -> relu -> max_pool -> flatten -> dense (5 layers)") {
        o.seed = 3;
        require_chain_gradients<la::shape<3, 6, 6>, B, la::conv2d<4, 3, 1, 1>, la::relu, la::max_pool<2>, la::flatten,
                                la::dense<5>>(o);
    }
    SECTION("conv -> tanh -> avg_pool -> conv -> sigmoid -> flatten (6 layers)") {
        require_chain_gradients<la::shape<2, 7, 7>, B, la::conv2d<3, 3, 2, 1>, la::tanh_layer, la::avg_pool<2, 1>,
                                la::conv2d<5, 2>, la::sigmoid, la::flatten>(o);
    }
    SECTION("dense -> gelu -> dropout -> dense -> softmax (dropout mask fixed by the step)") {
        o.inference_matches_train = false;
        o.batch = 3;
        require_chain_gradients<la::shape<9>, B, la::dense<11>, la::gelu, la::dropout<>, la::dense<4>, la::softmax>(o);
    }
    SECTION("two layers") {
        require_chain_gradients<la::shape<6>, B, la::dense<4>, la::dense<3, la::init::he_uniform, false>>(o);
    }
}

TEMPLATE_LIST_TEST_CASE("chains: dense + activation fusion keeps forward, inference and gradients",
                        "[network][chain][gradient][fusion]", lt::backends) {
    using B = TestType;
    lt::gradient_check_options o;
    o.batch = 3;
    o.max_entries = 400;
    // The leaves a network runs, by name: "dense<6>+relu" is a fused leaf.
    auto leaves = [](const auto& model) {
        std::string s;
        for (const auto& l : model.graph().leaves()) s += l.name + " ";
        return s;
    };
    SECTION("every fusable activation, the last one absorbed into the final dense") {
        // dense+relu, dense+sigmoid, dense+tanh, dense+leaky_relu: four fused pairs
        using net = la::sequential<la::input<7>, la::dense<6>, la::relu, la::dense<5>, la::sigmoid, la::dense<6>,
                                   la::tanh_layer, la::dense<4>, la::leaky_relu>;
        typename net::template model<B, double> m;
#if !defined(LAMINA_NO_LAYER_FUSION)
        CHECK(leaves(m) == "dense<6>+relu dense<5>+sigmoid dense<6>+tanh dense<4>+leaky_relu<0.0100> ");
#endif
        require_chain_gradients<la::shape<7>, B, la::dense<6>, la::relu, la::dense<5>, la::sigmoid, la::dense<6>,
                                la::tanh_layer, la::dense<4>, la::leaky_relu>(o);
    }
    SECTION("fused and unfused neighbours: dense dense+relu gelu dense") {
        using net = la::sequential<la::input<5>, la::dense<6>, la::dense<7>, la::relu, la::gelu, la::dense<3>>;
        typename net::template model<B, double> m;
#if !defined(LAMINA_NO_LAYER_FUSION)
        CHECK(leaves(m) == "dense<6> dense<7>+relu gelu dense<3> ");
#endif
        require_chain_gradients<la::shape<5>, B, la::dense<6>, la::dense<7>, la::relu, la::gelu, la::dense<3>>(o);
    }
    SECTION("GELU and a negative leaky slope are never fused (their derivative needs x)") {
        using net = la::sequential<la::input<5>, la::dense<6>, la::gelu, la::dense<4>,
                                   la::leaky_relu_slope<std::ratio<-1, 2>>>;
        typename net::template model<B, double> m;
        CHECK(leaves(m) == "dense<6> gelu dense<4> leaky_relu<-0.500> ");
        require_chain_gradients<la::shape<5>, B, la::dense<6>, la::gelu, la::dense<4>,
                                la::leaky_relu_slope<std::ratio<-1, 2>>>(o);
    }
}
