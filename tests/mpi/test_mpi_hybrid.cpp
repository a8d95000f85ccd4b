// The hybrid scheme (communicators/hybrid.hpp): synchronous groups that meet through parameter
// servers. Run under mpirun -np 3 and -np 5 (tests/mpi/CMakeLists.txt); each case uses the
// layouts the world size allows.
//   - one group with S servers gives comm::mpi's parameters on its ranks (no staleness), for SGD
//     and Adam, with 1 and 2 servers (shards); one group without servers is comm::mpi;
//   - two groups (5 ranks): the weights a group receives contain the other group's update
//     (w0 - lr (gA + gB), derived here), through the raw server and client classes;
//   - a straggler group does not hold the other back (the server's timeline), and every worker
//     ends with the servers' final weights;
//   - a non-finite loss in one group: skipped (the server sees nothing of it) or, with
//     non_finite::stop, that group's error while the rest finish (no hang);
//   - the servers' optimizer state gathered after run() is comm::mpi's, and world rank 0's
//     checkpoint of it resumes in one process;
//   - bad layouts and unsupported combinations fail with the same clear error on every rank.
#include <catch2/catch.hpp>
#include <mpi.h>

#include <lamina/lamina.hpp>
#include <lamina/communicators/hybrid.hpp>

#include "mpi_test_support.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace lm = lamina;

namespace {

using mpi_test::excess;
using mpi_test::res_net;
using mpi_test::world_rank;
using mpi_test::world_size;

lm::comm::mpi_options small_buckets() {
    lm::comm::mpi_options o;
    o.first_bucket_bytes = 256;  // res_net (about 2.7 KB of floats) then has several buckets
    o.bucket_bytes = 1024;
    return o;
}

struct trained {
    std::vector<float> parameters, optimizer_state;  // the state tensors joined
    std::uint64_t optimizer_steps = 0;
};

template <class Comm, class Opt>
trained train_with(const Comm& comm, const lm::dataset<float>& d, std::size_t batch, std::size_t epochs, Opt opt,
                   const std::string& checkpoint = "") {
    typename res_net::template model<lm::host> net{lm::seed{7}, lm::threads{1}};
    // a rate that changes every step: the servers must use the one the group sends
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, opt, lm::schedule::cosine{double(epochs), 0.001}, comm};
    fit.run(d, lm::epochs{epochs}, lm::batch{batch});
    fit.gather_optimizer_state();  // comm::hybrid: the servers' state to every rank (else nothing)
    if (!checkpoint.empty() && world_rank() == 0) lm::save_checkpoint(checkpoint, fit);
    trained t{net.get_parameters(), {}, fit.optimizer_state_ref().steps()};
    for (auto& [name, values] : fit.optimizer_state_ref().save(net.context()))
        t.optimizer_state.insert(t.optimizer_state.end(), values.begin(), values.end());
    return t;
}

/// Sleeps after every step on the ranks of the slow group.
struct straggler {
    bool slow;
    template <class Trainer>
    void on_step_end(Trainer&, const lm::step_info&) {
        if (slow) std::this_thread::sleep_for(std::chrono::milliseconds(60));
    }
};

