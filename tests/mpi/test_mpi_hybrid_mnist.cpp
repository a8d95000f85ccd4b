// The hybrid test: 5 processes (2 synchronous groups of 2 ranks and 1 parameter server,
// communicators/hybrid.hpp) train LeNet-5 (examples/common/lenet5.hpp) on MNIST to at least 97%
// held-out accuracy, and every worker ends with the same parameters. MNIST from LAMINA_DATA_DIR
// (8,000 training and 2,000 held-out images when only the test set is there); every rank exits
// with LAMINA_SKIP_CODE when the files are absent. Run: mpirun -np 5 --oversubscribe.
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <lamina/communicators/hybrid.hpp>
#include <lamina/lamina.hpp>

#include "lenet5.hpp"

namespace lm = lamina;

namespace {
int run() {
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char* env = std::getenv("LAMINA_DATA_DIR");
    const std::string dir = env ? env : "";
    bool found = false;
    for (const char* f : {"/t10k-images-idx3-ubyte.gz", "/t10k-images-idx3-ubyte"})
        if (!dir.empty() && std::ifstream(dir + f).good()) found = true;
    if (!found) {
        if (rank == 0) std::printf("SKIPPED: MNIST test files not found in LAMINA_DATA_DIR='%s'\n", dir.c_str());
        return LAMINA_SKIP_CODE;
    }
    if (size != 5) {
        if (rank == 0) std::printf("FAILED: run under mpirun -np 5 (2 groups of 2 and a server), not %d\n", size);
        return 1;
    }
    auto data = lm::data::mnist_train_test(dir);
    lenet5::model<lm::host> net{lm::seed{1}, lm::threads{1}};
    const std::size_t epochs = 12, batch = 32;  // per rank: an update is a group's 64 images
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.025, 0.9, true, 5e-4},
                    // one epoch of warm-up: without it early updates killed every ReLU in 2 runs of 14 (11.5%)
                    lm::schedule::warmup_then<lm::schedule::cosine>{{1, 0.0025}, {double(epochs - 1), 0.0}},
                    lm::comm::hybrid{MPI_COMM_WORLD, lm::comm::groups{2}, lm::comm::servers{1}}};
    const double t0 = MPI_Wtime();
    auto log = lm::at_epoch_end{[&](auto& t, const lm::step_info& i) {
        if (t.is_root()) std::printf("  epoch %zu: group 0's loss %.4f, lr %.4g\n", i.epoch + 1, i.epoch_loss, i.learning_rate);
    }};
    fit.run(data.train, lm::epochs{epochs}, lm::batch{batch}, log);
    const double seconds = MPI_Wtime() - t0;
    const auto ev = fit.evaluate(data.test);
    // every worker holds world rank 0's parameters
    std::vector<float> p = net.get_parameters(), p0 = p;
    MPI_Bcast(p0.data(), static_cast<int>(p0.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
    int same = fit.session().is_server() || p == p0 ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    int ok = same && ev.accuracy >= 0.97 ? 1 : 0;
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);  // rank 0 (a worker) judges the accuracy
    if (rank == 0)
        std::printf("%s: %s; held-out accuracy %.2f%% (loss %.4f) on %zu images after %zu epochs in %.1f s; workers "
                    "%s\n",
                    ok ? "PASSED" : "FAILED", data.description.c_str(), 100 * ev.accuracy, ev.loss, ev.samples, epochs,
                    seconds, same ? "end with the same parameters" : "DIFFER");
    return ok ? 0 : 1;
}
}  // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int status = 0;
    try {
        status = run();
    } catch (const lamina::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        MPI_Abort(MPI_COMM_WORLD, 1);  // a rank that failed alone would leave the others waiting
    }
    MPI_Finalize();
    return status;
}
