// lamina model benchmarks on the Kokkos backend: the same MLP and LeNet-5 as bench_models
// (common/model_specs.hpp), trained and evaluated on kokkos_backend<Space> so the cost of
// portability is visible beside the host backend's rows. Built when LAMINA_WITH_KOKKOS is ON.
//
//   bench_models_kokkos --space default|serial --model mlp|lenet5|all --phase train|infer|all
//                       --threads N --min-time S
//
// --space default is Kokkos::DefaultExecutionSpace (OpenMP with scripts/build_kokkos.sh's Kokkos,
// Serial with Debian's); --threads is informational for Kokkos (OMP_NUM_THREADS sets the OpenMP
// pool; run_bench.py sets it). The JSON lines carry impl "lamina-kokkos-<space name>".
// The batch is uploaded by the trainer per step and predict() copies in and out (host pointers):
// the same edges the host backend's figures include.
#include <lamina/kokkos.hpp>  // Kokkos first, then lamina

#include <cctype>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "common/model_specs.hpp"

namespace lm = lamina;

using mlp_net = lm::sequential<lm::input<784>, lm::dense<512>, lm::relu, lm::dense<512>, lm::relu, lm::dense<10>>;

using lenet5_net = lm::sequential<
    lm::input<1, 28, 28>,
    lm::conv2d<6, 5>, lm::relu, lm::max_pool<2>,
    lm::conv2d<16, 5>, lm::relu, lm::max_pool<2>,
    lm::flatten,
    lm::dense<120>, lm::relu,
    lm::dense<84>, lm::relu,
    lm::dense<10>>;

template <class Space>
std::string impl_name() {
    std::string s = "lamina-kokkos-";
    for (const char* c = Space::name(); *c; ++c) s += static_cast<char>(std::tolower(static_cast<unsigned char>(*c)));
    return s;
}

template <class Net, class Space>
void run_model(const bench::model_spec& spec, const bench::args& a, const bench::protocol& p) {
    using backend = lm::kokkos_backend<Space>;
    using model_t = typename Net::template model<backend>;
    if (model_t::parameter_count != spec.parameters) {
        std::fprintf(stderr, "bench_models_kokkos: %s has %zu parameters, expected %zu\n", spec.name,
                     model_t::parameter_count, spec.parameters);
        std::exit(1);
    }
    bench::synthetic_batch data(spec);
    const std::size_t B = spec.batch;
    model_t net{lm::seed{1}};

    bench::record r;
    r.bench = "models";
    r.impl = impl_name<Space>();
    r.what = spec.name;
    r.shape = spec.shape;
    r.batch = B;
    r.threads = static_cast<unsigned>(Space().concurrency());

    if (a.selects("phase", "train")) {
        lm::dataset_view<float> view{data.x.data(), data.labels.data(), B, spec.input_size, 1};
        lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{bench::sgd_lr, bench::sgd_momentum}};
        std::vector<std::size_t> idx(B);
        std::iota(idx.begin(), idx.end(), std::size_t{0});
        double last_loss = 0;
        r.phase = "train";
        // train_batch returns the loss on the host, so each step ends with the device idle.
        r.t = bench::measure(p, [&] { last_loss = fit.train_batch(view, idx.data(), B, bench::sgd_lr); });
        r.images_per_s = static_cast<double>(B) / (r.t.median_ms * 1e-3);
        std::fprintf(stderr, "%s %s train: final loss %.4f\n", r.impl.c_str(), spec.name, last_loss);
        bench::emit(r);
    }
    if (a.selects("phase", "infer")) {
        std::vector<float> out(B * spec.classes);
        r.phase = "infer";
        r.t = bench::measure(p, [&] { net.predict(data.x.data(), out.data(), B); });
        r.images_per_s = static_cast<double>(B) / (r.t.median_ms * 1e-3);
        std::fprintf(stderr, "%s %s infer: out[0] %.4f\n", r.impl.c_str(), spec.name, static_cast<double>(out[0]));
        bench::emit(r);
    }
}

template <class Space>
bool run_space(const bench::args& a, const bench::protocol& p) {
    bool any = false;
    if (a.selects("model", "mlp")) {
        run_model<mlp_net, Space>(bench::mlp_spec, a, p);
        any = true;
    }
    if (a.selects("model", "lenet5")) {
        run_model<lenet5_net, Space>(bench::lenet5_spec, a, p);
        any = true;
    }
    return any;
}

int main(int argc, char** argv) {
    // The application initialises Kokkos, not lamina. Not from argv: Kokkos would take this
    // program's `--threads N` for its own `--threads=N` and stop; OMP_NUM_THREADS sets the threads.
    Kokkos::ScopeGuard kokkos;
    try {
        bench::args a(argc, argv, {"space", "model", "phase", "threads", "min-time", "warmup", "min-reps"},
                      "options: --space default|serial  --model mlp|lenet5|all  --phase train|infer|all\n"
                      "         --threads N (informational: OMP_NUM_THREADS sets Kokkos OpenMP's threads)\n"
                      "         --min-time S  --warmup N (3)  --min-reps N (5)");
        const auto p = bench::protocol_from(a);
        const std::string phase = a.get("phase", "all"), space = a.get("space", "default");
        if (phase != "all" && phase != "train" && phase != "infer") {
            std::fprintf(stderr, "bench_models_kokkos: unknown --phase '%s'\n", phase.c_str());
            return 2;
        }
        bool any = false;
        if (space == "default")
            any = run_space<Kokkos::DefaultExecutionSpace>(a, p);
#ifdef KOKKOS_ENABLE_SERIAL
        else if (space == "serial")
            any = run_space<Kokkos::Serial>(a, p);
#endif
        else {
            std::fprintf(stderr, "bench_models_kokkos: unknown --space '%s' (default or serial)\n", space.c_str());
            return 2;
        }
        if (!any) {
            std::fprintf(stderr, "bench_models_kokkos: unknown --model '%s'\n", a.get("model", "").c_str());
            return 2;
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_models_kokkos: error: %s\n", e.what());
        return 1;
    }
}
