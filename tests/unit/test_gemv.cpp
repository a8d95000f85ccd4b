// The host backend's GEMV path (backends/host/gemm.hpp: gemv_bt, taken by gemm and
// gemm_bias_act for 1..4 rows of A with B transposed, i.e. a dense layer's forward at batch
// 1..4) against the reference backend: odd N and K (vector tails), K below one vector, strided
// operands, alpha/beta, bias and every fused activation, float and double, 1 and 2 threads
// with shapes large enough for the threaded split. Also the properties the path promises:
// bitwise the same at every thread count, one sample's output independent of the batch it is
// computed in (1..4 rows and the small path agree), C not read when beta == 0, and a dense
// network's batch-1 predict on the host against the reference backend.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <lamina/lamina.hpp>

using namespace lamina;

namespace {

template <class T>
std::vector<T> random_vec(std::size_t n, std::uint64_t seed) {
    random_stream s{seed, 17};
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(-1.0 + 2.0 * s.uniform_double(i));
    return v;
}

// |a - b| <= rel * max(|a|, |b|) + abs * scale, scale = the largest pre-activation magnitude.
template <class T>
void check_close(const std::vector<T>& got, const std::vector<T>& ref, const std::string& what, double scale) {
    const double rel = std::is_same<T, float>::value ? 2e-5 : 1e-12;
    const double abs = std::is_same<T, float>::value ? 2e-6 : 1e-13;
    REQUIRE(got.size() == ref.size());
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const double a = got[i], b = ref[i];
        const bool same_nan = std::isnan(a) && std::isnan(b);
        if (!same_nan && !(std::abs(a - b) <= rel * std::max(std::abs(a), std::abs(b)) + abs * scale) && bad++ == 0)
            first = i;
    }
    INFO(what << ": " << bad << " of " << ref.size() << " differ; first at " << first << ": host "
              << (bad ? got[first] : T(0)) << " reference " << (bad ? ref[first] : T(0)));
    CHECK(bad == 0);
}

std::vector<host::context>& contexts() {
    static std::vector<host::context> c{host::context(threads{1}), host::context(threads{2})};
    return c;
}

const activation all_activations[] = {{activation_kind::identity, 0.0}, {activation_kind::relu, 0.0},
                                      {activation_kind::sigmoid, 0.0},  {activation_kind::tanh, 0.0},
                                      {activation_kind::gelu, 0.0},     {activation_kind::leaky_relu, 0.01}};

struct gemv_case {
    std::size_t n, k;
};
// N: below, at and past the 8-row blocks (tails of 4 and 1 rows); K: below one vector, odd
// (vector tails), exact multiples; the last three reach the threaded split (>= 64K
// multiply-adds at M = 1).
const gemv_case gemv_cases[] = {{1, 1}, {3, 5}, {7, 3}, {10, 84}, {13, 17}, {33, 31},
                                {120, 256}, {301, 257}, {512, 784}, {67, 1031}};

}  // namespace

TEMPLATE_TEST_CASE("gemv path (M = 1..4, B transposed) matches the reference", "[host][gemm][gemv]", float, double) {
    using T = TestType;
    reference::context rctx;
    std::uint64_t seed = 100;
    for (const auto& d : gemv_cases)
        for (std::size_t m = 1; m <= 4; ++m)
            for (const activation& act : all_activations)
                for (int variant = 0; variant < 3; ++variant) {
                    // 0: dense (bias, alpha 1, beta 0, packed strides); 1: no bias, strided
                    // operands; 2: alpha -0.75, beta 0.5 (C read), bias, strided.
                    const bool strided = variant != 0, with_bias = variant != 1;
                    const T alpha = variant == 2 ? T(-0.75) : T(1), beta = variant == 2 ? T(0.5) : T(0);
                    const std::size_t lda = d.k + (strided ? 3 : 0), ldb = d.k + (strided ? 5 : 0),
                                      ldc = d.n + (strided ? 2 : 0);
                    const auto A = random_vec<T>(m * lda, ++seed), B = random_vec<T>(d.n * ldb, ++seed),
                               bias = random_vec<T>(d.n, ++seed);
                    auto Cin = random_vec<T>(m * ldc, ++seed);
                    if (beta == T(0))  // beta == 0 must not read C (NaN stays out); padding stays
                        for (std::size_t i = 0; i < m; ++i)
                            for (std::size_t j = 0; j < d.n; ++j) Cin[i * ldc + j] = std::numeric_limits<T>::quiet_NaN();
                    const T* bp = with_bias ? bias.data() : nullptr;
                    std::vector<T> ref = Cin, lin = Cin;
                    reference::gemm_bias_act(rctx, transpose::no, transpose::yes, m, d.n, d.k, alpha, A.data(), lda,
                                             B.data(), ldb, beta, ref.data(), ldc, bp, act);
                    reference::gemm_bias_act(rctx, transpose::no, transpose::yes, m, d.n, d.k, alpha, A.data(), lda,
                                             B.data(), ldb, beta, lin.data(), ldc, bp, activation{});
                    double scale = 0;
                    for (T v : lin)
                        if (!std::isnan(v)) scale = std::max(scale, std::abs(static_cast<double>(v)));
                    std::vector<T> first;
                    for (auto& ctx : contexts()) {
                        std::vector<T> got = Cin;
                        host::gemm_bias_act(ctx, transpose::no, transpose::yes, m, d.n, d.k, alpha, A.data(), lda,
                                            B.data(), ldb, beta, got.data(), ldc, bp, act);
                        const std::string what = "M=" + std::to_string(m) + " N=" + std::to_string(d.n) +
                                                 " K=" + std::to_string(d.k) + " act=" + to_string(act.kind) +
                                                 " variant=" + std::to_string(variant) +
                                                 " threads=" + std::to_string(ctx.thread_count());
                        check_close(got, ref, what, scale);
                        // every output in one fixed order: bitwise the same at 1 and 2 threads
                        if (first.empty()) first = got;
                        else {
                            INFO(what);
                            CHECK(std::equal(got.begin(), got.end(), first.begin(), [](T a, T b) {
                                return a == b || (std::isnan(a) && std::isnan(b));
                            }));
                        }
                    }
                }
}

