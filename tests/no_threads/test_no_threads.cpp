// lamina built with LAMINA_NO_THREADS (the serial thread_pool: no std::thread, no atomics):
// every context has one thread, whatever it asks for, the host kernels still match the
// reference, and a small network trains.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#ifndef LAMINA_NO_THREADS
#error "this test must be compiled with LAMINA_NO_THREADS"
#endif
#include <lamina/lamina.hpp>

namespace lm = lamina;

TEST_CASE("LAMINA_NO_THREADS gives a serial pool", "[threads][no_threads]") {
    static_assert(!lm::threading_enabled, "LAMINA_NO_THREADS must switch threading off");
    lm::thread_pool pool(4);
    CHECK(pool.size() == 1);
    int calls = 0;
    pool.run([&](unsigned t, unsigned nt) {
        CHECK(t == 0);
        CHECK(nt == 1);
        ++calls;
    });
    CHECK(calls == 1);
    std::size_t seen = 0;
    pool.parallel_for(1000, [&](std::size_t lo, std::size_t hi) { seen += hi - lo; });
    CHECK(seen == 1000);
    CHECK(lm::host::context(lm::threads{2}).thread_count() == 1);
}

TEST_CASE("LAMINA_NO_THREADS host kernels match the reference", "[threads][no_threads]") {
    lm::host::context ctx(lm::threads{2});
    lm::reference::context rctx;
    const std::size_t M = 130, N = 67, K = 300;
    std::vector<float> A(M * K), B(N * K), bias(N), c1(M * N), c2(M * N);
    for (std::size_t i = 0; i < A.size(); ++i) A[i] = float((i * 37) % 101) / 101.0f - 0.5f;
    for (std::size_t i = 0; i < B.size(); ++i) B[i] = float((i * 53) % 97) / 97.0f - 0.5f;
    for (std::size_t i = 0; i < N; ++i) bias[i] = float(i % 7) / 7.0f - 0.5f;
    const lm::activation relu{lm::activation_kind::relu, 0.0};
    lm::host::gemm_bias_act(ctx, lm::transpose::no, lm::transpose::yes, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f,
                            c1.data(), N, bias.data(), relu);
    lm::reference::gemm_bias_act(rctx, lm::transpose::no, lm::transpose::yes, M, N, K, 1.0f, A.data(), K, B.data(), K,
                                 0.0f, c2.data(), N, bias.data(), relu);
    for (std::size_t i = 0; i < c1.size(); ++i) REQUIRE(std::abs(c1[i] - c2[i]) <= 1e-4f);
}

TEST_CASE("LAMINA_NO_THREADS trains a small network", "[threads][no_threads]") {
    using net_t = lm::sequential<lm::input<1, 8, 8>, lm::conv2d<4, 3>, lm::relu, lm::max_pool<2>, lm::flatten,
                                 lm::dense<16>, lm::relu, lm::dense<3>>;
    typename net_t::template model<lm::host> net{lm::seed{1}, lm::threads{2}};
    lm::dataset<float> d(32, 64, 1);
    for (std::size_t i = 0; i < 32; ++i) {
        *d.target(i) = float(i % 3);
        for (std::size_t k = 0; k < 64; ++k) d.sample(i)[k] = (i % 3 == k % 3) ? 1.0f : 0.0f;
    }
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::adam{1e-2}};
    std::vector<std::size_t> idx(32);
    for (std::size_t i = 0; i < 32; ++i) idx[i] = i;
    double first = fit.train_batch(d, idx.data(), 32, 1e-2), last = first;
    for (int s = 0; s < 30; ++s) last = fit.train_batch(d, idx.data(), 32, 1e-2);
    CHECK(std::isfinite(last));
    CHECK(last < first);
}
