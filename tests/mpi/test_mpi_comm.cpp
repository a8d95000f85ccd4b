// The communicator's behaviour besides the averaging itself (tests/mpi/test_mpi_training.cpp):
//   - overlap: with overlap on, the first bucket goes to MPI while backward still runs; the
//     observer sees the first layer's gradient still holding a sentinel the test wrote before
//     the step (backward writes that gradient last); with overlap off it is already written;
//   - mismatched architectures: every rank throws the same error, within seconds;
//   - a checkpoint written by 2 ranks resumes on 1 rank and on all ranks of the run, and both
//     continue exactly as an uninterrupted one-process run with the same global batch;
//   - distributed steps 2..N allocate nothing (counted with a replaced global operator new;
//     the MPI library's own malloc is not counted).
// Run under mpirun -np 2 and -np 4 (tests/mpi/CMakeLists.txt).
#include <catch2/catch.hpp>
#include <mpi.h>

#include <lamina/lamina.hpp>
#include <lamina/communicators/mpi.hpp>

#include "mpi_test_support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <unistd.h>
#include <vector>

static std::atomic<long> g_allocations{0};
void* operator new(std::size_t n) {
    ++g_allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
// free() matches the malloc() above; GCC cannot see that the two replacements pair up.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace lm = lamina;

namespace {

using mpi_test::res_net;
using mpi_test::world_rank;
using mpi_test::world_size;
using mpi_test::excess;
using other_net = lm::sequential<lm::input<2, 6, 6>, lm::conv2d<4, 3, 1, 1, lm::init::he_uniform>, lm::relu,
                                 lm::residual<lm::sequential<lm::conv2d<4, 3, 1, 1, lm::init::he_uniform>, lm::relu,
                                                             lm::conv2d<4, 3, 1, 1, lm::init::he_uniform>>>,
                                 lm::relu, lm::max_pool<2>, lm::flatten, lm::dense<7, lm::init::he_uniform>, lm::relu,
                                 lm::dense<5>>;  // tanh -> relu: the same sizes, another network
using bn_net = mpi_test::bn_net_with<5>;
using wider_net = lm::sequential<lm::input<2, 6, 6>, lm::conv2d<4, 3, 1, 1, lm::init::he_uniform>, lm::relu,
                                 lm::max_pool<2>, lm::flatten, lm::dense<9>, lm::tanh, lm::dense<5>>;


lm::dataset<float> make_data(std::size_t n, std::size_t classes) { return mpi_test::hashed_data(n, classes, 777); }


/// At each bucket start: was the first layer's gradient (written last by backward) still the
/// sentinel?
struct sentinel_observer final : lm::comm::observer {
    const float* first_layer = nullptr;
    std::size_t first_layer_count = 0;
    std::vector<bool> sentinel_at_start;
    std::vector<std::size_t> finished;
    void bucket_started(std::size_t, std::size_t, std::size_t, bool) override {
        bool all = true;
        for (std::size_t i = 0; first_layer && i < first_layer_count; ++i) all = all && first_layer[i] == 1234.5f;
        sentinel_at_start.push_back(all);
    }
    void bucket_finished(std::size_t k) override { finished.push_back(k); }
};

struct lr_log {
    std::vector<double> lr;
    template <class Trainer>
    void on_step_end(Trainer&, const lm::step_info& i) {
        lr.push_back(i.learning_rate);
    }
};

/// Same string on every rank?
bool same_on_every_rank(const std::string& s) {
    std::uint64_t h = lm::comm::fingerprint(s), lo = h, hi = h;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

}  // namespace

TEST_CASE("an overlapped run hands the first bucket to MPI before backward ends", "[mpi][overlap]") {
    const auto data = make_data(16, 5);
    for (bool overlap : {true, false}) {
        INFO("overlap " << overlap << ", rank " << world_rank());
        res_net::model<lm::host> net{lm::seed{7}, lm::threads{1}};
        sentinel_observer obs;
        lm::comm::mpi_options o;
        o.overlap = overlap;
        o.first_bucket_bytes = 1;  // the last layer alone
        o.bucket_bytes = 1 << 20;
        o.observer = &obs;
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05}, lm::comm::mpi{MPI_COMM_WORLD, o}};
        const auto& segs = net.parameter_segments();
        const std::size_t first_count = segs[0].count + segs[1].count;  // conv weight and bias
        REQUIRE(segs[2].offset == first_count);
        obs.first_layer_count = first_count;
        const std::size_t idx[4] = {0, 1, 2, 3};
        fit.train_batch(data, idx, 4, 0.05);  // the model allocates its gradients in its first step
        for (int step = 0; step < 2; ++step) {
            obs.first_layer = net.gradients();
            std::fill(net.gradients(), net.gradients() + first_count, 1234.5f);
            obs.sentinel_at_start.clear();
            obs.finished.clear();
            fit.train_batch(data, idx, 4, 0.05);
            REQUIRE(fit.session().plan().size() == 2);
            REQUIRE(obs.sentinel_at_start.size() == 2);
            // bucket 0 (the last dense layer): before backward reached layer 0 only with overlap
            CHECK(obs.sentinel_at_start[0] == overlap);
            CHECK_FALSE(obs.sentinel_at_start[1]);  // bucket 1 holds layer 0: written before it starts
            CHECK(obs.finished == std::vector<std::size_t>{0, 1});
            // with overlap every bucket starts inside a gradient report (the last one when layer 0
            // reports, before backward returns); without, all start after backward
            CHECK(fit.session().last_step().started_during_backward == (overlap ? 2u : 0u));
            // the gradient the optimizer used is no longer the sentinel, on every rank alike
            CHECK(net.gradients()[0] != 1234.5f);
        }
    }
}