/// Every rank gets world rank 0's vector.
std::vector<float> from_rank0(std::vector<float> v) {
    unsigned long size = v.size();
    MPI_Bcast(&size, 1, MPI_UNSIGNED_LONG, 0, MPI_COMM_WORLD);
    v.resize(size);
    MPI_Bcast(v.data(), static_cast<int>(v.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
    return v;
}

}  // namespace

TEST_CASE("hybrid: one group with servers equals comm::mpi on its ranks (SGD, Adam; 0, 1 and 2 servers)",
          "[mpi][hybrid]") {
    const int n = world_size(), rank = world_rank();
    const std::size_t B = 3, steps = 3;
    const lm::optim::sgd sgd{0.05, 0.9, true, 1e-3};
    const lm::optim::adam adam{0.01, 0.9, 0.999, 1e-8, 1e-3};
    for (int s = 0; s <= 2; ++s) {
        const int workers = n - s;
        if (workers < 2) continue;
        INFO(n << " ranks: one group of " << workers << " and " << s << " servers; rank " << rank);
        const auto data = mpi_test::hashed_data(std::size_t(workers) * B * steps, 5, 12345);
        // The reference: comm::mpi on the worker ranks alone.
        MPI_Comm workers_comm = MPI_COMM_NULL;
        MPI_Comm_split(MPI_COMM_WORLD, rank < workers ? 0 : MPI_UNDEFINED, rank, &workers_comm);
        trained ref_sgd, ref_adam;
        if (workers_comm != MPI_COMM_NULL) {
            ref_sgd = train_with(lm::comm::mpi{workers_comm, small_buckets()}, data, B, 2, sgd);
            ref_adam = train_with(lm::comm::mpi{workers_comm, small_buckets()}, data, B, 2, adam);
            MPI_Comm_free(&workers_comm);
        }
        const lm::comm::hybrid h{MPI_COMM_WORLD, lm::comm::groups{1}, lm::comm::servers{std::size_t(s)}, small_buckets()};
        const std::string file = "test_mpi_hybrid_adam_" + std::to_string(n) + ".lmck";
        const trained got_sgd = train_with(h, data, B, 2, sgd);
        const trained got_adam = train_with(h, data, B, 2, adam, file);
        if (rank < workers) {
            typename res_net::template model<lm::host> init{lm::seed{7}, lm::threads{1}};
            REQUIRE(excess(ref_sgd.parameters, init.get_parameters()) > 0);  // the reference trained
            CHECK(excess(got_sgd.parameters, ref_sgd.parameters) <= 0);
            CHECK(excess(got_adam.parameters, ref_adam.parameters) <= 0);
        }
        // the servers' optimizer state, gathered to every rank, is comm::mpi's
        const std::vector<float> ref_state = from_rank0(ref_adam.optimizer_state);
        CHECK(excess(got_adam.optimizer_state, ref_state) <= 0);
        CHECK(got_adam.optimizer_steps == 2 * steps);
        // every worker ends with the same weights (the servers' final ones)
        const auto rank0_sgd = from_rank0(got_sgd.parameters);
        if (rank < workers) CHECK(got_sgd.parameters == rank0_sgd);
        // world rank 0's checkpoint resumes in one process with the servers' state
        MPI_Barrier(MPI_COMM_WORLD);
        {
            typename res_net::template model<lm::host> net{lm::seed{3}, lm::threads{1}};
            lm::trainer one{net, lm::loss::softmax_cross_entropy{}, adam};
            lm::load_checkpoint(file, one);
            std::vector<float> state;
            for (auto& [name, values] : one.optimizer_state_ref().save(net.context()))
                state.insert(state.end(), values.begin(), values.end());
            CHECK(excess(state, ref_state) <= 0);
            CHECK(net.get_parameters() == from_rank0(got_adam.parameters));
            CHECK(one.optimizer_state_ref().steps() == 2 * steps);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == 0) std::remove(file.c_str());
    }
}

TEST_CASE("hybrid: the weights a group receives hold the other group's update (raw server and client)",
          "[mpi][hybrid]") {
    if (world_size() != 5) return;  // 2 groups of 2 (roots 0 and 2) and one server (rank 4)
    const int rank = world_rank();
    MPI_Comm c = MPI_COMM_NULL;
    MPI_Comm_dup(MPI_COMM_WORLD, &c);
    const std::vector<lm::comm::bucket_range> buckets = {{5, 3, 0, 1}, {0, 5, 1, 1}};  // backward order
    const auto shards = lm::comm::shard_map::balance({3, 5}, sizeof(double), 1);
    const double lr = 0.5;
    std::vector<double> w0(8), gA(8), gB(8);
    for (int i = 0; i < 8; ++i) {
        w0[i] = 1.0 + 0.25 * i;
        gA[i] = 0.125 * (i + 1);
        gB[i] = -0.375 + 0.0625 * i;
    }
    std::vector<double> after_a(8), after_both(8);
    for (int i = 0; i < 8; ++i) {
        after_a[i] = w0[i] - lr * gA[i];
        after_both[i] = w0[i] - lr * (gA[i] + gB[i]);
    }
    if (rank == 4) {
        lm::comm::parameter_server<double> server(c, {0, 2}, buckets, shards.buckets_of(0));
        std::vector<double> w = w0, g(8, 0.0);
        server.serve(w.data(), g.data(), [&](std::size_t k, double rate) {
            for (std::size_t i = buckets[k].offset; i < buckets[k].offset + buckets[k].count; ++i) w[i] -= rate * g[i];
        });
        CHECK(w == after_both);
        REQUIRE(server.timeline().size() == 2);
        CHECK(server.timeline()[0].group == 0);
        CHECK(server.timeline()[1].group == 1);
        CHECK(server.updates_per_group() == std::vector<std::uint64_t>{1, 1});
    } else if (rank == 0 || rank == 2) {
        lm::comm::parameter_client<double> client(c, {4}, buckets, shards, static_cast<std::size_t>(rank / 2));
        std::vector<double> w(8, 0.0);
        int token = 0;
        if (rank == 2) MPI_Recv(&token, 1, MPI_INT, 0, 99, MPI_COMM_WORLD, MPI_STATUS_IGNORE);  // A's update first
        const std::vector<double>& g = rank == 0 ? gA : gB;
        client.begin(0, lr);
        for (std::size_t k = 0; k < buckets.size(); ++k) client.gradient_ready(k, g.data() + buckets[k].offset);
        client.finish(w.data());
        if (rank == 0) {
            CHECK(w == after_a);  // nothing of B yet
            MPI_Send(&token, 1, MPI_INT, 2, 99, MPI_COMM_WORLD);
        } else {
            CHECK(w == after_both);  // B's gradient met weights that already held A's update
        }
        std::vector<double> final_w(8, 0.0);
        client.done(final_w.data());
        CHECK(final_w == after_both);
    }
    MPI_Comm_free(&c);
}

TEST_CASE("hybrid: a slow group does not hold the other back; every worker ends with the servers' weights",
          "[mpi][hybrid][straggler]") {
    if (world_size() != 5) return;
    const std::size_t B = 2, K = 24;  // K steps per group
    const auto data = mpi_test::hashed_data(4 * B * K, 5, 777);
    typename res_net::template model<lm::host> net{lm::seed{7}, lm::threads{1}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05, 0.9}, lm::schedule::constant{},
                    lm::comm::hybrid{MPI_COMM_WORLD, lm::comm::groups{2}, lm::comm::servers{1}, small_buckets()}};
    const bool slow = !fit.session().is_server() && fit.session().layout().group() == 1;
    straggler straggle{slow};
    fit.run(data, lm::epochs{1}, lm::batch{B}, straggle);
    const std::vector<float> p = net.get_parameters(), p0 = from_rank0(p);
    if (fit.session().is_server()) {
        const auto* server = fit.session().server();
        REQUIRE(server);
        CHECK(server->updates_per_group() == std::vector<std::uint64_t>{K, K});
        std::size_t fast = 0, slow_seen = 0;
        for (const auto& e : server->timeline()) {
            if (e.group == 0 && ++fast == K) break;
            if (e.group == 1) ++slow_seen;
        }
        INFO("the slow group's updates before the fast group's last: " << slow_seen << " of " << K);
        std::printf("straggler: when the fast group made its update %zu of %zu, the slow group had made %zu\n", K, K,
                    slow_seen);
        CHECK(2 * slow_seen < K);
        // the server's shard holds the weights every worker ended with
        for (std::size_t k : server->owned_buckets()) {
            const auto& b = fit.session().plan()[k];
            for (std::size_t i = b.offset; i < b.offset + b.count; ++i) CHECK(p[i] == p0[i]);
        }
    } else {
        CHECK(fit.global_step() == K);
        CHECK(p == p0);
        typename res_net::template model<lm::host> init{lm::seed{7}, lm::threads{1}};
        CHECK(excess(p, init.get_parameters()) > 0);
    }
    // evaluate(): the workers' metrics of the whole set; a server returns an empty evaluation
    const auto ev = fit.evaluate(data);
    if (fit.session().is_server()) CHECK(ev.samples == 0);
    else CHECK(ev.samples == data.size());
}

