// The MPI communicator's costs (include/lamina/communicators/mpi.hpp), under mpirun:
//
//   mpirun -np 2 ./bench_allreduce [--model lenet5|resnet20] [--reps N] [--batch B]
//
// 1. fused: one step's gradient exchange through lamina's session (gradient reports in
//    backward's order -> fusion buckets -> non-blocking allreduces -> waits, averaging),
//    without the compute, against one raw blocking MPI_Allreduce of the same bytes; interleaved
//    A B A B. Target (issue 12): the fused path at most 5% slower. The overlapped exchange runs
//    with Open MPI's MPI_Iallreduce (allreduce_algorithm::library) and with lamina's own
//    halving/doubling schedule (communicators/allreduce_schedule.hpp).
// 2. step: a whole training step (trainer::train_batch, B images per rank) with overlap on and
//    off, and with overlap through lamina's schedule, interleaved.
// Each figure is the median over repetitions of the slowest rank's time. Rank 0 prints one
// JSON line per measurement. Figures on a shared machine are a smoke test only.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <lamina/communicators/mpi.hpp>
#include <lamina/lamina.hpp>
#include <lamina/models/resnet.hpp>

namespace lm = lamina;

using lenet5 = lm::sequential<lm::input<1, 28, 28>, lm::conv2d<6, 5, 1, 0, lm::init::he_uniform>, lm::relu,
                              lm::max_pool<2>, lm::conv2d<16, 5, 1, 0, lm::init::he_uniform>, lm::relu,
                              lm::max_pool<2>, lm::flatten, lm::dense<120, lm::init::he_uniform>, lm::relu,
                              lm::dense<84, lm::init::he_uniform>, lm::relu, lm::dense<10>>;

namespace {

int rank_ = 0, ranks_ = 1;

/// The slowest rank's seconds for f().
template <class F>
double timed(F&& f) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    f();
    double t = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return t;
}
double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
void report(const char* model, const char* what, std::size_t bytes, double seconds, const char* extra = "") {
    if (rank_ == 0)
        std::printf("{\"bench\":\"allreduce\",\"model\":\"%s\",\"what\":\"%s\",\"ranks\":%d,\"bytes\":%zu,"
                    "\"median_ms\":%.6g%s}\n",
                    model, what, ranks_, bytes, seconds * 1e3, extra);
}

