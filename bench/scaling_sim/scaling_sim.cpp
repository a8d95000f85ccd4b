// The simulated scaling study's program: each SimGrid SMPI rank plays one data-parallel worker of a
// model given by its per-layer profile (layer, forward s, backward s, parameters; made by
// profile_to_layers.py from bench_models' profiler trace), and runs lamina's real gradient path
// on it: fusion_plan and bucket_fill (communicators/fusion_buckets.hpp) and allreduce_exchange
// with the halving_doubling schedule (communicators/mpi_exchange.hpp). Compute is injected with
// smpi_execute_benched instead of executed. bench/run_scaling_study.py builds and runs it.
//
//   smpicxx -std=c++17 -O2 -DSMPI_NO_OVERRIDE_MALLOC -I include bench/scaling_sim/scaling_sim.cpp -o scaling_sim
//   smpirun -np 64 -platform bench/scaling_sim/fat_tree_512.xml -hostfile HOSTFILE
//           --cfg=smpi/host-speed:1Gf --cfg=smpi/simulate-computation:no ...
//           ./scaling_sim --profile bench/scaling_sim/resnet50_b32.csv [options]
// options: --speedup F, --straggler-rank R --straggler-factor X, --warmup N --steps N,
//          --first-bucket-mib M --bucket-mib M (mpi_options' 1 and 25 MiB by default), --reduce-gbps G,
//          --buffers real|shared, --check-step, --platform NAME (a label for the JSON),
//          --progress-slices N (a what-if: N progress() calls per layer's backward instead of one);
//          hybrid scheme: --groups G --servers S [--slow-group g] (see simulate_hybrid below).
//
// One step mirrors the call order of mpi_session (communicators/mpi.hpp), which it cannot drive
// itself (it trains a lamina model; this one is a table): forward (the sum of the forward times,
// plus the loss); backward walks the layers in reverse, injecting each layer's backward time,
// then reporting its gradient to bucket_fill, starting every bucket that is complete in order
// and calling the exchange's progress() (as mpi_session::report does); end_backward starts the
// rest; the metrics' sum (a blocking MPI_Allreduce of two doubles here, where mpi_session
// starts an MPI_Iallreduce at begin_step: SMPI's is naive, one message per pair of ranks);
// then bucket by bucket: wait for its sum, inject the optimizer's update of that bucket
// (optimizer_s scaled by its share of the parameters), progress() (mpi_session::complete).
//
// What is modelled, not simulated:
//   - the reductions' CPU time: the schedule adds each received half into the bucket; here that
//     costs (3 * bytes) / --reduce-gbps of simulated time (read two, write one) on the rank doing
//     it, at the moment it happens (inside progress() or wait()); the program's own CPU time is not
//     simulated (run with smpi/simulate-computation:no: this machine is shared, its timings of
//     the adds would be noise);
//   - --speedup F divides every injected time (layers, optimizer, reductions) by F: a node F times
//     faster, on the same network (GPU-class nodes: the case where the network matters).
// Buffers: --buffers real allocates each rank's gradients and scratch and fills them with values
// whose sum over the ranks is known in closed form, checked after every step (the CI run);
// --buffers shared puts them in SMPI_SHARED_MALLOC memory that all simulated ranks share (512
// ranks x 102 MB of ResNet-50 gradients would not fit): the timing is the same, the values are
// meaningless and the adds are skipped.
//
// Output: one JSON line (rank 0) with the simulated step time (the slowest rank's, mean over
// the measured steps), the compute it contains, the efficiency T(1 rank, compute only) / T(N),
// and the time spent waiting for buckets after backward (mean over ranks and steps).
// Exit status 1 when a sum is wrong or (--check-step) a step took less than its injected compute;
// the JSON says both too ("sums", "step_at_least_compute": smpirun does not always pass the status on).
#include <mpi.h>
#include <smpi/smpi.h>

