// KokkosBlas::gemm routing (kokkos_blas_gemm.hpp): in a build with LAMINA_WITH_KOKKOSKERNELS
// the Kokkos backend's GEMM goes through KokkosKernels for contiguous row-major operands;
// results must match a naive double-precision product. Without KokkosKernels the routing must
// report itself off and decline every call (lamina's own tiled GEMM then runs).
#include "kokkos_test_support.hpp"

#include <lamina/backends/kokkos/kokkos_blas_gemm.hpp>

namespace lm = lamina;

TEST_CASE("KokkosBlas::gemm routing matches a naive product, or is off", "[kokkos][gemm][kokkoskernels]") {
    using space = Kokkos::DefaultExecutionSpace;
    using mem = space::memory_space;
    using B = lm::kokkos_backend<space>;
    constexpr bool enabled = lm::kokkos_detail::kokkos_blas_gemm_enabled<space, mem, float>();
#if defined(LAMINA_WITH_KOKKOSKERNELS)
    static_assert(enabled, "LAMINA_WITH_KOKKOSKERNELS is set: float GEMM on the default space must use KokkosBlas");
#else
    static_assert(!enabled, "no KokkosKernels in this build: the routing must be off");
#endif
    struct dims {
        std::size_t m, n, k;
    };
    std::uint64_t seed = 1;
    for (dims d : {dims{1, 1, 1}, dims{7, 17, 5}, dims{128, 512, 784}, dims{255, 33, 130}})
        for (auto ta : {lm::transpose::no, lm::transpose::yes})
            for (auto tb : {lm::transpose::no, lm::transpose::yes}) {
                const std::size_t lda = ta == lm::transpose::no ? d.k : d.m, ldb = tb == lm::transpose::no ? d.n : d.k;
                auto a = kt::random_vector<float>(d.m * d.k, ++seed), b = kt::random_vector<float>(d.k * d.n, ++seed);
                auto c = kt::random_vector<float>(d.m * d.n, ++seed);
                kt::dev<B, float> da(a), db(b), dc(c);
                B::context ctx;
                const bool used = lm::kokkos_detail::kokkos_blas_gemm<space, mem, float>(
                    ctx.space(), ta, tb, d.m, d.n, d.k, 0.5f, da.buf.data(), lda, db.buf.data(), ldb, -0.25f,
                    dc.buf.data(), d.n);
                CHECK(used == enabled);
                if (!used) continue;
                auto got = dc.host();
                double scale = 0;
                std::vector<double> ref(d.m * d.n);
                for (std::size_t i = 0; i < d.m; ++i)
                    for (std::size_t j = 0; j < d.n; ++j) {
                        double s = 0;
                        for (std::size_t p = 0; p < d.k; ++p) {
                            const double av = ta == lm::transpose::no ? a[i * lda + p] : a[p * lda + i];
                            const double bv = tb == lm::transpose::no ? b[p * ldb + j] : b[j * ldb + p];
                            s += av * bv;
                        }
                        ref[i * d.n + j] = 0.5 * s - 0.25 * c[i * d.n + j];
                        scale = std::max(scale, std::abs(ref[i * d.n + j]));
                    }
                std::size_t bad = 0;
                for (std::size_t i = 0; i < ref.size(); ++i)
                    if (!(std::abs(got[i] - ref[i]) <= 1e-5 * std::max(std::abs(double(got[i])), std::abs(ref[i])) +
                                                           2e-6 * scale * std::sqrt(double(d.k))))
                        ++bad;
                INFO("M=" << d.m << " N=" << d.n << " K=" << d.k << " ta=" << int(ta) << " tb=" << int(tb));
                CHECK(bad == 0);
            }
    // A padded leading dimension never qualifies: lamina's own GEMM handles it.
    kt::dev<B, float> a(std::size_t(64)), b(std::size_t(64)), c(std::size_t(64));
    CHECK_FALSE(lm::kokkos_detail::kokkos_blas_gemm<space, mem, float>(
        B::context{}.space(), lm::transpose::no, lm::transpose::no, 4, 4, 4, 1.f, a.buf.data(), 5, b.buf.data(), 4,
        0.f, c.buf.data(), 4));
}
