// Synchronous data parallelism is exact: N ranks with batch B each give, after K steps, the
// parameters one process gives with batch N*B on the same data (the DDP test), for SGD (momentum,
// Nesterov, weight decay) and Adam, on a network with a residual block, with fusion and overlap
// on and off and both ways of driving MPI's progress; with synchronised batch norm the same
// holds for a batch-norm network (parameters and running statistics), and without it it does
// not (the check can fail). Every rank trains the one-process reference itself and compares.
// Run under mpirun -np 2 and -np 4 (tests/mpi/CMakeLists.txt).
#include <catch2/catch.hpp>
#include <mpi.h>

#include <lamina/lamina.hpp>
#include <lamina/communicators/mpi.hpp>

#include "mpi_test_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace lm = lamina;

namespace {

using mpi_test::res_net;
using mpi_test::world_rank;
using mpi_test::world_size;
using mpi_test::excess;
using bn_net = mpi_test::bn_net_with<3>;

bool thread_multiple() {
    int level = 0;
    MPI_Query_thread(&level);
    return level >= MPI_THREAD_MULTIPLE;
}

lm::dataset<float> make_data(std::size_t n, std::size_t classes) { return mpi_test::hashed_data(n, classes, 12345); }

struct loss_log {
    std::vector<double> losses;
    template <class Trainer>
    void on_step_end(Trainer&, const lm::step_info& i) {
        losses.push_back(i.loss);
    }
};

struct result {
    std::vector<float> parameters, state;
    std::vector<double> losses;
};

template <class Net, class Opt>
result train_one_process(const lm::dataset<float>& d, std::size_t batch, std::size_t epochs, Opt opt) {
    typename Net::template model<lm::host> net{lm::seed{7}, lm::threads{1}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, opt};
    loss_log log;
    fit.run(d, lm::epochs{epochs}, lm::batch{batch}, log);
    return {net.get_parameters(), net.get_state(), log.losses};
}

template <class Net, class Opt>
result train_ranks(const lm::dataset<float>& d, std::size_t batch, std::size_t epochs, Opt opt, lm::comm::mpi_options o) {
    typename Net::template model<lm::host> net{lm::seed{7}, lm::threads{1}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, opt, lm::comm::mpi{MPI_COMM_WORLD, o}};
    static_assert(decltype(fit)::distributed && decltype(fit)::steps_by_bucket);
    loss_log log;
    fit.run(d, lm::epochs{epochs}, lm::batch{batch}, log);
    return {net.get_parameters(), net.get_state(), log.losses};
}

template <class U>
double max_abs_diff(const std::vector<U>& a, const std::vector<U>& b) {
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
    return m;
}

struct variant {
    const char* name;
    bool fusion, overlap;
    lm::comm::progress progress;
    std::size_t first_bucket_bytes, bucket_bytes;
    lm::comm::allreduce_algorithm algorithm = lm::comm::mpi_options{}.allreduce_algorithm;
};
std::vector<variant> variants() {
    std::vector<variant> v = {
        {"fusion + overlap between layers", true, true, lm::comm::progress::between_layers, 256, 1024},
        {"fusion, no overlap", true, false, lm::comm::progress::between_layers, 256, 1024},
        {"no fusion, overlap", false, true, lm::comm::progress::between_layers, 256, 1024},
        {"no fusion, no overlap", false, false, lm::comm::progress::between_layers, 256, 1024},
        {"one bucket (defaults: 1 MiB first bucket)", true, true, lm::comm::progress::between_layers, 1 << 20,
         25 << 20},
        {"odd thresholds smaller than one tensor", true, true, lm::comm::progress::between_layers, 3, 101},
        // both sums that overlap backward, whichever is the default
        {"fusion + overlap, the library's MPI_Iallreduce", true, true, lm::comm::progress::between_layers, 256, 1024,
         lm::comm::allreduce_algorithm::library},
        {"odd thresholds, the library's MPI_Iallreduce", true, true, lm::comm::progress::between_layers, 3, 101,
         lm::comm::allreduce_algorithm::library},
        {"fusion + overlap, lamina's halving/doubling", true, true, lm::comm::progress::between_layers, 256, 1024,
         lm::comm::allreduce_algorithm::halving_doubling},
    };
    if (thread_multiple())
        v.push_back({"fusion + overlap, communication thread", true, true, lm::comm::progress::thread, 256, 1024});
    return v;
}
lm::comm::mpi_options options_of(const variant& v) {
    lm::comm::mpi_options o;
    o.fusion = v.fusion;
    o.overlap = v.overlap;
    o.progress = v.progress;
    o.first_bucket_bytes = v.first_bucket_bytes;
    o.bucket_bytes = v.bucket_bytes;
    o.allreduce_algorithm = v.algorithm;
    return o;
}

}  // namespace