#include <lamina/communicators/fusion_buckets.hpp>
#include <lamina/communicators/mpi_exchange.hpp>
// The hybrid scheme's server and client (the hybrid branch's headers): --groups/--servers need them.
#if __has_include(<lamina/communicators/parameter_client.hpp>)
#include <lamina/communicators/parameter_client.hpp>
#include <lamina/communicators/parameter_server.hpp>
#include <lamina/communicators/parameter_shards.hpp>
#define LAMINA_SCALING_SIM_HYBRID 1
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace comm = lamina::comm;

namespace {

struct layer {
    std::string name;
    double forward_s = 0, backward_s = 0;
    std::size_t parameters = 0, offset = 0;
};

struct profile {
    std::string model;
    std::size_t batch = 0;
    double loss_s = 0, optimizer_s = 0;
    std::vector<layer> layers;
    double forward() const {
        double s = 0;
        for (const auto& l : layers) s += l.forward_s;
        return s;
    }
    double backward() const {
        double s = 0;
        for (const auto& l : layers) s += l.backward_s;
        return s;
    }
    std::size_t parameters() const {
        std::size_t s = 0;
        for (const auto& l : layers) s += l.parameters;
        return s;
    }
};

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "scaling_sim: %s\n", what.c_str());
    MPI_Abort(MPI_COMM_WORLD, 2);
    std::abort();
}

/// Splits one CSV line (fields may be double-quoted, holding commas).
std::vector<std::string> csv_fields(const std::string& line) {
    std::vector<std::string> out(1);
    bool quoted = false;
    for (char c : line) {
        if (c == '"') quoted = !quoted;
        else if (c == ',' && !quoted) out.emplace_back();
        else out.back() += c;
    }
    return out;
}

profile load(const std::string& path) {
    std::ifstream in(path);
    if (!in) fail("cannot read the profile '" + path + "'");
    profile p;
    std::string line;
    bool header = false;
    std::size_t offset = 0;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        if (line[0] == '#') {  // "# key=value"
            const auto eq = line.find('=');
            if (eq == std::string::npos) continue;
            const std::string key = line.substr(2, eq - 2), value = line.substr(eq + 1);
            if (key == "model") p.model = value;
            else if (key == "batch") p.batch = std::stoul(value);
            else if (key == "loss_s") p.loss_s = std::stod(value);
            else if (key == "optimizer_s") p.optimizer_s = std::stod(value);
            continue;
        }
        const auto f = csv_fields(line);
        if (!header) {
            if (f.size() != 5 || f[0] != "layer" || f[2] != "forward_s" || f[3] != "backward_s" || f[4] != "parameters")
                fail(path + ": expected the header layer,name,forward_s,backward_s,parameters, got '" + line + "'");
            header = true;
            continue;
        }
        if (f.size() != 5) fail(path + ": a row with " + std::to_string(f.size()) + " fields: '" + line + "'");
        layer l;
        l.name = f[1];
        l.forward_s = std::stod(f[2]);
        l.backward_s = std::stod(f[3]);
        l.parameters = std::stoul(f[4]);
        l.offset = offset;
        offset += l.parameters;
        if (std::stoul(f[0]) != p.layers.size()) fail(path + ": layers must be listed in order from 0: '" + line + "'");
        p.layers.push_back(l);
    }
    if (p.layers.empty()) fail(path + ": no layers");
    return p;
}

