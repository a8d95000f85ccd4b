// The fused GEMM epilogue (gemm_bias_act: C = act(alpha op(A) op(B) + beta C + bias)) of the
// host backend against the reference backend's naive version, on awkward shapes, every
// transpose, with and without bias, float and double, at 1 and 2 threads; and the dense
// layer, which uses it for its bias.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "lamina/backends/host/host_backend.hpp"
#include "lamina/backends/reference/reference_backend.hpp"

using namespace lamina;

namespace {

template <class T>
std::vector<T> random_vec(std::size_t n, std::uint64_t seed) {
    random_stream s{seed, 13};
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(-1.0 + 2.0 * s.uniform_double(i));
    return v;
}

// |a - b| <= rel * max(|a|, |b|) + abs * scale, where scale is the largest pre-activation
// magnitude (activations are 1-Lipschitz at most, so the GEMM's rounding carries over).
template <class T>
void check_close(const std::vector<T>& got, const std::vector<T>& ref, const std::string& what, double scale) {
    const double rel = std::is_same<T, float>::value ? 2e-5 : 1e-12;
    const double abs = std::is_same<T, float>::value ? 2e-6 : 1e-13;
    REQUIRE(got.size() == ref.size());
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const double a = got[i], b = ref[i];
        if (!(std::abs(a - b) <= rel * std::max(std::abs(a), std::abs(b)) + abs * scale) && bad++ == 0) first = i;
    }
    INFO(what << ": " << bad << " of " << ref.size() << " differ; first at " << first << ": host "
              << (bad ? got[first] : T(0)) << " reference " << (bad ? ref[first] : T(0)));
    CHECK(bad == 0);
}

std::vector<host::context>& contexts() {
    static std::vector<host::context> c{host::context(threads{1}), host::context(threads{2})};
    return c;
}

}  // namespace

TEMPLATE_TEST_CASE("gemm_bias_act matches reference", "[host][gemm][epilogue]", float, double) {
    using T = TestType;
    struct dims {
        std::size_t m, n, k;
    };
    // Small path, packed path with edge tiles in every dimension, K over several KC blocks,
    // threaded row and column splits, and K == 0.
    const std::vector<dims> shapes{{1, 1, 1},     {7, 17, 5},     {17, 7, 64},    {128, 10, 512}, {255, 255, 255},
                                   {13, 1000, 300}, {1000, 13, 300}, {130, 129, 513}, {3, 5, 0}};
    const transpose tr[] = {transpose::no, transpose::yes};
    const activation acts[] = {{activation_kind::identity, 0.0}, {activation_kind::relu, 0.0},
                               {activation_kind::leaky_relu, 0.1}, {activation_kind::sigmoid, 0.0},
                               {activation_kind::tanh, 0.0},     {activation_kind::gelu, 0.0}};
    reference::context rctx;
    std::uint64_t seed = 1;
    for (const auto& d : shapes)
        for (transpose ta : tr)
            for (transpose tb : tr)
                for (const activation& act : acts)
                    for (int variant = 0; variant < 3; ++variant) {
                        const bool with_bias = variant != 1;
                        const T alpha = variant == 2 ? T(-0.75) : T(1);
                        const T beta = variant == 2 ? T(0.5) : T(0);
                        const std::size_t a_cols = ta == transpose::no ? d.k : d.m;
                        const std::size_t a_rows = ta == transpose::no ? d.m : d.k;
                        const std::size_t b_cols = tb == transpose::no ? d.n : d.k;
                        const std::size_t b_rows = tb == transpose::no ? d.k : d.n;
                        const std::size_t lda = a_cols + 1, ldb = b_cols + 2, ldc = d.n + 3;
                        auto A = random_vec<T>(a_rows * lda, ++seed);
                        auto B = random_vec<T>(b_rows * ldb, ++seed);
                        auto bias = random_vec<T>(d.n, ++seed);
                        auto Cin = random_vec<T>(d.m * ldc, ++seed);
                        if (beta == T(0))  // beta == 0 must not read C; padding columns must stay
                            for (std::size_t i = 0; i < d.m; ++i)
                                for (std::size_t j = 0; j < d.n; ++j)
                                    Cin[i * ldc + j] = std::numeric_limits<T>::quiet_NaN();
                        std::vector<T> ref = Cin;
                        const T* bp = with_bias ? bias.data() : nullptr;
                        reference::gemm_bias_act(rctx, ta, tb, d.m, d.n, d.k, alpha, A.data(), lda, B.data(), ldb,
                                                 beta, ref.data(), ldc, bp, act);
                        std::vector<T> lin = Cin;
                        reference::gemm_bias_act(rctx, ta, tb, d.m, d.n, d.k, alpha, A.data(), lda, B.data(), ldb,
                                                 beta, lin.data(), ldc, bp, activation{});
                        double scale = 0;
                        for (T v : lin)
                            if (!std::isnan(v)) scale = std::max(scale, std::abs(static_cast<double>(v)));
                        for (auto& ctx : contexts()) {
                            std::vector<T> got = Cin;
                            host::gemm_bias_act(ctx, ta, tb, d.m, d.n, d.k, alpha, A.data(), lda, B.data(), ldb, beta,
                                                got.data(), ldc, bp, act);
                            check_close(got, ref,
                                        "M=" + std::to_string(d.m) + " N=" + std::to_string(d.n) +
                                            " K=" + std::to_string(d.k) + " ta=" + std::to_string(int(ta)) +
                                            " tb=" + std::to_string(int(tb)) + " act=" + to_string(act.kind) +
                                            " variant=" + std::to_string(variant) +
                                            " threads=" + std::to_string(ctx.thread_count()),
                                        scale);
                        }
                    }
}