TEST_CASE("ranks that built different networks all fail with the same clear error, quickly", "[mpi][architecture]") {
    const int rank = world_rank();
    auto attempt = [&](auto& net) {
        std::string what;
        try {
            lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05},
                            lm::comm::mpi{MPI_COMM_WORLD}};
        } catch (const lm::error& e) {
            what = e.what();
        }
        return what;
    };
    for (int variant = 0; variant < 2; ++variant) {
        INFO("variant " << variant << ", rank " << rank);
        const auto t0 = std::chrono::steady_clock::now();
        std::string what;
        const int odd = world_size() - 1;  // the last rank builds the other network
        if (rank != odd) {
            res_net::model<lm::host> net{lm::seed{1}, lm::threads{1}};
            what = attempt(net);
        } else if (variant == 0) {
            other_net::model<lm::host> net{lm::seed{1}, lm::threads{1}};  // same sizes, other activation
            what = attempt(net);
        } else {
            wider_net::model<lm::host> net{lm::seed{1}, lm::threads{1}};
            what = attempt(net);
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        CHECK_THAT(what, Catch::Contains("ranks built different networks") &&
                             Catch::Contains("rank " + std::to_string(odd) + " differs"));
        CHECK(same_on_every_rank(what));
        CHECK(seconds < 10);
    }
    // and ranks that agree do not fail
    res_net::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    CHECK_NOTHROW(lm::trainer{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05},
                              lm::comm::mpi{MPI_COMM_WORLD}});
}

TEST_CASE("a checkpoint written on 2 ranks resumes on 1 rank and on all ranks, as an uninterrupted run",
          "[mpi][checkpoint]") {
    const std::size_t N = static_cast<std::size_t>(world_size()), G = 8;  // global batch
    REQUIRE(G % N == 0);
    const auto data = make_data(6 * G, 5);
    const lm::optim::adam adam{0.01, 0.9, 0.999, 1e-8, 1e-3};
    // rank 0's process id names the file on every rank
    long id = static_cast<long>(getpid());
    MPI_Bcast(&id, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    const std::string path = "lamina_test_mpi_ckpt_" + std::to_string(id) + ".lmck";

    // the reference: one process, batch G, two epochs
    res_net::model<lm::host> ref_net{lm::seed{5}, lm::threads{1}};
    lm::trainer ref{ref_net, lm::loss::softmax_cross_entropy{}, adam};
    ref.run(data, lm::epochs{2}, lm::batch{G});
    const auto want = ref_net.get_parameters();

    // epoch 1 on ranks 0 and 1 (batch G / 2 each); rank 0 writes the checkpoint
    MPI_Comm pair = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, world_rank() < 2 ? 0 : MPI_UNDEFINED, world_rank(), &pair);
    if (pair != MPI_COMM_NULL) {
        res_net::model<lm::host> net{lm::seed{5}, lm::threads{1}};
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, adam, lm::comm::mpi{pair}};
        fit.run(data, lm::epochs{1}, lm::batch{G / 2});
        if (fit.is_root()) lm::save_checkpoint(path, fit);
    }
    if (pair != MPI_COMM_NULL) MPI_Comm_free(&pair);
    MPI_Barrier(MPI_COMM_WORLD);

    SECTION("on every rank of the run, batch G / N each") {
        res_net::model<lm::host> net{lm::seed{99}, lm::threads{1}};  // another seed: the checkpoint restores it
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, adam, lm::comm::mpi{MPI_COMM_WORLD}};
        if (world_rank() == 0) lm::load_checkpoint(path, fit);  // rank 0 reads; run() broadcasts
        fit.run(data, lm::epochs{1}, lm::batch{G / N});
        CHECK(fit.epoch() == 2);
        CHECK(excess(net.get_parameters(), want) <= 0);
    }
    SECTION("on one rank, batch G") {
        res_net::model<lm::host> net{lm::seed{99}, lm::threads{1}};
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, adam};
        lm::load_checkpoint(path, fit);
        fit.run(data, lm::epochs{1}, lm::batch{G});
        CHECK(fit.epoch() == 2);
        CHECK(excess(net.get_parameters(), want) <= 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank() == 0) std::remove(path.c_str());
}