struct options {
    std::string profile_path, platform = "unnamed";
    double speedup = 1, straggler_factor = 1;
    int straggler_rank = -1;
    int groups = 0, servers = 0, slow_group = -1;  // hybrid: groups > 0
    int progress_slices = 1;
    int warmup = 1, steps = 2;
    double bucket_mib = 25, first_bucket_mib = 1;
    double reduce_gbps = 10;
    bool real_buffers = false, check_step = false;
};

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) fail("option " + a + " needs a value");
            return argv[++i];
        };
        if (a == "--profile") o.profile_path = value();
        else if (a == "--platform") o.platform = value();
        else if (a == "--speedup") o.speedup = std::stod(value());
        else if (a == "--straggler-rank") o.straggler_rank = std::stoi(value());
        else if (a == "--straggler-factor") o.straggler_factor = std::stod(value());
        else if (a == "--progress-slices") o.progress_slices = std::stoi(value());
        else if (a == "--groups") o.groups = std::stoi(value());
        else if (a == "--servers") o.servers = std::stoi(value());
        else if (a == "--slow-group") o.slow_group = std::stoi(value());
        else if (a == "--warmup") o.warmup = std::stoi(value());
        else if (a == "--steps") o.steps = std::stoi(value());
        else if (a == "--bucket-mib") o.bucket_mib = std::stod(value());
        else if (a == "--first-bucket-mib") o.first_bucket_mib = std::stod(value());
        else if (a == "--reduce-gbps") o.reduce_gbps = std::stod(value());
        else if (a == "--buffers") {
            const std::string v = value();
            if (v != "real" && v != "shared") fail("--buffers takes real or shared, got '" + v + "'");
            o.real_buffers = v == "real";
        } else if (a == "--check-step") o.check_step = true;
        else fail("unknown option '" + a + "' (see the head of bench/scaling_sim/scaling_sim.cpp)");
    }
    if (o.profile_path.empty()) fail("--profile FILE.csv is required");
    if (!(o.speedup > 0) || !(o.straggler_factor > 0) || !(o.reduce_gbps > 0) || o.steps < 1 || o.warmup < 0 ||
        o.progress_slices < 1)
        fail("--speedup, --straggler-factor and --reduce-gbps must be positive, --steps and --progress-slices at least 1");
    return o;
}

/// What the halving_doubling schedule does with a received half: the add's memory traffic as
/// simulated time (and the add itself with real buffers); scratch where the buffers are.
struct modelled_sum {
    double seconds_per_element = 0;
    bool real = true;
    void reduce(float* into, const float* from, std::size_t n) const {
        if (real)
            for (std::size_t i = 0; i < n; ++i) into[i] += from[i];
        smpi_execute_benched(seconds_per_element * double(n));
    }
    float* allocate(std::size_t n) const {
        if (!n) return nullptr;
        return real ? new float[n] : static_cast<float*>(SMPI_SHARED_MALLOC(n * sizeof(float)));
    }
    void deallocate(float* p, std::size_t) const {
        if (!p) return;
        if (real) delete[] p;
        else SMPI_SHARED_FREE(p);
    }
};

// Rank r's gradient value at element i: small integers, exact in float for the ranks we run;
// their sum over N ranks is N(N+1)/2 * (i % 7 + 1).
float contribution(int r, std::size_t i) { return float(r + 1) * float(i % 7 + 1); }
float expected_sum(int n, std::size_t i) { return float(n) * float(n + 1) / 2 * float(i % 7 + 1); }

comm::fusion_plan plan_of(const profile& p, const options& o) {
    std::vector<lamina::parameter_segment> segments;
    for (std::size_t l = 0; l < p.layers.size(); ++l)
        if (p.layers[l].parameters)
            segments.push_back({p.layers[l].name, l, p.layers[l].offset, p.layers[l].parameters, true});
    const auto mib = [](double m) { return static_cast<std::size_t>(m * 1048576.0); };
    return comm::fusion_plan::build(segments, sizeof(float), mib(o.first_bucket_mib), mib(o.bucket_mib));
}

float* allocate_buffer(std::size_t n, bool real) {
    return real ? new float[n] : static_cast<float*>(SMPI_SHARED_MALLOC(n * sizeof(float)));
}
void free_buffer(float* p, bool real) {
    if (real) delete[] p;
    else SMPI_SHARED_FREE(p);
}

