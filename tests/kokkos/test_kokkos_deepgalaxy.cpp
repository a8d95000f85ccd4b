// The DeepGalaxy networks (models/deepgalaxy.hpp) at a small size on the Kokkos backend
// against the host backend: the FCAE with its classifier head (two heads, loss::per_output)
// and the VAE (sampling and its KL) train to matching parameters, predictions and losses, on
// every execution space of this build.
#include <lamina/kokkos.hpp>  // first: Kokkos, the Kokkos kernels, lamina
#include <lamina/lamina.hpp>  // the host backend, for comparison
#include <lamina/models/deepgalaxy.hpp>

#include <cmath>
#include <vector>

#include "kokkos_test_support.hpp"

namespace lm = lamina;
namespace dg = lamina::models::deepgalaxy;

namespace {
// 16x16 images, groups 4(1) 8(2) to a 4x4x8 latent map, centre 8, decoder 4-4, 3 classes, Z = 4
using tiny = dg::config<16, dg::widths<4, 8>, dg::convs<1, 2>, 8, dg::widths<4, 4>, 3, 4, 16, 4, 8, std::ratio<1, 16>>;

/// n blobs in [0, 1] with targets [image | class] (class i % 3).
void blobs(std::size_t n, std::vector<float>& x, std::vector<float>& t) {
    x.assign(n * 256, 0.0f);
    t.assign(n * 257, 0.0f);
    for (std::size_t s = 0; s < n; ++s) {
        const double ci = 4.0 + double(s % 7), cj = 11.0 - double(s % 5), w = 1.5 + double(s % 3);
        for (std::size_t i = 0; i < 16; ++i)
            for (std::size_t j = 0; j < 16; ++j) {
                const double r2 = (double(i) - ci) * (double(i) - ci) + (double(j) - cj) * (double(j) - cj);
                x[s * 256 + i * 16 + j] = static_cast<float>(std::exp(-r2 / (2 * w * w)));
                t[s * 257 + i * 16 + j] = x[s * 256 + i * 16 + j];
            }
        t[s * 257 + 256] = static_cast<float>(s % 3);
    }
}
}  // namespace

TEMPLATE_TEST_CASE("DeepGalaxy FCAE + classifier trains identically on Kokkos and on the host",
                   "[kokkos][model][deepgalaxy]", LAMINA_KOKKOS_TEST_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    std::vector<float> x, t;
    blobs(24, x, t);
    const lm::dataset_view<float> data{x.data(), t.data(), 24, 256, 257};
    tiny::fcae_classifier::model<lm::host> h{lm::seed{3}, lm::threads{1}};
    tiny::fcae_classifier::model<B> k{lm::seed{3}};
    REQUIRE(k.get_parameters() == h.get_parameters());
    auto losses = [] {
        return lm::loss::per_output{lm::loss::weighted{1.0, lm::loss::mae{}},
                                    lm::loss::weighted{0.5, lm::loss::softmax_cross_entropy{}}};
    };
    lm::trainer th{h, losses(), lm::optim::adam{1e-3}};
    lm::trainer tk{k, losses(), lm::optim::adam{1e-3}};
    th.run(data, lm::epochs{2}, lm::batch{8});
    tk.run(data, lm::epochs{2}, lm::batch{8});
    KT_REQUIRE_CLOSE_TOL(k.get_parameters(), h.get_parameters(), 1e-4, 1e-5);
    KT_REQUIRE_CLOSE_TOL(k.get_state(), h.get_state(), 1e-4, 1e-5);
    const auto eh = th.evaluate(data), ek = tk.evaluate(data);
    CHECK(ek.loss == Approx(eh.loss).epsilon(1e-4));
    CHECK(ek.accuracy == eh.accuracy);
}

TEMPLATE_TEST_CASE("DeepGalaxy VAE: the same KL and training on Kokkos as on the host", "[kokkos][model][deepgalaxy]",
                   LAMINA_KOKKOS_TEST_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    constexpr std::size_t D = tiny::latent_map_size;
    static_assert(D == 128);
    std::vector<float> m(16 * D);
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(std::sin(0.37 * double(i)));
    tiny::vae::model<lm::host> h{lm::seed{5}, lm::threads{1}};
    tiny::vae::model<B> k{lm::seed{5}};
    const lm::dataset_view<float> data{m.data(), m.data(), 16, D, D};
    lm::trainer th{h, lm::loss::mse{}, lm::optim::adam{1e-3}};
    lm::trainer tk{k, lm::loss::mse{}, lm::optim::adam{1e-3}};
    // the first step's loss: MSE of a sampled z plus Beta x KL (the same eps on every backend)
    std::vector<std::size_t> idx(16);
    for (std::size_t i = 0; i < 16; ++i) idx[i] = i;
    const double lh = th.train_batch(data, idx.data(), 16, 1e-3), lk = tk.train_batch(data, idx.data(), 16, 1e-3);
    CHECK(lk == Approx(lh).epsilon(1e-5));
    CHECK(h.added_loss() > 0);
    th.run(data, lm::epochs{3}, lm::batch{8});
    tk.run(data, lm::epochs{3}, lm::batch{8});
    KT_REQUIRE_CLOSE_TOL(k.get_parameters(), h.get_parameters(), 1e-4, 1e-5);
    CHECK(tk.evaluate(data).loss == Approx(th.evaluate(data).loss).epsilon(1e-4));
}