TEST_CASE("distributed training steps after the first allocate nothing", "[mpi][allocation]") {
    const auto data = make_data(16, 5);
    int level = 0;
    MPI_Query_thread(&level);
    for (int variant = 0; variant < 3; ++variant) {
        if (variant == 2 && level < MPI_THREAD_MULTIPLE) continue;
        INFO("variant " << variant << ", rank " << world_rank());
        bn_net::model<lm::host> net{lm::seed{7}, lm::threads{1}};
        lm::comm::mpi_options o;
        o.first_bucket_bytes = 64;
        o.bucket_bytes = 256;  // several buckets
        o.overlap = variant != 1;
        o.progress = variant == 2 ? lm::comm::progress::thread : lm::comm::progress::between_layers;
        o.synchronize_batch_norm = true;
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::adam{0.01}, lm::comm::mpi{MPI_COMM_WORLD, o}};
        const std::size_t idx[4] = {0, 1, 2, 3};
        fit.train_batch(data, idx, 4, 0.01);
        REQUIRE(fit.session().plan().size() > 2);
        const long before = g_allocations.load();
        for (int step = 0; step < 4; ++step) fit.train_batch(data, idx, 4, 0.01);
        CHECK(g_allocations.load() - before == 0);
    }
}

TEST_CASE("evaluate() on N ranks gives the whole dataset's metrics, as one process does", "[mpi][metrics]") {
    const auto data = make_data(23, 5);  // not a multiple of the ranks
    res_net::model<lm::host> net{lm::seed{3}, lm::threads{1}};
    res_net::model<lm::host> alone{lm::seed{3}, lm::threads{1}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05}, lm::comm::mpi{MPI_COMM_WORLD}};
    lm::trainer one{alone, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05}};
    const auto a = fit.evaluate(data, lm::batch{4});
    const auto b = one.evaluate(data, lm::batch{4});
    CHECK(a.samples == 23);
    CHECK(a.loss == Approx(b.loss).epsilon(1e-6));
    CHECK(a.accuracy == Approx(b.accuracy).epsilon(1e-12));
    // the loss is the mean of per-sample losses, computed here one sample at a time
    double sum = 0;
    for (std::size_t i = 0; i < data.size(); ++i) {
        sum += one.evaluate(data.view().slice(i, i + 1), lm::batch{1}).loss;
    }
    CHECK(a.loss == Approx(sum / 23).epsilon(1e-5));
}

TEST_CASE("the linear scaling rule ramps the learning rate to ranks x over the warm-up, on the global batch",
          "[mpi][scaling]") {
    const std::size_t N = static_cast<std::size_t>(world_size()), B = 2;
    const auto data = make_data(N * B * 4, 5);  // 4 steps per epoch
    res_net::model<lm::host> net{lm::seed{3}, lm::threads{1}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.01}, lm::comm::mpi{MPI_COMM_WORLD}};
    fit.scale_learning_rate({B, 1.0});  // the base rate is for B images: k = N
    CHECK(fit.learning_rate_scale(B) == Approx(double(N)));
    lr_log record;
    fit.run(data, lm::epochs{2}, lm::batch{B}, record);
    const auto& lr = record.lr;
    REQUIRE(lr.size() == 8);
    for (std::size_t s = 0; s < 8; ++s) {
        const double t = double(s) / 4.0;  // epochs done before step s
        const double want = 0.01 * (t < 1.0 ? 1.0 + (double(N) - 1.0) * t : double(N));
        CHECK(lr[s] == Approx(want).epsilon(1e-12));
    }
}