/// One data-parallel worker of a group of ranks (all ranks, or a hybrid group): what
/// mpi_session holds (the fusion plan, bucket_fill, the exchange on a gradient duplicate of the
/// group's communicator) and one step in mpi_session's call order.
class worker {
public:
    /// `slow`: the factor on this rank's profile times (a straggler's factor / the speedup).
    worker(const profile& p, const options& o, MPI_Comm group, double slow)
        : p_(p), o_(o), group_(group), slow_(slow), plan_(plan_of(p, o)), fill_(&plan_) {
        MPI_Comm_rank(group, &rank_);
        MPI_Comm_size(group, &size_);
        std::vector<std::size_t> counts;
        for (const auto& b : plan_.buckets()) counts.push_back(b.count);
        MPI_Comm_dup(group, &gradients_comm_);
        modelled_sum reduction{3.0 * sizeof(float) / (o.reduce_gbps * 1e9) / o.speedup, o.real_buffers};
        exchange_ = std::make_unique<comm::allreduce_exchange<float, modelled_sum>>(
            gradients_comm_, counts, true, comm::progress::between_layers, comm::allreduce_algorithm::halving_doubling,
            reduction);
        grads_ = allocate_buffer(plan_.total(), o.real_buffers);
    }
    ~worker() {
        exchange_.reset();
        free_buffer(grads_, o_.real_buffers);
        MPI_Comm_free(&gradients_comm_);
    }
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    const comm::fusion_plan& plan() const noexcept { return plan_; }
    float* gradients() noexcept { return grads_; }

    /// One step; update(k) runs when bucket k's sum has arrived (mpi_session::complete).
    template <class Update>
    void step(bool measured, Update&& update) {
        const std::size_t total = plan_.total();
        if (o_.real_buffers)
            for (std::size_t i = 0; i < total; ++i) grads_[i] = contribution(rank_, i);
        const double t0 = MPI_Wtime();
        fill_.reset();
        std::size_t launched = 0;
        auto launch_ready = [&](bool during_backward) {
            for (; launched < fill_.ready_prefix(); ++launched) {
                const comm::bucket_range& b = plan_[launched];
                if (during_backward && measured) ++started_during_backward;
                exchange_->start(launched, grads_ + b.offset, b.count);
            }
        };
        smpi_execute_benched((p_.forward() + p_.loss_s) * slow_);
        for (std::size_t l = p_.layers.size(); l-- > 0;) {
            const layer& L = p_.layers[l];
            // --progress-slices N > 1 (not what mpi_session does): N - 1 more progress() calls
            // inside each layer's backward, as a progress hook inside long kernels would make
            for (int slice = 1; slice < o_.progress_slices; ++slice) {
                smpi_execute_benched(L.backward_s * slow_ / o_.progress_slices);
                exchange_->progress();
            }
            smpi_execute_benched(L.backward_s * slow_ / o_.progress_slices);
            if (!L.parameters) continue;
            fill_.report(L.offset, L.parameters);  // mpi_session::report
            launch_ready(true);
            exchange_->progress();
        }
        fill_.complete_all();  // end_backward
        launch_ready(false);
        const double backward_end = MPI_Wtime();
        double metrics[2] = {1.0, double(rank_)};  // finish_metrics (see the head of this file)
        MPI_Allreduce(MPI_IN_PLACE, metrics, 2, MPI_DOUBLE, MPI_SUM, group_);
        double updating = 0;
        const double w0 = MPI_Wtime();
        for (std::size_t k = 0; k < plan_.size(); ++k) {  // complete(update)
            exchange_->wait(k);
            const double u0 = MPI_Wtime();
            update(k);
            updating += MPI_Wtime() - u0;
            exchange_->progress();
        }
        const double t1 = MPI_Wtime();
        if (measured) {
            wait_sum += t1 - w0 - updating;
            backward_end_sum += backward_end - t0;
        }
        if (o_.real_buffers)
            for (std::size_t i = 0; i < total; ++i)
                if (grads_[i] != expected_sum(size_, i)) ++wrong;
    }
    /// The optimizer's update of bucket k on this rank: its share of optimizer_s.
    void local_update(std::size_t k) const {
        smpi_execute_benched(p_.optimizer_s * slow_ * double(plan_[k].count) / double(plan_.total()));
    }

