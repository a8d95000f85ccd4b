// GEMM benchmark: C = A * B, row-major float32, M = N = K, lamina's host GEMM against OpenBLAS
// (cblas_sgemm, when the build found it) and Eigen (always: it is a lamina dependency; with
// more than one thread only when built with OpenMP, Eigen's only threading).
//
//   bench_gemm --sizes 256,512,1024,2048 --threads 1,2 --min-time S
//
// OpenBLAS threads: openblas_set_num_threads(T) before each measurement (both the pthread and
// the OpenMP flavour export it). GFLOP/s = 2*M*N*K / median time.
#include <cmath>
#include <cstdio>
#include <vector>

#include <Eigen/Core>
#include <lamina/lamina.hpp>

#include "common/bench_util.hpp"

#ifdef LAMINA_BENCH_OPENBLAS
// Declared here rather than through cblas.h: Debian installs several cblas.h variants
// (netlib, openblas-pthread, openblas-openmp) and the ABI below is the same for all.
extern "C" {
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc);
void openblas_set_num_threads(int n);
}
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

bench::record make_record(const char* impl, std::size_t n, unsigned threads, const bench::timing& t) {
    bench::record r;
    r.bench = "gemm";
    r.impl = impl;
    r.what = "gemm";
    r.shape = "M=N=K=" + std::to_string(n);
    r.batch = 1;
    r.threads = threads;
    r.phase = "fwd";
    r.t = t;
    const double nd = static_cast<double>(n);
    r.gflops = 2.0 * nd * nd * nd / (t.median_ms * 1e-3) / 1e9;
    return r;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double m = 0, scale = 1e-30;
    for (std::size_t i = 0; i < a.size(); ++i) {
        m = std::max(m, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
        scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
    }
    return m / scale;
}

}  // namespace

int main(int argc, char** argv) try {
    const char* usage =
        "options: --sizes 256,512,1024,2048  --threads 1,2  --min-time S (1)  --warmup N (3)  --min-reps N (5)\n"
        "         --impl all|lamina|openblas|eigen\n"
        "prints one JSON line per measurement on stdout";
    bench::args a(argc, argv, {"sizes", "threads", "min-time", "warmup", "min-reps", "impl"}, usage);
    bench::protocol p;
    p.min_time = a.num("min-time", 1.0);
    p.warmup = static_cast<std::size_t>(a.num("warmup", 3));
    p.min_reps = static_cast<std::size_t>(a.num("min-reps", 5));
    const auto sizes = a.list("sizes", "256,512,1024,2048");
    const auto thread_counts = a.list("threads", "1,2");
#ifndef LAMINA_BENCH_OPENBLAS
    std::fprintf(stderr, "bench_gemm: built without OpenBLAS; measuring lamina and Eigen only\n");
#endif

    for (std::size_t tc : thread_counts) {
        const auto threads = static_cast<unsigned>(tc);
        lamina::host::context ctx{lamina::threads{threads}};
        for (std::size_t n : sizes) {
            std::vector<float> A(n * n), B(n * n), C(n * n, 0.0f), ref;
            bench::fill_random(A.data(), A.size(), 1);
            bench::fill_random(B.data(), B.size(), 2);
            if (a.selects("impl", "lamina")) {
                auto t = bench::measure(p, [&] {
                    lamina::host::gemm(ctx, lamina::transpose::no, lamina::transpose::no, n, n, n, 1.0f, A.data(), n,
                                       B.data(), n, 0.0f, C.data(), n);
                });
                bench::emit(make_record("lamina", n, ctx.thread_count(), t));
                ref = C;
                double err = 0;  // spot check against a double-precision dot product
                for (std::size_t s = 0; s < 16; ++s) {
                    const std::size_t i = (s * 7919) % n, j = (s * 104729) % n;
                    double d = 0;
                    for (std::size_t k = 0; k < n; ++k)
                        d += static_cast<double>(A[i * n + k]) * static_cast<double>(B[k * n + j]);
                    err = std::max(err, std::fabs(d - static_cast<double>(C[i * n + j])) / (1.0 + std::fabs(d)));
                }
                std::fprintf(stderr, "gemm %zu: lamina spot-check relative error %.2e\n", n, err);
            }
#ifdef LAMINA_BENCH_OPENBLAS
            if (a.selects("impl", "openblas")) {
                openblas_set_num_threads(static_cast<int>(threads));
                const int ni = static_cast<int>(n);
                auto t = bench::measure(p, [&] {
                    cblas_sgemm(101 /*RowMajor*/, 111 /*NoTrans*/, 111, ni, ni, ni, 1.0f, A.data(), ni, B.data(), ni,
                                0.0f, C.data(), ni);
                });
                bench::emit(make_record("openblas", n, threads, t));
                if (!ref.empty())
                    std::fprintf(stderr, "gemm %zu: lamina vs OpenBLAS max relative difference %.2e\n", n,
                                 max_rel_diff(ref, C));
            }
#endif
            if (a.selects("impl", "eigen")) {
#ifdef _OPENMP
                Eigen::setNbThreads(static_cast<int>(threads));
                const bool can = true;
#else
                const bool can = threads == 1;
#endif
                if (can) {
                    using mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
                    const auto ni = static_cast<Eigen::Index>(n);
                    Eigen::Map<const mat> ea(A.data(), ni, ni), eb(B.data(), ni, ni);
                    Eigen::Map<mat> ec(C.data(), ni, ni);
                    auto t = bench::measure(p, [&] { ec.noalias() = ea * eb; });
                    bench::emit(make_record("eigen", n, threads, t));
                } else {
                    std::fprintf(stderr, "bench_gemm: Eigen with %u threads needs OpenMP; skipped\n", threads);
                }
            }
        }
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gemm: error: %s\n", e.what());
    return 1;
}