TEST_CASE("hybrid: a non-finite loss in one group is skipped, or stops that group alone; nothing hangs",
          "[mpi][hybrid][non_finite]") {
    if (world_size() != 5) return;
    const std::size_t B = 2, K = 6;
    auto data = mpi_test::hashed_data(4 * B * K, 5, 4242);
    // Fixed shards: worker 2 (group 1) trains on samples [2BK, 3BK); one of them is NaN.
    data.inputs()[2 * B * K * 72 + 5] = std::numeric_limits<float>::quiet_NaN();
    for (const lm::non_finite policy : {lm::non_finite::skip_batch, lm::non_finite::stop}) {
        typename res_net::template model<lm::host> net{lm::seed{7}, lm::threads{1}};
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05, 0.9}, lm::schedule::constant{},
                        lm::comm::hybrid{MPI_COMM_WORLD, lm::comm::groups{2}, lm::comm::servers{1}, small_buckets()}};
        fit.sampling(lm::distributed_sampler::fixed_shards());
        fit.on_non_finite(policy);
        const bool server = fit.session().is_server();
        const std::size_t group = server ? 2 : fit.session().layout().group();
        const bool stop = policy == lm::non_finite::stop;
        INFO((stop ? "stop" : "skip_batch") << ", rank " << world_rank());
        if (group == 1 && stop) {
            CHECK_THROWS_AS(fit.run(data, lm::epochs{2}, lm::batch{B}), lm::numeric_error);
        } else {
            fit.run(data, lm::epochs{2}, lm::batch{B});
        }
        if (server) {
            const auto& counts = fit.session().server()->updates_per_group();
            CHECK(counts[0] == 2 * K);
            // skip: one batch per epoch dropped, not sent; stop: the group ended at its first
            // NaN batch, somewhere in its first epoch
            if (stop) CHECK(counts[1] < K);
            else CHECK(counts[1] == 2 * K - 2);
            CHECK(fit.session().server()->finished(0));
            CHECK(fit.session().server()->finished(1) == !stop);
        } else if (group == 1 && !stop) {
            CHECK(fit.skipped_steps() == 2);
        }
    }
}

