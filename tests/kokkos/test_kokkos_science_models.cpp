// The M-CNN (models/mcnn.hpp, all seven branches at 128x128) and the HEP CNN (models/hep_cnn.hpp,
// with its dropout) train on their synthetic data sets to the same parameters and losses on the
// Kokkos backend as on the host, with the recipes' optimizers: Nesterov SGD with L2 and LARS
// (M-CNN), LAMB (HEP CNN).
#include <lamina/kokkos.hpp>  // first: Kokkos, the Kokkos kernels, lamina
#include <lamina/lamina.hpp>  // the host backend, for comparison

#include <vector>

#include "kokkos_test_support.hpp"

namespace lm = lamina;

TEMPLATE_TEST_CASE("M-CNN at 128x128 trains identically on Kokkos and on the host", "[kokkos][model][mcnn]",
                   LAMINA_KOKKOS_TEST_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    using net = lm::models::mcnn<lm::data::synthetic_cell_class_count, 3, 128, 128>;
    lm::data::synthetic_cells_options o;
    o.seed = 4;
    const auto cells = lm::data::synthetic_cells(8, o);
    net::model<lm::host> h{lm::seed{2}, lm::threads{1}};
    net::model<B> k{lm::seed{2}};
    REQUIRE(k.get_parameters() == h.get_parameters());

    lm::trainer th{h, lm::loss::softmax_cross_entropy{0.1}, lm::optim::sgd{0.01, 0.9, true, 5e-5}};
    lm::trainer tk{k, lm::loss::softmax_cross_entropy{0.1}, lm::optim::sgd{0.01, 0.9, true, 5e-5}};
    th.run(cells, lm::epochs{1}, lm::batch{4});
    tk.run(cells, lm::epochs{1}, lm::batch{4});
    KT_REQUIRE_CLOSE_TOL(k.get_parameters(), h.get_parameters(), 1e-4, 1e-5);

    lm::trainer lh{h, lm::loss::softmax_cross_entropy{0.1}, lm::optim::lars{0.05, 0.9, 5e-5}};
    lm::trainer lk{k, lm::loss::softmax_cross_entropy{0.1}, lm::optim::lars{0.05, 0.9, 5e-5}};
    lh.run(cells, lm::epochs{1}, lm::batch{4});
    lk.run(cells, lm::epochs{1}, lm::batch{4});
    KT_REQUIRE_CLOSE_TOL(k.get_parameters(), h.get_parameters(), 1e-4, 1e-5);
    const auto eh = lh.evaluate(cells), ek = lk.evaluate(cells);
    CHECK(ek.loss == Approx(eh.loss).epsilon(1e-4));
}

TEMPLATE_TEST_CASE("HEP CNN with dropout trains identically on Kokkos and on the host", "[kokkos][model][hep_cnn]",
                   LAMINA_KOKKOS_TEST_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    using net = lm::models::hep_cnn<2, 3, 32, 32, 8, 20>;
    lm::data::synthetic_calorimeter_options o;
    o.height = 32;
    o.width = 32;
    o.seed = 6;
    const auto events = lm::data::synthetic_calorimeter(16, o);
    net::model<lm::host> h{lm::seed{8}, lm::threads{1}};
    net::model<B> k{lm::seed{8}};
    REQUIRE(k.get_parameters() == h.get_parameters());
    lm::trainer th{h, lm::loss::softmax_cross_entropy{}, lm::optim::lamb{1e-3}};
    lm::trainer tk{k, lm::loss::softmax_cross_entropy{}, lm::optim::lamb{1e-3}};
    th.run(events, lm::epochs{3}, lm::batch{8});
    tk.run(events, lm::epochs{3}, lm::batch{8});
    KT_REQUIRE_CLOSE_TOL(k.get_parameters(), h.get_parameters(), 1e-4, 1e-5);
    const auto eh = th.evaluate(events), ek = tk.evaluate(events);
    CHECK(ek.loss == Approx(eh.loss).epsilon(1e-4));
    CHECK(ek.accuracy == eh.accuracy);
}
