// FMA peak of this CPU at lamina's compiled vector width: independent chains of fused
// multiply-adds on xsimd batches (the width lamina's kernels use: AVX2 with the default
// -mavx2 -mfma, AVX-512 with -march=native on a CPU that has it), on 1 thread and on
// --threads threads. The ceiling against which GEMM and convolution figures are read.
//
//   bench_peak --threads 2 --min-time S
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "common/bench_util.hpp"

namespace {

using V = xsimd::batch<float>;
constexpr int chains = 12;  // more independent accumulators than FMA latency x ports on current x86 cores
constexpr long iters = 1 << 20;

// Returns a value that depends on every accumulator, so nothing is optimised away.
float fma_loop(float seed) {
    V acc[chains];
    for (int i = 0; i < chains; ++i) acc[i] = V(seed + static_cast<float>(i));
    const V a(0.999999f), b(1e-7f);
    for (long it = 0; it < iters; ++it)
        for (int i = 0; i < chains; ++i) acc[i] = xsimd::fma(acc[i], a, b);
    V s = acc[0];
    for (int i = 1; i < chains; ++i) s += acc[i];
    alignas(64) float t[V::size];
    s.store_aligned(t);
    float total = 0;
    for (float v : t) total += v;
    return total;
}

}  // namespace

int main(int argc, char** argv) {
    bench::args a(argc, argv, {"threads", "min-time"}, "bench_peak --threads N (2) --min-time S (1)");
    const unsigned max_threads = static_cast<unsigned>(a.num("threads", 2));
    bench::protocol p;
    p.min_time = a.num("min-time", 1.0);
    const double flops = 2.0 * chains * V::size * static_cast<double>(iters);
    volatile float sink = 0;
    std::vector<unsigned> counts{1};
    if (max_threads > 1) counts.push_back(max_threads);
    for (unsigned nt : counts) {
        bench::timing t = bench::measure(p, [&] {
            std::vector<std::thread> ts;
            std::vector<float> out(nt);
            for (unsigned i = 1; i < nt; ++i) ts.emplace_back([&, i] { out[i] = fma_loop(static_cast<float>(i)); });
            out[0] = fma_loop(0.f);
            for (auto& th : ts) th.join();
            for (float v : out) sink = sink + v;
        });
        bench::record r;
        r.bench = "peak";
        r.impl = std::string("fma-") + std::to_string(V::size * 32) + "bit";
        r.what = "fma";
        r.shape = std::to_string(chains) + " chains";
        r.threads = nt;
        r.t = t;
        r.gflops = flops * nt / (t.median_ms * 1e6);
        bench::emit(r);
    }
    return 0;
}