TEST_CASE("hybrid: a second run() serves again and ends with every worker on the servers' weights",
          "[mpi][hybrid]") {
    if (world_size() != 5) return;
    const std::size_t B = 2, K = 4;
    const auto data = mpi_test::hashed_data(4 * B * K, 5, 99);
    typename res_net::template model<lm::host> net{lm::seed{7}, lm::threads{1}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::adam{0.01}, lm::schedule::constant{},
                    lm::comm::hybrid{MPI_COMM_WORLD, lm::comm::groups{2}, lm::comm::servers{1}, small_buckets()}};
    fit.run(data, lm::epochs{1}, lm::batch{B});
    const std::vector<float> first = net.get_parameters();
    fit.run(data, lm::epochs{1}, lm::batch{B});
    const std::vector<float> p = net.get_parameters(), p0 = from_rank0(p);
    if (fit.session().is_server()) {
        CHECK(fit.session().server()->updates_per_group() == std::vector<std::uint64_t>{2 * K, 2 * K});
    } else {
        CHECK(fit.global_step() == 2 * K);
        CHECK(p == p0);
        CHECK(excess(p, first) > 0);  // the second run trained on
    }
}

TEST_CASE("hybrid: bad layouts and unsupported combinations fail with the same clear error on every rank",
          "[mpi][hybrid][errors]") {
    const int n = world_size();
    const std::string N = std::to_string(n);
    auto message_of = [](auto&& f) -> std::string {
        try {
            f();
        } catch (const lm::argument_error& e) {
            return e.what();
        }
        return "no error";
    };
    CHECK(message_of([&] { lm::comm::hybrid h{MPI_COMM_WORLD, lm::comm::groups{0}, lm::comm::servers{1}}; }) ==
          "lamina: comm::hybrid{" + N + " ranks, groups{0}, servers{1}}: needs at least one group");
    // n - 1 workers never divide into n groups
    CHECK(message_of([&] { lm::comm::hybrid h{MPI_COMM_WORLD, lm::comm::groups{std::size_t(n)}, lm::comm::servers{1}}; }) ==
          "lamina: comm::hybrid{" + N + " ranks, groups{" + N +
              "}, servers{1}}: the world size must be groups x ranks per group + servers, but " + N +
              " - 1 servers leaves " + std::to_string(n - 1) + " workers, not a multiple of " + N + " groups");
    CHECK(message_of([&] { lm::comm::hybrid h{MPI_COMM_WORLD, lm::comm::groups{1}, lm::comm::servers{std::size_t(n)}}; }) ==
          "lamina: comm::hybrid{" + N + " ranks, groups{1}, servers{" + N +
              "}}: the world size must be groups x ranks per group + servers, but " + N + " - " + N +
              " servers leaves no workers");
    if (n % 2 == 0)
        CHECK(message_of([&] { lm::comm::hybrid h{MPI_COMM_WORLD, lm::comm::groups{2}, lm::comm::servers{0}}; })
                  .find("several groups exchange weights through parameter servers") != std::string::npos);
    // Two servers but the default buckets (1 MiB) hold res_net in one: a server would own nothing.
    if (n >= 3) {
        const std::string e = message_of([&] {
            typename res_net::template model<lm::host> net{lm::seed{7}, lm::threads{1}};
            lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05}, lm::schedule::constant{},
                            lm::comm::hybrid{MPI_COMM_WORLD, lm::comm::groups{1}, lm::comm::servers{2}}};
        });
        CHECK(e.find("2 parameter servers but only 1 fusion buckets") != std::string::npos);
    }
    // Checkpoints: refused before training, on every rank; save_checkpoint writes nothing.
    const auto data = mpi_test::hashed_data(std::size_t(n) * 4, 5, 1);
    typename res_net::template model<lm::host> net{lm::seed{7}, lm::threads{1}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.05}, lm::schedule::constant{},
                    lm::comm::hybrid{MPI_COMM_WORLD, lm::comm::groups{1}, lm::comm::servers{1}, small_buckets()}};
    CHECK(message_of([&] { fit.run(data, lm::epochs{1}, lm::batch{2}, lm::checkpoint_every{"hybrid_test", 1}); })
              .find("comm::hybrid cannot write checkpoints") != std::string::npos);
    CHECK_THROWS_WITH(lm::save_checkpoint("hybrid_test.lmck", fit),
                      Catch::Contains("call gather_optimizer_state() on every rank after run() first"));
    std::size_t idx[2] = {0, 1};
    CHECK(message_of([&] { fit.train_batch(data, idx, 2, 0.1); }).find("comm::hybrid trains with run() only") !=
          std::string::npos);
    // an empty prefix is accepted (checkpoints off), and the trainer still trains
    fit.run(data, lm::epochs{1}, lm::batch{2}, lm::checkpoint_every{"", 1});
}
