// LeNet-5 on MNIST, data-parallel over MPI: the same program on one process or many.
//
//   mpirun -np 4 ./distributed_mnist [DATA_DIR] [--epochs N] [--seed N] [--csv FILE] [--checkpoint PREFIX]
//   mpirun -np 5 ./distributed_mnist [DATA_DIR] --groups 2 --servers 1 [...]
//
// Every rank builds the same network; rank 0's parameters are broadcast at the start; each
// step every rank trains on its 64 images of a global batch of 64 x ranks (shards reshuffled
// every epoch), gradients are averaged in fusion buckets overlapped with backward, and the
// learning rate follows the linear scaling rule for the global batch (0.02 per 64 images,
// ramped up over the first two epochs, then cosine decay). Rank 0 prints progress, the global
// throughput and writes the CSV log and checkpoints; evaluation is split over the ranks.
//
// --groups G --servers S trains with the hybrid scheme instead (communicators/hybrid.hpp, Kurth
// et al.): G synchronous groups of (ranks - S) / G ranks exchange weights through S parameter
// servers (the last S ranks), asynchronously between groups; the learning rate then scales with
// a group's batch, the batch of one update. The servers serve inside run(); the program does not
// branch on the role. A hybrid run writes its checkpoint once, at the end (the optimizer state is
// on the servers until then).
//
// The application initialises MPI (lamina never does) and may pass any communicator.
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <lamina/communicators/hybrid.hpp>
#include <lamina/communicators/mpi.hpp>
#include <lamina/lamina.hpp>

#include "example_args.hpp"
#include "lenet5.hpp"

namespace lm = lamina;

namespace {
/// Takes "--groups G" and "--servers S" out of argv (the other options are the examples' own).
struct hybrid_args {
    std::size_t groups = 0, servers = 0;  // groups 0: synchronous comm::mpi
};
hybrid_args take_hybrid_args(int& argc, char** argv) {
    hybrid_args h;
    int out = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string s = argv[i];
        if ((s == "--groups" || s == "--servers") && i + 1 < argc) {
            const std::size_t v = std::strtoul(argv[++i], nullptr, 10);
            (s == "--groups" ? h.groups : h.servers) = v;
        } else {
            argv[out++] = argv[i];
        }
    }
    argc = out;
    return h;
}

template <class Comm>
int train(const example_args& args, const lm::data::mnist_split& data, Comm comm, const char* scheme) {
    int rank = 0, ranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    lenet5::model<lm::host> net{lm::seed{args.seed}, lm::threads{args.threads}};
    if (rank == 0) std::printf("%s%s\n", net.summary().c_str(), scheme);

    const std::size_t epochs = args.epochs ? args.epochs : 10, batch = 64;  // batch per rank
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.02, 0.9, true, 5e-4},
                    lm::schedule::cosine{double(epochs), 0.0}, comm};
    fit.sampling(lm::distributed_sampler::reshuffle_every(1));
    fit.scale_learning_rate({batch, 2.0});  // 0.02 is the rate for 64 images; two warm-up epochs
    if (rank == 0)
        std::printf("batch of one update %zu (%zu per rank), learning rate %.4g scaled by %.3g to %.4g after warm-up\n",
                    batch * std::size_t(fit.ranks_per_update()), batch, fit.optimizer().lr,
                    fit.learning_rate_scale(batch), fit.optimizer().lr * fit.learning_rate_scale(batch));

    double throughput = 0;
    auto report = lm::at_epoch_end{[&](auto& t, const lm::step_info& i) {
        auto ev = t.evaluate(data.test);  // collective over the training ranks: each evaluates its part
        throughput = i.images_per_second;
        if (t.is_root())
            std::printf("  epoch %zu: loss %.4f, held-out accuracy %.2f%%, %.0f images/s (all ranks), lr %.4g\n",
                        i.epoch + 1, i.epoch_loss, 100 * ev.accuracy, i.images_per_second, i.learning_rate);
    }};
    // comm::hybrid's optimizer state is on the servers during the run: its checkpoint is written
    // once, after the run, from the state gathered to every rank.
    constexpr bool hybrid = decltype(fit)::optimizer_on_servers;
    fit.run(data.train, lm::epochs{epochs}, lm::batch{batch}, lm::progress_bar{}, report, lm::csv_log{args.csv},
            lm::checkpoint_every{hybrid ? std::string() : args.checkpoint, 5});
    if (hybrid && !args.checkpoint.empty()) {
        fit.gather_optimizer_state();  // collective
        if (rank == 0) lm::save_checkpoint(args.checkpoint + ".lmck", fit);
    }

    auto ev = fit.evaluate(data.test);
    if (rank == 0)
        std::printf("held-out accuracy %.2f%% (loss %.4f) on %zu images; %d ranks, %.0f images/s global, seed %lu\n",
                    100 * ev.accuracy, ev.loss, ev.samples, ranks, throughput, args.seed);
    return 0;
}

int run(int argc, char** argv) {
    int rank = 0, ranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    const hybrid_args h = take_hybrid_args(argc, argv);
    auto args = parse_example_args(argc, argv);
    auto data = lm::data::mnist_train_test(args.data_dir);  // every rank reads the files
    if (rank == 0) std::printf("data: %s\n%d ranks\n", data.description.c_str(), ranks);
    if (h.groups == 0 && h.servers == 0)
        return train(args, data, lm::comm::mpi{MPI_COMM_WORLD}, "synchronous data parallelism (comm::mpi)");
    const lm::comm::hybrid comm{MPI_COMM_WORLD, lm::comm::groups{h.groups ? h.groups : 1}, lm::comm::servers{h.servers}};
    const std::string scheme = "hybrid: " + std::to_string(comm.group_count()) + " groups of " +
                               std::to_string(comm.group_size()) + " ranks, " + std::to_string(comm.server_count()) +
                               " parameter servers (ranks " + std::to_string(comm.workers()) + ".." +
                               std::to_string(ranks - 1) + ")";
    return train(args, data, comm, scheme.c_str());
}
}  // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int status = 0;
    try {
        status = run(argc, argv);
    } catch (const lamina::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        status = 1;
    }
    // A rank that failed alone would leave the others waiting in a collective.
    if (status) MPI_Abort(MPI_COMM_WORLD, status);
    MPI_Finalize();
    return status;
}