    double wait_sum = 0, backward_end_sum = 0;  // over the measured steps
    std::size_t wrong = 0, started_during_backward = 0;

private:
    const profile& p_;
    const options& o_;
    MPI_Comm group_, gradients_comm_ = MPI_COMM_NULL;
    double slow_;
    int rank_ = 0, size_ = 1;
    comm::fusion_plan plan_;
    comm::bucket_fill fill_;
    std::unique_ptr<comm::allreduce_exchange<float, modelled_sum>> exchange_;
    float* grads_ = nullptr;
};

double compute_per_step(const profile& p, const options& o) {
    return (p.forward() + p.loss_s + p.backward() + p.optimizer_s) / o.speedup;
}
std::string straggler_json(const options& o) {
    if (o.straggler_rank < 0 && o.slow_group < 0) return "null";
    return std::string("{\"") + (o.slow_group >= 0 ? "group" : "rank") + "\":" +
           std::to_string(o.slow_group >= 0 ? o.slow_group : o.straggler_rank) + ",\"factor\":" +
           std::to_string(o.straggler_factor) + "}";
}

/// Synchronous data parallelism over every rank.
int simulate(const options& o, int rank, int size) {
    const profile p = load(o.profile_path);
    if (o.real_buffers && size > 4096) fail("--buffers real: the check's sums are exact only up to 4096 ranks");
    // how much slower this rank computes than the profile (the straggler), how much faster the node
    const double slow = (rank == o.straggler_rank ? o.straggler_factor : 1.0) / o.speedup;
    worker w(p, o, MPI_COMM_WORLD, slow);
    const double compute = compute_per_step(p, o);
    for (int s = 0; s < o.warmup; ++s) w.step(false, [&](std::size_t k) { w.local_update(k); });
    MPI_Barrier(MPI_COMM_WORLD);
    const double start = MPI_Wtime();
    for (int s = 0; s < o.steps; ++s) w.step(true, [&](std::size_t k) { w.local_update(k); });
    const double mine = (MPI_Wtime() - start) / o.steps;

    double slowest = 0, wait_total = 0, wrong_total = 0, mine_wrong = double(w.wrong);
    MPI_Reduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&w.wait_sum, &wait_total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&mine_wrong, &wrong_total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    int status = 0;
    if (rank == 0) {
        const double wait = wait_total / size / o.steps;
        std::printf("{\"model\":\"%s\",\"batch_per_rank\":%zu,\"ranks\":%d,\"platform\":\"%s\",\"speedup\":%g,"
                    "\"straggler\":%s,\"scheme\":\"sync\",\"algorithm\":\"halving_doubling\",\"buckets\":%zu,\"parameters\":%zu,"
                    "\"step_s\":%.6g,\"compute_s\":%.6g,\"efficiency\":%.4f,\"wait_after_backward_s\":%.6g,"
                    "\"backward_end_s\":%.6g,\"buckets_started_during_backward\":%.3g,\"reduce_gbps\":%g,\"steps\":%d,"
                    "\"progress_slices\":%d,\"buffers\":\"%s\",\"step_at_least_compute\":%s%s}\n",
                    p.model.c_str(), p.batch, size, o.platform.c_str(), o.speedup, straggler_json(o).c_str(),
                    w.plan().size(), w.plan().total(), slowest, compute, compute / slowest, wait,
                    w.backward_end_sum / o.steps, double(w.started_during_backward) / o.steps, o.reduce_gbps, o.steps,
                    o.progress_slices, o.real_buffers ? "real" : "shared", slowest >= compute - 1e-9 ? "true" : "false",
                    o.real_buffers ? (wrong_total == 0 ? ",\"sums\":\"correct\"" : ",\"sums\":\"WRONG\"") : "");
        std::fflush(stdout);
        if (o.real_buffers && wrong_total != 0) {
            std::fprintf(stderr, "scaling_sim: %.0f gradient values were not the sum over the ranks\n", wrong_total);
            status = 1;
        }
        if (o.check_step && slowest < compute - 1e-9) {
            std::fprintf(stderr, "scaling_sim: the simulated step (%g s) is shorter than its injected compute (%g s)\n",
                         slowest, compute);
            status = 1;
        }
    }
    MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return status;
}

