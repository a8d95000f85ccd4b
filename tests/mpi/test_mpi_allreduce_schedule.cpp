// lamina's own allreduce (allreduce_algorithm::halving_doubling, communicators/allreduce_schedule.hpp):
// the sum of every bucket equals the sum derived in closed form from what each rank contributed,
// on odd sizes (1, 7, 1000003 values, buckets smaller than the rank count), float and double,
// several buckets in flight at once and over two steps; and training with it is exact (N ranks
// with batch B equal one process with batch N*B). Run under mpirun -np 2, 3 (not a power of two:
// the folded ranks) and 4 (tests/mpi/CMakeLists.txt).
#include <catch2/catch.hpp>
#include <mpi.h>

#include <lamina/lamina.hpp>
#include <lamina/communicators/mpi.hpp>

#include "mpi_test_support.hpp"

#include <cstddef>
#include <vector>

namespace lm = lamina;

namespace {

using mpi_test::world_rank;
using mpi_test::world_size;

// Rank r contributes v(r, i) = (r + 1) * (i % 13 + 1) + r * r at element i of bucket b (+ b):
// small integers, so every partial sum is exact in float and the order of the adds cannot
// matter. Over ranks 0..N-1 the sum is N(N+1)/2 * (i % 13 + 1) + (N-1)N(2N-1)/6 + N b.
double contribution(int r, std::size_t i, std::size_t b) {
    return double(r + 1) * double(i % 13 + 1) + double(r) * double(r) + double(b);
}
double expected_sum(int n, std::size_t i, std::size_t b) {
    const double N = n;
    return N * (N + 1) / 2 * double(i % 13 + 1) + (N - 1) * N * (2 * N - 1) / 6 + N * double(b);
}

struct comm_dup {
    MPI_Comm c = MPI_COMM_NULL;
    comm_dup() { MPI_Comm_dup(MPI_COMM_WORLD, &c); }
    ~comm_dup() { MPI_Comm_free(&c); }
};

template <class T>
void check_sums(const std::vector<std::size_t>& counts) {
    const int rank = world_rank(), n = world_size();
    comm_dup dup;
    lm::comm::allreduce_exchange<T> exchange(dup.c, counts, true, lm::comm::progress::between_layers,
                                             lm::comm::allreduce_algorithm::halving_doubling);
    std::vector<std::vector<T>> data(counts.size());
    for (int step = 0; step < 2; ++step) {
        INFO("step " << step << ", " << n << " ranks, rank " << rank);
        for (std::size_t b = 0; b < counts.size(); ++b) {
            data[b].resize(counts[b]);
            for (std::size_t i = 0; i < counts[b]; ++i) data[b][i] = static_cast<T>(contribution(rank, i, b + step));
        }
        // all buckets start before any is waited for; progress between them, as between layers
        for (std::size_t b = 0; b < counts.size(); ++b) {
            exchange.start(b, data[b].data(), counts[b]);
            exchange.progress();
        }
        for (std::size_t b = 0; b < counts.size(); ++b) {
            exchange.wait(b);
            std::size_t wrong = 0, first_wrong = 0;
            for (std::size_t i = 0; i < counts[b]; ++i)
                if (data[b][i] != static_cast<T>(expected_sum(n, i, b + step)) && wrong++ == 0) first_wrong = i;
            INFO("bucket " << b << " of " << counts[b] << " values: " << wrong << " wrong, first at " << first_wrong);
            CHECK(wrong == 0);
        }
        CHECK_FALSE(exchange.busy());
    }
}

}  // namespace

TEST_CASE("halving_doubling allreduce: sums equal the closed-form sum (odd sizes, buckets in flight, float and double)",
          "[mpi][allreduce_schedule]") {
    // 1 and 2 values: fewer than the ranks (empty blocks); 1000003: prime, blocks of unequal size
    const std::vector<std::size_t> counts = {1, 7, 2, 1000003, 3, 1};
    SECTION("float") { check_sums<float>(counts); }
    SECTION("double") { check_sums<double>(counts); }
    SECTION("one bucket at a time") {
        for (std::size_t c : {std::size_t(1), std::size_t(7), std::size_t(1000003)}) check_sums<float>({c});
    }
}