template <class Net, std::size_t InputSize>
void bench(const char* name, int reps, std::size_t batch) {
    using model_t = typename Net::template model<lm::host>;
    using T = float;
    // ---- 1. the fused exchange alone against a raw allreduce of the same bytes ----
    // Each way of driving the exchange (overlap with progress between layers, overlap with a
    // communication thread, no overlap: blocking per bucket) against a raw blocking
    // MPI_Allreduce and a raw MPI_Iallreduce + MPI_Wait of the same bytes, all interleaved.
    {
        model_t net{lm::seed{1}, lm::threads{1}};
        net.plan(1);  // the model allocates its gradient buffer with its first training plan
        struct mode {
            const char* name;
            bool overlap;
            lm::comm::progress how;
            lm::comm::allreduce_algorithm algorithm = lm::comm::allreduce_algorithm::library;
        };
        std::vector<mode> modes = {{"fused_overlap_between_layers", true, lm::comm::progress::between_layers},
                                   {"fused_overlap_halving_doubling", true, lm::comm::progress::between_layers,
                                    lm::comm::allreduce_algorithm::halving_doubling},
                                   {"fused_no_overlap", false, lm::comm::progress::between_layers}};
        int level = 0;
        MPI_Query_thread(&level);
        if (level >= MPI_THREAD_MULTIPLE) modes.push_back({"fused_overlap_thread", true, lm::comm::progress::thread});
        std::vector<std::unique_ptr<lm::comm::mpi_session<model_t>>> sessions;
        for (const mode& m : modes) {
            lm::comm::mpi_options o;
            o.overlap = m.overlap;
            o.progress = m.how;
            o.allreduce_algorithm = m.algorithm;
            sessions.push_back(std::make_unique<lm::comm::mpi_session<model_t>>(lm::comm::mpi{MPI_COMM_WORLD, o}, net));
        }
        // one report per leaf, last leaf first, as backward makes them
        struct leaf {
            std::size_t offset, count;
        };
        std::vector<leaf> leaves;
        std::size_t layer = ~std::size_t(0);
        for (const auto& s : net.parameter_segments()) {
            if (s.layer == layer) leaves.back().count += s.count;
            else leaves.push_back({s.offset, s.count});
            layer = s.layer;
        }
        const std::size_t n = model_t::parameter_count;
        T* g = net.gradients();
        std::vector<T> raw(n, T(1));
        double metrics[2] = {0, 0};
        auto fused = [&](lm::comm::mpi_session<model_t>& session) {
            session.begin_step(metrics, 2);
            lm::gradient_sink<T>* sink = session.sink();
            if (sink)
                for (auto it = leaves.rbegin(); it != leaves.rend(); ++it) sink->ready(g + it->offset, it->count);
            session.end_backward();
            session.finish_metrics();
            session.complete([](std::size_t) {});
        };
        auto plain = [&] { MPI_Allreduce(MPI_IN_PLACE, raw.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); };
        auto nonblocking = [&] {
            MPI_Request r;
            MPI_Iallreduce(MPI_IN_PLACE, raw.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r);
            MPI_Wait(&r, MPI_STATUS_IGNORE);
        };
        for (auto& s : sessions) fused(*s);  // warm-up
        plain();
        nonblocking();
        std::vector<std::vector<double>> t(sessions.size());
        std::vector<double> tp, tn;
        for (int r = 0; r < reps; ++r) {
            for (std::size_t k = 0; k < sessions.size(); ++k) t[k].push_back(timed([&] { fused(*sessions[k]); }));
            tp.push_back(timed(plain));
            tn.push_back(timed(nonblocking));
        }
        const double raw_s = median(tp);
        for (std::size_t k = 0; k < sessions.size(); ++k) {
            const double f = median(t[k]);
            char extra[128];
            std::snprintf(extra, sizeof extra, ",\"buckets\":%zu,\"overhead_vs_raw\":%.4f", sessions[k]->plan().size(),
                          raw_s > 0 ? f / raw_s - 1.0 : 0.0);
            report(name, modes[k].name, n * sizeof(T), f, extra);
        }
        report(name, "raw_allreduce", n * sizeof(T), raw_s);
        report(name, "raw_iallreduce_wait", n * sizeof(T), median(tn));
    }
    // ---- 2. whole training steps with and without overlap ----
    {
        lm::dataset<T> data(batch, InputSize, 1);
        for (std::size_t i = 0; i < data.inputs().size(); ++i) data.inputs()[i] = T(((i * 7919) % 255) / 255.0);
        for (std::size_t i = 0; i < batch; ++i) data.targets()[i] = T(i % 10);
        std::vector<std::size_t> idx(batch);
        for (std::size_t i = 0; i < batch; ++i) idx[i] = i;
        auto make = [&](bool overlap, lm::comm::allreduce_algorithm algorithm) {
            lm::comm::mpi_options o;
            o.overlap = overlap;
            o.allreduce_algorithm = algorithm;
            return lm::comm::mpi{MPI_COMM_WORLD, o};
        };
        using algorithm = lm::comm::allreduce_algorithm;
        model_t net_a{lm::seed{1}, lm::threads{1}}, net_b{lm::seed{1}, lm::threads{1}}, net_c{lm::seed{1}, lm::threads{1}};
        lm::trainer on{net_a, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.01, 0.9}, make(true, algorithm::library)};
        lm::trainer off{net_b, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.01, 0.9}, make(false, algorithm::library)};
        lm::trainer hd{net_c, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.01, 0.9},
                       make(true, algorithm::halving_doubling)};
        on.train_batch(data, idx.data(), batch, 0.01);
        off.train_batch(data, idx.data(), batch, 0.01);
        hd.train_batch(data, idx.data(), batch, 0.01);
        std::vector<double> a, b, c;
        for (int r = 0; r < reps; ++r) {
            a.push_back(timed([&] { on.train_batch(data, idx.data(), batch, 0.01); }));
            b.push_back(timed([&] { off.train_batch(data, idx.data(), batch, 0.01); }));
            c.push_back(timed([&] { hd.train_batch(data, idx.data(), batch, 0.01); }));
        }
        char extra[96];
        std::snprintf(extra, sizeof extra, ",\"batch_per_rank\":%zu", batch);
        report(name, "step_overlap", model_t::parameter_count * sizeof(T), median(a), extra);
        report(name, "step_no_overlap", model_t::parameter_count * sizeof(T), median(b), extra);
        report(name, "step_overlap_halving_doubling", model_t::parameter_count * sizeof(T), median(c), extra);
    }
}

}  // namespace

int main(int argc, char** argv) {
    int provided = 0;  // MPI_THREAD_MULTIPLE for the communication-thread mode, when the library has it
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks_);
    std::string model = "lenet5";
    int reps = 20;
    std::size_t batch = 32;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--model" && i + 1 < argc) model = argv[++i];
        else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
        else if (a == "--batch" && i + 1 < argc) batch = static_cast<std::size_t>(std::max(1, std::atoi(argv[++i])));
        else {
            if (rank_ == 0) std::fprintf(stderr, "usage: %s [--model lenet5|resnet20] [--reps N] [--batch B]\n", argv[0]);
            MPI_Finalize();
            return 2;
        }
    }
    int status = 0;
    try {
        if (model == "lenet5") bench<lenet5, 784>("lenet5", reps, batch);
        else if (model == "resnet20") bench<lm::models::resnet20<10, 3, 32, 32>, 3 * 32 * 32>("resnet20", reps, batch);
        else {
            if (rank_ == 0) std::fprintf(stderr, "unknown model '%s' (lenet5 or resnet20)\n", model.c_str());
            status = 2;
        }
    } catch (const lm::error& e) {
        std::fprintf(stderr, "rank %d: error: %s\n", rank_, e.what());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Finalize();
    return status;
}