TEST_CASE("N ranks with batch B equal one process with batch N*B (residual network, SGD and Adam)",
          "[mpi][training]") {
    const std::size_t N = static_cast<std::size_t>(world_size()), B = 3, steps = 3;
    const auto data = make_data(N * B * steps, 5);  // `steps` steps per epoch at global batch N*B
    const lm::optim::sgd sgd{0.05, 0.9, true, 1e-3};
    const lm::optim::adam adam{0.01, 0.9, 0.999, 1e-8, 1e-3};
    const result sgd_ref = train_one_process<res_net>(data, N * B, 2, sgd);
    const result adam_ref = train_one_process<res_net>(data, N * B, 2, adam);
    // the references trained: parameters moved away from their initial values
    typename res_net::template model<lm::host> init{lm::seed{7}, lm::threads{1}};
    REQUIRE(max_abs_diff(sgd_ref.parameters, init.get_parameters()) > 1e-3);
    REQUIRE(max_abs_diff(adam_ref.parameters, init.get_parameters()) > 1e-3);
    for (const variant& v : variants()) {
        INFO(v.name << ", " << N << " ranks, rank " << world_rank());
        const result s = train_ranks<res_net>(data, B, 2, sgd, options_of(v));
        CHECK(excess(s.parameters, sgd_ref.parameters) <= 0);
        // the loss each step reports is the global batch's mean, as one process computes it
        REQUIRE(s.losses.size() == sgd_ref.losses.size());
        CHECK(excess(s.losses, sgd_ref.losses) <= 0);
        const result a = train_ranks<res_net>(data, B, 2, adam, options_of(v));
        CHECK(excess(a.parameters, adam_ref.parameters) <= 0);
    }
}

TEST_CASE("synchronised batch norm: N ranks equal one process, parameters and running statistics; unsynchronised "
          "they do not",
          "[mpi][training][batch_norm]") {
    const std::size_t N = static_cast<std::size_t>(world_size()), B = 4, steps = 3;
    const auto data = make_data(N * B * steps, 3);
    const lm::optim::sgd sgd{0.1, 0.9};
    const result ref = train_one_process<bn_net>(data, N * B, 2, sgd);
    for (const variant& v : variants()) {
        INFO(v.name << ", " << N << " ranks, rank " << world_rank());
        lm::comm::mpi_options o = options_of(v);
        o.synchronize_batch_norm = true;
        const result s = train_ranks<bn_net>(data, B, 2, sgd, o);
        CHECK(excess(s.parameters, ref.parameters) <= 0);
        CHECK(excess(s.state, ref.state) <= 0);
        CHECK(excess(s.losses, ref.losses) <= 0);
    }
    // Running statistics stay local by default: each rank normalises with its own batch, so the
    // parameters and statistics differ from one process's (and between ranks).
    const result local = train_ranks<bn_net>(data, B, 2, sgd, lm::comm::mpi_options{});
    CHECK(max_abs_diff(local.state, ref.state) > 1e-4);
    CHECK(max_abs_diff(local.parameters, ref.parameters) > 1e-4);
}