TEST_CASE("halving_doubling allreduce: 2 log2 P rounds, plus 2 for the ranks folded in when P is not a power of two",
          "[mpi][allreduce_schedule]") {
    const int rank = world_rank(), n = world_size();
    int p2 = 1, log2p = 0;
    while (p2 * 2 <= n) p2 *= 2, ++log2p;
    const int extra = n - p2;
    // the first 2*extra ranks pair up: the even one only gives its buffer and takes the sum (2
    // rounds), the odd one folds it in, runs the power-of-two schedule and hands the sum back
    const std::size_t expected = rank >= 2 * extra ? std::size_t(2 * log2p)
                                 : rank % 2 == 0   ? std::size_t(2)
                                                   : std::size_t(2 * log2p + 2);
    comm_dup dup;
    lm::comm::halving_doubling_allreduce<float> schedule(dup.c, {1000, 1});
    CHECK(schedule.rounds(0) == expected);
    CHECK(schedule.rounds(1) == expected);
}

TEST_CASE("halving_doubling allreduce: a bucket started with another size than planned is an error",
          "[mpi][allreduce_schedule]") {
    comm_dup dup;
    lm::comm::halving_doubling_allreduce<double> schedule(dup.c, {10});
    std::vector<double> v(11, 1.0);
    CHECK_THROWS_WITH(schedule.start(0, v.data(), 11), Catch::Contains("bucket 0 has 11 values, planned for 10"));
}

namespace {

lm::dataset<float> make_data(std::size_t n) { return mpi_test::hashed_data(n, 5, 4242); }

template <class Opt>
std::vector<float> train(const lm::dataset<float>& d, std::size_t batch, Opt opt, const lm::comm::mpi_options* o) {
    typename mpi_test::res_net::template model<lm::host> net{lm::seed{11}, lm::threads{1}};
    if (o) {
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, opt, lm::comm::mpi{MPI_COMM_WORLD, *o}};
        fit.run(d, lm::epochs{2}, lm::batch{batch});
    } else {
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, opt};
        fit.run(d, lm::epochs{2}, lm::batch{batch});
    }
    return net.get_parameters();
}

}  // namespace

TEST_CASE("halving_doubling allreduce: N ranks with batch B equal one process with batch N*B (SGD and Adam)",
          "[mpi][allreduce_schedule][training]") {
    const std::size_t N = static_cast<std::size_t>(world_size()), B = 3, steps = 3;
    const auto data = make_data(N * B * steps);
    const lm::optim::sgd sgd{0.05, 0.9, true, 1e-3};
    const lm::optim::adam adam{0.01, 0.9, 0.999, 1e-8, 1e-3};
    const auto sgd_ref = train(data, N * B, sgd, nullptr);
    const auto adam_ref = train(data, N * B, adam, nullptr);
    typename mpi_test::res_net::template model<lm::host> init{lm::seed{11}, lm::threads{1}};
    REQUIRE(mpi_test::excess(sgd_ref, init.get_parameters()) > 0);  // the reference trained
    struct variant {
        const char* name;
        std::size_t first, rest;
    };
    for (const variant v : {variant{"small buckets, several in flight", 256, 1024}, variant{"one bucket", 1 << 20, 25 << 20},
                            variant{"thresholds smaller than one tensor", 3, 101}}) {
        INFO(v.name << ", " << N << " ranks, rank " << world_rank());
        lm::comm::mpi_options o;
        o.allreduce_algorithm = lm::comm::allreduce_algorithm::halving_doubling;
        o.first_bucket_bytes = v.first;
        o.bucket_bytes = v.rest;
        CHECK(mpi_test::excess(train(data, B, sgd, &o), sgd_ref) <= 0);
        CHECK(mpi_test::excess(train(data, B, adam, &o), adam_ref) <= 0);
    }
}