#if LAMINA_SCALING_SIM_HYBRID
/// The hybrid scheme (Kurth et al.; the layout and call order of comm::hybrid, hybrid_session): ranks
/// [0, W) are G groups of m = W / G workers, each group synchronous on its own communicator
/// (the worker above), group g's root g*m; ranks [W, W + S) are the parameter servers, each
/// owning whole buckets (shard_map::balance). A group step: forward, backward with the group's
/// overlapped allreduce; the root hands each summed bucket to its server as it arrives
/// (parameter_client), the server injects the optimizer's update of those buckets and answers
/// with weights, the root waits for all weights and broadcasts them in its group. Workers do no
/// optimizer step. --slow-group g makes every rank of group g compute --straggler-factor slower.
int simulate_hybrid(const options& o, int rank, int size) {
    const profile p = load(o.profile_path);
    const int S = o.servers, G = o.groups, W = size - S;
    if (S < 1 || W < G || W % G != 0)
        fail("--groups " + std::to_string(G) + " --servers " + std::to_string(S) + " on " + std::to_string(size) +
             " ranks: needs at least one server and (ranks - servers) a multiple of the groups");
    const int m = W / G;
    const bool is_server = rank >= W;
    const int group = is_server ? -1 : rank / m;
    MPI_Comm messages = MPI_COMM_NULL, side = MPI_COMM_NULL, group_comm = MPI_COMM_NULL;
    MPI_Comm_dup(MPI_COMM_WORLD, &messages);
    MPI_Comm_split(MPI_COMM_WORLD, is_server ? 1 : 0, rank, &side);
    if (!is_server) MPI_Comm_split(side, group, rank, &group_comm);
    const comm::fusion_plan plan = plan_of(p, o);
    std::vector<std::size_t> counts;
    for (const auto& b : plan.buckets()) counts.push_back(b.count);
    const comm::shard_map shards = comm::shard_map::balance(counts, sizeof(float), static_cast<std::size_t>(S));
    const std::size_t total = plan.total();
    float* weights = allocate_buffer(total, o.real_buffers);
    const double compute = compute_per_step(p, o);
    double samples_per_s = 0, step_s = 0, wait_s = 0;  // this worker's (0 on servers)
    double updates = 0;                                   // this server's
    double weights_wait_s = 0, broadcast_s = 0;  // per measured step, roots: waiting for weights, broadcasting them
    std::size_t wrong = 0;
    if (is_server) {
        std::vector<int> roots;
        for (int g = 0; g < G; ++g) roots.push_back(g * m);
        float* grads = allocate_buffer(total, o.real_buffers);
        {
            comm::parameter_server<float> server(messages, roots, plan.buckets(), shards.buckets_of(std::size_t(rank - W)));
            server.serve(weights, grads, [&](std::size_t k, double) {
                smpi_execute_benched(p.optimizer_s / o.speedup * double(plan[k].count) / double(total));
            });
            updates = double(server.updates());
        }
        free_buffer(grads, o.real_buffers);
    } else {
        const double slow = (group == o.slow_group ? o.straggler_factor : 1.0) / o.speedup;
        worker w(p, o, group_comm, slow);
        std::unique_ptr<comm::parameter_client<float>> client;
        if (rank == group * m) {
            std::vector<int> servers;
            for (int s = 0; s < S; ++s) servers.push_back(W + s);
            client = std::make_unique<comm::parameter_client<float>>(messages, servers, plan.buckets(), shards,
                                                                     std::size_t(group));
        }
        std::uint64_t step_count = 0;
        auto step = [&](bool measured) {
            w.step(measured, [&](std::size_t k) {  // hybrid_session::complete_remote
                if (!client) return;
                if (k == 0) client->begin(step_count, 0.1);
                client->gradient_ready(k, w.gradients() + plan[k].offset);
            });
            const double t0 = MPI_Wtime();
            if (client) client->finish(weights);
            const double t1 = MPI_Wtime();
            MPI_Bcast(weights, static_cast<int>(total), MPI_FLOAT, 0, group_comm);
            if (measured && client) {
                weights_wait_s += (t1 - t0) / o.steps;
                broadcast_s += (MPI_Wtime() - t1) / o.steps;
            }
            ++step_count;
        };
        for (int s = 0; s < o.warmup; ++s) step(false);
        MPI_Barrier(side);  // the workers start the measured steps together (servers are serving)
        const double start = MPI_Wtime();
        for (int s = 0; s < o.steps; ++s) step(true);
        step_s = (MPI_Wtime() - start) / o.steps;
        samples_per_s = double(p.batch) / step_s;
        wait_s = w.wait_sum / o.steps;
        wrong = w.wrong;
        if (client) client->done(weights);  // the final weights, once every group is done
        MPI_Bcast(weights, static_cast<int>(total), MPI_FLOAT, 0, group_comm);
    }
    double throughput = 0, slowest = 0, fastest = 0, wait_total = 0, updates_total = 0, wrong_total = 0;
    double weights_wait_total = 0, broadcast_total = 0;
    MPI_Reduce(&weights_wait_s, &weights_wait_total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&broadcast_s, &broadcast_total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    const double mine_wrong = double(wrong), fast_mine = is_server ? 1e300 : step_s;
    MPI_Reduce(&samples_per_s, &throughput, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&step_s, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&fast_mine, &fastest, 1, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
    MPI_Reduce(&wait_s, &wait_total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&updates, &updates_total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&mine_wrong, &wrong_total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    int status = 0;
    if (rank == 0) {
        // weak-scaling efficiency: samples/s of all workers over W times one rank's compute-only rate
        const double efficiency = throughput / (double(W) * double(p.batch) / compute);
        std::printf("{\"model\":\"%s\",\"batch_per_rank\":%zu,\"ranks\":%d,\"workers\":%d,\"groups\":%d,\"servers\":%d,"
                    "\"platform\":\"%s\",\"speedup\":%g,\"straggler\":%s,\"scheme\":\"hybrid\",\"buckets\":%zu,"
                    "\"parameters\":%zu,\"samples_per_s\":%.6g,\"step_s\":%.6g,\"fastest_group_step_s\":%.6g,"
                    "\"compute_s\":%.6g,\"efficiency\":%.4f,\"wait_after_backward_s\":%.6g,\"root_weights_wait_s\":%.6g,"
                    "\"broadcast_s\":%.6g,\"server_updates\":%.0f,"
                    "\"steps\":%d,\"buffers\":\"%s\",\"step_at_least_compute\":%s%s}\n",
                    p.model.c_str(), p.batch, size, W, G, S, o.platform.c_str(), o.speedup, straggler_json(o).c_str(),
                    plan.size(), total, throughput, slowest, fastest, compute, efficiency, wait_total / W,
                    weights_wait_total / G, broadcast_total / G, updates_total, o.steps, o.real_buffers ? "real" : "shared",
                    fastest >= compute * (1.0 - 1e-9) - p.optimizer_s / o.speedup ? "true" : "false",
                    o.real_buffers ? (wrong_total == 0 ? ",\"sums\":\"correct\"" : ",\"sums\":\"WRONG\"") : "");
        std::fflush(stdout);
        if (o.real_buffers && wrong_total != 0) status = 1;
    }
    MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
    free_buffer(weights, o.real_buffers);
    if (group_comm != MPI_COMM_NULL) MPI_Comm_free(&group_comm);
    MPI_Comm_free(&side);
    MPI_Comm_free(&messages);
    return status;
}
#endif

}  // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const options o = parse(argc, argv);
    int status = 0;
    if (o.groups > 0) {
#if LAMINA_SCALING_SIM_HYBRID
        status = simulate_hybrid(o, rank, size);
#else
        fail("--groups: this build has no hybrid scheme (lamina/communicators/parameter_client.hpp not found)");
#endif
    } else {
        status = simulate(o, rank, size);
    }
    MPI_Finalize();
    return status;
}
