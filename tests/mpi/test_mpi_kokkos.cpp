// The MPI communicator on the Kokkos backend, on every host execution space of the build: N
// ranks with batch B equal one process with batch N*B (residual network, SGD and Adam; a
// batch-norm network with synchronised batch norm), with the fusion buckets handed to MPI in
// the model's memory space and through host staging buffers (the path of a device without
// GPU-aware MPI), with and without overlap. Run under mpirun -np 2 and -np 4
// (tests/mpi/CMakeLists.txt; label "kokkos;mpi"). comm::hybrid (one group and a server) on the
// same spaces equals one process with the group's batch.
#include <lamina/kokkos.hpp>  // first: Kokkos, the Kokkos kernels, lamina

#include <catch2/catch.hpp>
#include <mpi.h>

#include <lamina/communicators/hybrid.hpp>
#include <lamina/communicators/mpi.hpp>

#include "mpi_test_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace lm = lamina;

#if defined(KOKKOS_ENABLE_SERIAL) && defined(KOKKOS_ENABLE_OPENMP)
#define LAMINA_MPI_KOKKOS_SPACES Kokkos::Serial, Kokkos::OpenMP
#elif defined(KOKKOS_ENABLE_OPENMP)
#define LAMINA_MPI_KOKKOS_SPACES Kokkos::OpenMP
#elif defined(KOKKOS_ENABLE_SERIAL)
#define LAMINA_MPI_KOKKOS_SPACES Kokkos::Serial
#else
#define LAMINA_MPI_KOKKOS_SPACES Kokkos::DefaultHostExecutionSpace
#endif

namespace {

using mpi_test::res_net;
using mpi_test::world_rank;
using mpi_test::world_size;
using mpi_test::excess;
using bn_net = mpi_test::bn_net_with<5>;

lm::dataset<float> make_data(std::size_t n, std::size_t classes) { return mpi_test::hashed_data(n, classes, 4242); }

struct trained {
    std::vector<float> parameters, state;
};

template <class Net, class B, class Opt>
trained one_process(const lm::dataset<float>& d, std::size_t batch, Opt opt) {
    typename Net::template model<B> net{lm::seed{7}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, opt};
    fit.run(d, lm::epochs{2}, lm::batch{batch});
    return {net.get_parameters(), net.get_state()};
}

template <class Net, class B, class Opt>
trained ranks(const lm::dataset<float>& d, std::size_t batch, Opt opt, lm::comm::mpi_options o, bool* direct) {
    typename Net::template model<B> net{lm::seed{7}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, opt, lm::comm::mpi{MPI_COMM_WORLD, o}};
    fit.run(d, lm::epochs{2}, lm::batch{batch});
    *direct = fit.session().direct();
    return {net.get_parameters(), net.get_state()};
}

}  // namespace

TEMPLATE_TEST_CASE("Kokkos: N ranks with batch B equal one process with batch N*B, in place and staged",
                   "[mpi][kokkos]", LAMINA_MPI_KOKKOS_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    const std::size_t N = world_size(), Bs = 3;
    const auto data = make_data(N * Bs * 3, 5);
    const lm::optim::sgd sgd{0.05, 0.9, true, 1e-3};
    const lm::optim::adam adam{0.01};
    const auto sgd_ref = one_process<res_net, B>(data, N * Bs, sgd);
    const auto adam_ref = one_process<res_net, B>(data, N * Bs, adam);
    for (bool staged : {false, true})
        for (bool overlap : {true, false}) {
            INFO("staged " << staged << ", overlap " << overlap);
            lm::comm::mpi_options o;
            o.stage_through_host = staged;
            o.overlap = overlap;
            o.first_bucket_bytes = 128;
            o.bucket_bytes = 512;
            bool direct = false;
            CHECK(excess(ranks<res_net, B>(data, Bs, sgd, o, &direct).parameters, sgd_ref.parameters) <= 0);
            // host execution spaces: MPI reads the model's memory unless staging is forced
            CHECK(direct == !staged);
            CHECK(excess(ranks<res_net, B>(data, Bs, adam, o, &direct).parameters, adam_ref.parameters) <= 0);
        }
}

TEMPLATE_TEST_CASE("Kokkos: synchronised batch norm over N ranks equals one process", "[mpi][kokkos][batch_norm]",
                   LAMINA_MPI_KOKKOS_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    const std::size_t N = world_size(), Bs = 4;
    const auto data = make_data(N * Bs * 3, 5);
    const lm::optim::sgd sgd{0.1, 0.9};
    const auto ref = one_process<bn_net, B>(data, N * Bs, sgd);
    for (bool staged : {false, true}) {
        INFO("staged " << staged);
        lm::comm::mpi_options o;
        o.stage_through_host = staged;
        o.synchronize_batch_norm = true;
        bool direct = false;
        const auto r = ranks<bn_net, B>(data, Bs, sgd, o, &direct);
        CHECK(excess(r.parameters, ref.parameters) <= 0);
        CHECK(excess(r.state, ref.state) <= 0);
    }
}

TEMPLATE_TEST_CASE("Kokkos: comm::hybrid with one group and a parameter server equals one process with the group's batch",
                   "[mpi][kokkos][hybrid]", LAMINA_MPI_KOKKOS_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    const std::size_t W = world_size() - 1, Bs = 3;  // one group of W workers, the last rank serves
    const auto data = make_data(W * Bs * 3, 5);
    const lm::optim::adam adam{0.01};
    const auto ref = one_process<res_net, B>(data, W * Bs, adam);
    lm::comm::mpi_options o;
    o.first_bucket_bytes = 128;
    o.bucket_bytes = 512;
    typename res_net::template model<B> net{lm::seed{7}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, adam, lm::schedule::constant{},
                    lm::comm::hybrid{MPI_COMM_WORLD, lm::comm::groups{1}, lm::comm::servers{1}, o}};
    fit.run(data, lm::epochs{2}, lm::batch{Bs});
    if (!fit.session().is_server()) CHECK(excess(net.get_parameters(), ref.parameters) <= 0);
}
