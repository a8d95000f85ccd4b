// Build test: the Kokkos backend and the lamina umbrella for it (kokkos.hpp) pull in none of
// the host backend's kernel headers (nor xsimd). Checked while compiling: had any host
// header been included, the types it defines would be complete here. scripts/test_kokkos.sh
// also greps the preprocessed header for "backends/host".
#include <lamina/kokkos.hpp>

#include <catch2/catch.hpp>

#include <type_traits>

namespace lamina {
struct host;  // backends/host/host_backend.hpp
namespace host_detail {
struct gemm_blocking;  // backends/host/gemm.hpp
struct gemm_epilogue;  // backends/host/gemm.hpp
struct conv_segment;   // backends/host/conv_igemm.hpp
}  // namespace host_detail
}  // namespace lamina

namespace {
template <class T, class = void>
struct is_complete : std::false_type {};
template <class T>
struct is_complete<T, std::void_t<decltype(sizeof(T))>> : std::true_type {};
}  // namespace

static_assert(!is_complete<lamina::host>::value, "kokkos.hpp included the host backend (host_backend.hpp)");
static_assert(!is_complete<lamina::host_detail::gemm_blocking>::value, "kokkos.hpp included backends/host/gemm.hpp");
static_assert(!is_complete<lamina::host_detail::gemm_epilogue>::value, "kokkos.hpp included backends/host/gemm.hpp");
static_assert(!is_complete<lamina::host_detail::conv_segment>::value, "kokkos.hpp included backends/host/conv_igemm.hpp");
#if defined(XSIMD_VERSION_MAJOR) || defined(XSIMD_HPP)
#error "kokkos.hpp included xsimd (the host backend's SIMD layer)"
#endif
#if !defined(LAMINA_HOST_DEVICE_IS_KOKKOS)
#error "LAMINA_HOST_DEVICE is not KOKKOS_INLINE_FUNCTION although Kokkos came first"
#endif

TEST_CASE("the Kokkos backend builds without the host backend", "[kokkos][build]") {
    using net = lamina::sequential<lamina::input<4>, lamina::dense<3>, lamina::relu, lamina::dense<2>>;
    using B = lamina::kokkos_backend<Kokkos::DefaultExecutionSpace>;
    net::model<B> m{lamina::seed{3}};
    std::vector<float> x{1, 2, 3, 4}, y(2);
    m.predict(x.data(), y.data(), 1);
    CHECK(std::string(B::name) == "kokkos");
    CHECK(m.get_parameters().size() == net::model<B>::parameter_count);
}