TEMPLATE_TEST_CASE("gemm_bias_act with no epilogue is gemm, bit for bit", "[host][gemm][epilogue]", float, double) {
    using T = TestType;
    const std::size_t M = 130, N = 129, K = 513;
    auto A = random_vec<T>(M * K, 3), B = random_vec<T>(K * N, 4);
    for (auto& ctx : contexts()) {
        std::vector<T> c1(M * N), c2(M * N);
        host::gemm(ctx, transpose::no, transpose::no, M, N, K, T(1), A.data(), K, B.data(), N, T(0), c1.data(), N);
        host::gemm_bias_act(ctx, transpose::no, transpose::no, M, N, K, T(1), A.data(), K, B.data(), N, T(0), c2.data(),
                            N, static_cast<const T*>(nullptr), activation{});
        CHECK(c1 == c2);
    }
}

TEMPLATE_TEST_CASE("the row-bias epilogue (convolution bias) matches a naive loop", "[host][gemm][epilogue]", float,
                   double) {
    // C = act(A B + row_bias[i] + bias[j]) through host_detail::gemm_parallel, with row and
    // column thread splits (the row slices must see their own part of row_bias).
    using T = TestType;
    struct dims {
        std::size_t m, n, k;
    };
    const std::vector<dims> shapes{{1, 1, 1}, {7, 17, 5}, {256, 300, 64}, {37, 2100, 19}, {300, 200, 64}, {130, 9, 70}, {6, 5, 0}};
    std::uint64_t seed = 500;
    for (const auto& d : shapes)
        for (int with_col_bias = 0; with_col_bias < 2; ++with_col_bias)
            for (activation_kind kind : {activation_kind::identity, activation_kind::relu}) {
                auto A = random_vec<T>(d.m * d.k + 1, ++seed), B = random_vec<T>(d.k * d.n + 1, ++seed);
                auto rb = random_vec<T>(d.m, ++seed), cb = random_vec<T>(d.n, ++seed);
                std::vector<T> ref(d.m * d.n);
                double scale = 0;
                for (std::size_t i = 0; i < d.m; ++i)
                    for (std::size_t j = 0; j < d.n; ++j) {
                        double s = 0;
                        for (std::size_t p = 0; p < d.k; ++p) s += double(A[i * d.k + p]) * double(B[p * d.n + j]);
                        s += double(rb[i]) + (with_col_bias ? double(cb[j]) : 0.0);
                        scale = std::max(scale, std::abs(s));
                        ref[i * d.n + j] = static_cast<T>(kind == activation_kind::relu ? std::max(s, 0.0) : s);
                    }
                for (auto& ctx : contexts()) {
                    std::vector<T> got(d.m * d.n, std::numeric_limits<T>::quiet_NaN());
                    host_detail::gemm_parallel(&ctx.pool(), transpose::no, transpose::no, d.m, d.n, d.k, T(1), A.data(),
                                               d.k, B.data(), d.n, T(0), got.data(), d.n,
                                               host_detail::gemm_epilogue<T>{with_col_bias ? cb.data() : nullptr,
                                                                             activation{kind, 0.0}, rb.data()});
                    check_close(got, ref,
                                "M=" + std::to_string(d.m) + " N=" + std::to_string(d.n) + " K=" + std::to_string(d.k) +
                                    " col bias " + std::to_string(with_col_bias) + " act " + to_string(kind) +
                                    " threads " + std::to_string(ctx.thread_count()),
                                scale);
                }
            }
}