TEST_CASE("the CSV log and checkpoints are written by rank 0 only", "[mpi][root]") {
    const std::size_t N = static_cast<std::size_t>(world_size());
    const auto data = make_data(N * 4, 5);
    long id = static_cast<long>(getpid());
    MPI_Bcast(&id, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    // every rank names its own file: only rank 0's may appear
    const std::string path =
        "lamina_test_mpi_log_" + std::to_string(id) + "_rank" + std::to_string(world_rank()) + ".csv";
    {
        res_net::model<lm::host> net{lm::seed{3}, lm::threads{1}};
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.01}, lm::comm::mpi{MPI_COMM_WORLD}};
        int columns = 0;  // a column is computed on every rank (it may be collective)
        lm::csv_log log{path};
        log.column<decltype(fit)>("held_out", [&](auto& t) {
            ++columns;
            return t.evaluate(data).accuracy;
        });
        fit.run(data, lm::epochs{2}, lm::batch{2}, log, lm::checkpoint_every{path + ".ckpt"});
        CHECK(columns == 2);
    }
    for (const std::string& file : {path, path + ".ckpt.lmck"}) {
        INFO(file);
        std::FILE* f = std::fopen(file.c_str(), "r");
        CHECK((f != nullptr) == (world_rank() == 0));
        if (f) {
            std::fclose(f);
            std::remove(file.c_str());
        }
    }
}

TEST_CASE("a non-finite loss on one rank is decided alike on every rank", "[mpi][non_finite]") {
    const std::size_t idx[2] = {0, 1};
    for (bool skip : {false, true}) {
        INFO("skip " << skip << ", rank " << world_rank());
        auto data = make_data(4, 5);
        if (world_rank() == 0) data.inputs()[3] = std::numeric_limits<float>::quiet_NaN();  // rank 0 only
        res_net::model<lm::host> net{lm::seed{3}, lm::threads{1}};
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05}, lm::comm::mpi{MPI_COMM_WORLD}};
        const auto before = net.get_parameters();
        if (skip) {
            fit.on_non_finite(lm::non_finite::skip_batch);
            const double l = fit.train_batch(data, idx, 2, 0.05);
            CHECK_FALSE(std::isfinite(l));  // the mean over the ranks
            CHECK(fit.skipped_steps() == 1);
            CHECK(net.get_parameters() == before);
            // and the next (finite) step runs on every rank
            const std::size_t fine[2] = {1, 2};
            if (world_rank() == 0) data.inputs()[3] = 0.5f;
            CHECK(std::isfinite(fit.train_batch(data, fine, 2, 0.05)));
            CHECK(net.get_parameters() != before);
        } else {
            CHECK_THROWS_AS(fit.train_batch(data, idx, 2, 0.05), lm::numeric_error);
            CHECK(net.get_parameters() == before);
        }
    }
}

namespace {
/// A gradient path of the test's own: the default allreduce, counting what it is handed.
struct counting_exchange final : lm::comm::bucket_exchange<float> {
    lm::comm::allreduce_exchange<float> inner;
    std::vector<std::size_t> started;
    counting_exchange(MPI_Comm c, const std::vector<std::size_t>& counts)
        : inner(c, counts, true, lm::comm::progress::between_layers) {}
    void start(std::size_t k, float* data, std::size_t count) override {
        started.push_back(k);
        inner.start(k, data, count);
    }
    void progress() override { inner.progress(); }
    void wait(std::size_t k) override { inner.wait(k); }
    bool busy() const override { return inner.busy(); }
};
}  // namespace

TEST_CASE("the gradient path can be replaced (the hook a parameter-server scheme uses)", "[mpi][exchange]") {
    const auto data = make_data(8, 5);
    res_net::model<lm::host> net{lm::seed{7}, lm::threads{1}}, ref_net{lm::seed{7}, lm::threads{1}};
    lm::comm::mpi_options o;
    o.first_bucket_bytes = 64;
    o.bucket_bytes = 512;
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05}, lm::comm::mpi{MPI_COMM_WORLD, o}};
    lm::trainer ref{ref_net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05}, lm::comm::mpi{MPI_COMM_WORLD, o}};
    auto mine = std::make_unique<counting_exchange>(fit.session().gradient_communicator(), fit.session().bucket_counts());
    counting_exchange* seen = mine.get();
    fit.session().set_exchange(std::move(mine));
    const std::size_t idx[2] = {0, 1};
    fit.train_batch(data, idx, 2, 0.05);
    ref.train_batch(data, idx, 2, 0.05);
    std::vector<std::size_t> order(fit.session().plan().size());
    for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
    CHECK(order.size() > 2);
    CHECK(seen->started == order);  // every bucket, in order
    CHECK(net.get_parameters() == ref_net.get_parameters());
    CHECK_THROWS_WITH(fit.session().set_exchange(nullptr), Catch::Contains("null"));
}