TEMPLATE_TEST_CASE("gemv path: a row's output does not depend on the rows computed with it", "[host][gemm][gemv]",
                   float, double) {
    using T = TestType;
    for (const auto& d : gemv_cases) {
        const std::size_t rows = 4;
        const auto A = random_vec<T>(rows * d.k, 7 + d.n), B = random_vec<T>(d.n * d.k, 8 + d.k),
                   bias = random_vec<T>(d.n, 9);
        for (auto& ctx : contexts()) {
            std::vector<T> all(rows * d.n);
            host::gemm_bias_act(ctx, transpose::no, transpose::yes, rows, d.n, d.k, T(1), A.data(), d.k, B.data(), d.k,
                                T(0), all.data(), d.n, bias.data(), activation{activation_kind::tanh, 0.0});
            for (std::size_t m = 1; m <= rows; ++m)
                for (std::size_t r0 = 0; r0 + m <= rows; ++r0) {
                    std::vector<T> part(m * d.n);
                    host::gemm_bias_act(ctx, transpose::no, transpose::yes, m, d.n, d.k, T(1), A.data() + r0 * d.k, d.k,
                                        B.data(), d.k, T(0), part.data(), d.n, bias.data(),
                                        activation{activation_kind::tanh, 0.0});
                    INFO("N=" << d.n << " K=" << d.k << " rows " << r0 << ".." << r0 + m - 1 << " threads "
                              << ctx.thread_count());
                    CHECK(std::equal(part.begin(), part.end(), all.begin() + static_cast<std::ptrdiff_t>(r0 * d.n)));
                }
        }
    }
}

TEST_CASE("gemv path: plain gemm (no epilogue) is the same computation", "[host][gemm][gemv]") {
    const std::size_t M = 3, N = 301, K = 257;
    const auto A = random_vec<float>(M * K, 21), B = random_vec<float>(N * K, 22);
    for (auto& ctx : contexts()) {
        std::vector<float> c1(M * N), c2(M * N);
        host::gemm(ctx, transpose::no, transpose::yes, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, c1.data(), N);
        host::gemm_bias_act(ctx, transpose::no, transpose::yes, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f,
                            c2.data(), N, static_cast<const float*>(nullptr), activation{});
        CHECK(c1 == c2);
    }
}

TEST_CASE("batch-1 predict of a dense network: host (GEMV path) against reference", "[host][gemv][network]") {
    // Odd widths, every fused activation kind, the widest layer on the threaded split.
    namespace lm = lamina;  // lm::tanh, not ::tanh
    using net = lm::sequential<lm::input<301>, lm::dense<257>, lm::relu, lm::dense<131>, lm::gelu, lm::dense<67>,
                               lm::sigmoid, lm::dense<33>, lm::tanh, lm::dense<17>, lm::leaky_relu, lm::dense<5>>;
    const net::model<host> h1{seed{3}, threads{1}}, h2{seed{3}, threads{2}};
    const net::model<reference> r{seed{3}};
    REQUIRE(h1.get_parameters() == r.get_parameters());
    const std::size_t rows = 4;
    const auto x = random_vec<float>(rows * 301, 31);
    std::vector<float> ref(rows * 5), batch4(rows * 5);
    r.predict(x.data(), ref.data(), rows);
    h1.predict(x.data(), batch4.data(), rows);
    double scale = 0;
    for (float v : ref) scale = std::max(scale, std::abs(double(v)));
    for (const auto* h : {&h1, &h2})
        for (std::size_t b = 1; b <= rows; ++b) {
            std::vector<float> got(b * 5);
            h->predict(x.data(), got.data(), b);
            check_close(got, std::vector<float>(ref.begin(), ref.begin() + static_cast<std::ptrdiff_t>(b * 5)),
                        "batch " + std::to_string(b) + " threads " + std::to_string(h->context().thread_count()),
                        std::max(scale, 1.0));
            // the first b samples of the batch-4 call, bit for bit
            CHECK(std::equal(got.begin(), got.end(), batch4.begin()));
        }
}
