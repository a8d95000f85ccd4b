// Convolution benchmark: lamina's host conv kernels (forward, backward-data, backward-weights)
// on the issue's shapes, and oneDNN (when the build found it) in two settings:
//   onednn_nchw     the primitive created for plain NCHW / OIHW tensors (lamina's layouts)
//   onednn_blocked  the primitive created for format_tag::any (oneDNN picks its blocked
//                   layout, e.g. nChw8c); tensors are reordered before timing, so this is the
//                   primitive's execution only: oneDNN's best case, without the reorders a
//                   framework keeping NCHW tensors would pay.
//
//   bench_conv --threads 2 --min-time S --filter SUBSTR --batch N --impl all|lamina|onednn
//              --phase fwd|bwd_data|bwd_weights|all
//
// Forward includes the bias in both; backward-weights also produces the bias gradient in both.
// GFLOP/s = 2*N*K*C*R*S*P*Q / median time, for every phase.
#include <cstdio>
#include <string>
#include <vector>

#include <lamina/lamina.hpp>

#include "common/bench_util.hpp"

#ifdef LAMINA_BENCH_ONEDNN
#include <dnnl.hpp>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

struct conv_shape {
    const char* net;
    std::size_t n, c, hw, k, rs, stride, pad;
};

// The issue's forward shapes: ResNet-50 at batch 8, ResNet-20 at batch 32, LeNet-5 at batch 64.
const conv_shape shapes[] = {
    {"resnet50", 8, 3, 224, 64, 7, 2, 3},    {"resnet50", 8, 64, 56, 256, 1, 1, 0},
    {"resnet50", 8, 64, 56, 64, 3, 1, 1},    {"resnet50", 8, 128, 56, 128, 3, 2, 1},
    {"resnet50", 8, 512, 28, 128, 1, 1, 0},  {"resnet50", 8, 256, 14, 256, 3, 1, 1},
    {"resnet50", 8, 1024, 14, 256, 1, 1, 0}, {"resnet50", 8, 512, 7, 512, 3, 1, 1},
    {"resnet20", 32, 16, 32, 16, 3, 1, 1},   {"resnet20", 32, 32, 16, 32, 3, 1, 1},
    {"resnet20", 32, 64, 8, 64, 3, 1, 1},    {"lenet5", 64, 1, 28, 6, 5, 1, 0},
    {"lenet5", 64, 6, 12, 16, 5, 1, 0},
};

lamina::conv_geometry geometry(const conv_shape& s) {
    lamina::conv_geometry g;
    g.n = s.n;
    g.c = s.c;
    g.h = g.w = s.hw;
    g.k = s.k;
    g.r = g.s = s.rs;
    g.stride_h = g.stride_w = s.stride;
    g.pad_h = g.pad_w = s.pad;
    g.p = lamina::conv_geometry::out_extent(g.h, g.r, g.stride_h, g.pad_h);
    g.q = lamina::conv_geometry::out_extent(g.w, g.s, g.stride_w, g.pad_w);
    return g;
}

std::string shape_name(const conv_shape& s) {
    // e.g. "resnet50 3x3/1 64->64 @56 pad1"
    return std::string(s.net) + " " + std::to_string(s.rs) + "x" + std::to_string(s.rs) + "/" +
           std::to_string(s.stride) + " " + std::to_string(s.c) + "->" + std::to_string(s.k) + " @" +
           std::to_string(s.hw) + " pad" + std::to_string(s.pad);
}

double conv_flops(const lamina::conv_geometry& g) {
    return 2.0 * double(g.n) * double(g.k) * double(g.c) * double(g.r) * double(g.s) * double(g.p) * double(g.q);
}

bench::record make_record(const char* impl, const conv_shape& s, const lamina::conv_geometry& g, unsigned threads,
                          const char* phase, const bench::timing& t) {
    bench::record r;
    r.bench = "conv";
    r.impl = impl;
    r.what = "conv";
    r.shape = shape_name(s);
    r.batch = g.n;
    r.threads = threads;
    r.phase = phase;
    r.t = t;
    r.gflops = conv_flops(g) / (t.median_ms * 1e-3) / 1e9;
    return r;
}

struct tensors {
    std::vector<float> x, w, b, y, dy, dx, dw, db;
    explicit tensors(const lamina::conv_geometry& g)
        : x(g.input_size()), w(g.weight_size()), b(g.k), y(g.output_size()), dy(g.output_size()),
          dx(g.input_size()), dw(g.weight_size()), db(g.k) {
        bench::fill_random(x.data(), x.size(), 3);
        bench::fill_random(w.data(), w.size(), 4);
        bench::fill_random(b.data(), b.size(), 5);
        bench::fill_random(dy.data(), dy.size(), 6);
    }
};

void run_lamina(const conv_shape& s, const lamina::conv_geometry& g, const lamina::host::context& ctx,
                const bench::protocol& p, const bench::args& a) {
    using H = lamina::host;
    tensors t(g);
    std::vector<float> ws(std::max<std::size_t>(H::conv2d_workspace<float>(g), 1));
    const unsigned th = ctx.thread_count();
    if (a.selects("phase", "fwd"))
        bench::emit(make_record("lamina", s, g, th, "fwd", bench::measure(p, [&] {
                                    H::conv2d_forward(ctx, g, t.x.data(), t.w.data(), t.b.data(), t.y.data(),
                                                      ws.data());
                                })));
    if (a.selects("phase", "bwd_data"))
        bench::emit(make_record("lamina", s, g, th, "bwd_data", bench::measure(p, [&] {
                                    H::conv2d_backward_data(ctx, g, t.dy.data(), t.w.data(), t.dx.data(), ws.data());
                                })));
    if (a.selects("phase", "bwd_weights"))
        bench::emit(make_record("lamina", s, g, th, "bwd_weights", bench::measure(p, [&] {
                                    H::conv2d_backward_weights(ctx, g, t.x.data(), t.dy.data(), t.dw.data(),
                                                               t.db.data(), ws.data());
                                })));
}

#ifdef LAMINA_BENCH_ONEDNN
struct onednn_runner {
    dnnl::engine eng{dnnl::engine::kind::cpu, 0};
    dnnl::stream strm{eng};

    using tag = dnnl::memory::format_tag;
    using dt = dnnl::memory::data_type;

    /// Memory in the primitive's layout `want`, holding `src` (given in the plain layout `plain`).
    dnnl::memory prepare(const dnnl::memory::desc& want, const dnnl::memory::dims& dims, tag plain,
                         std::vector<float>& src) {
        dnnl::memory user({dims, dt::f32, plain}, eng, src.data());
        if (want == user.get_desc()) return user;
        dnnl::memory m(want, eng);
        dnnl::reorder(user, m).execute(strm, user, m);
        strm.wait();
        return m;
    }

    void run(const conv_shape& s, const lamina::conv_geometry& g, unsigned threads, const bench::protocol& p,
             const bench::args& a, bool blocked) {
        using namespace dnnl;
        const char* impl = blocked ? "onednn_blocked" : "onednn_nchw";
        tensors t(g);
        const auto N = memory::dim(g.n), C = memory::dim(g.c), Hh = memory::dim(g.h), W = memory::dim(g.w),
                   K = memory::dim(g.k), R = memory::dim(g.r), S = memory::dim(g.s), P = memory::dim(g.p),
                   Q = memory::dim(g.q);
        const memory::dims src_d{N, C, Hh, W}, wei_d{K, C, R, S}, bia_d{K}, dst_d{N, K, P, Q};
        const memory::dims strides{memory::dim(g.stride_h), memory::dim(g.stride_w)};
        const memory::dims pad{memory::dim(g.pad_h), memory::dim(g.pad_w)};
        const memory::desc src_md(src_d, dt::f32, blocked ? tag::any : tag::nchw);
        const memory::desc wei_md(wei_d, dt::f32, blocked ? tag::any : tag::oihw);
        const memory::desc dst_md(dst_d, dt::f32, blocked ? tag::any : tag::nchw);
        const memory::desc bia_md(bia_d, dt::f32, tag::x);

        convolution_forward::primitive_desc train_pd(
            convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, src_md, wei_md,
                                      bia_md, dst_md, strides, pad, pad),
            eng);
        if (a.selects("phase", "fwd")) {
            convolution_forward::primitive_desc pd(
                convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct, src_md,
                                          wei_md, bia_md, dst_md, strides, pad, pad),
                eng);
            std::fprintf(stderr, "%s %s fwd: impl %s\n", impl, shape_name(s).c_str(), pd.impl_info_str());
            auto src = prepare(pd.src_desc(), src_d, tag::nchw, t.x);
            auto wei = prepare(pd.weights_desc(), wei_d, tag::oihw, t.w);
            auto bia = prepare(pd.bias_desc(), bia_d, tag::x, t.b);
            memory dst(pd.dst_desc(), eng);
            convolution_forward prim(pd);
            bench::emit(make_record(impl, s, g, threads, "fwd", bench::measure(p, [&] {
                                        prim.execute(strm, {{DNNL_ARG_SRC, src},
                                                            {DNNL_ARG_WEIGHTS, wei},
                                                            {DNNL_ARG_BIAS, bia},
                                                            {DNNL_ARG_DST, dst}});
                                        strm.wait();
                                    })));
        }
        if (a.selects("phase", "bwd_data")) {
            convolution_backward_data::primitive_desc pd(
                convolution_backward_data::desc(algorithm::convolution_direct, src_md, wei_md, dst_md, strides, pad,
                                                pad),
                eng, train_pd);
            std::fprintf(stderr, "%s %s bwd_data: impl %s\n", impl, shape_name(s).c_str(), pd.impl_info_str());
            auto ddst = prepare(pd.diff_dst_desc(), dst_d, tag::nchw, t.dy);
            auto wei = prepare(pd.weights_desc(), wei_d, tag::oihw, t.w);
            memory dsrc(pd.diff_src_desc(), eng);
            convolution_backward_data prim(pd);
            bench::emit(make_record(impl, s, g, threads, "bwd_data", bench::measure(p, [&] {
                                        prim.execute(strm, {{DNNL_ARG_DIFF_DST, ddst},
                                                            {DNNL_ARG_WEIGHTS, wei},
                                                            {DNNL_ARG_DIFF_SRC, dsrc}});
                                        strm.wait();
                                    })));
        }
        if (a.selects("phase", "bwd_weights")) {
            convolution_backward_weights::primitive_desc pd(
                convolution_backward_weights::desc(algorithm::convolution_direct, src_md, wei_md, bia_md, dst_md,
                                                   strides, pad, pad),
                eng, train_pd);
            std::fprintf(stderr, "%s %s bwd_weights: impl %s\n", impl, shape_name(s).c_str(), pd.impl_info_str());
            auto src = prepare(pd.src_desc(), src_d, tag::nchw, t.x);
            auto ddst = prepare(pd.diff_dst_desc(), dst_d, tag::nchw, t.dy);
            memory dwei(pd.diff_weights_desc(), eng), dbia(pd.diff_bias_desc(), eng);
            convolution_backward_weights prim(pd);
            bench::emit(make_record(impl, s, g, threads, "bwd_weights", bench::measure(p, [&] {
                                        prim.execute(strm, {{DNNL_ARG_SRC, src},
                                                            {DNNL_ARG_DIFF_DST, ddst},
                                                            {DNNL_ARG_DIFF_WEIGHTS, dwei},
                                                            {DNNL_ARG_DIFF_BIAS, dbia}});
                                        strm.wait();
                                    })));
        }
    }
};
#endif

}  // namespace

int main(int argc, char** argv) try {
    const char* usage =
        "options: --threads N (2)  --min-time S (1)  --warmup N (3)  --min-reps N (5)\n"
        "         --filter SUBSTR (shapes whose name contains it)  --batch N (override every shape's batch)\n"
        "         --impl all|lamina|onednn  --phase all|fwd|bwd_data|bwd_weights  --list 1 (print the shape names)\n"
        "prints one JSON line per measurement on stdout";
    bench::args a(argc, argv, {"threads", "min-time", "warmup", "min-reps", "filter", "batch", "impl", "phase", "list"},
                  usage);
    if (a.get("list", "0") != "0") {  // --list 1: the shape names, one per line, and nothing else
        for (const conv_shape& s : shapes) std::printf("%s\n", shape_name(s).c_str());
        return 0;
    }
    bench::protocol p;
    p.min_time = a.num("min-time", 1.0);
    p.warmup = static_cast<std::size_t>(a.num("warmup", 3));
    p.min_reps = static_cast<std::size_t>(a.num("min-reps", 5));
    const auto threads = static_cast<unsigned>(a.num("threads", 2));
    const auto batch = static_cast<std::size_t>(a.num("batch", 0));
    const std::string filter = a.get("filter", "");
    lamina::host::context ctx{lamina::threads{threads}};
#ifdef LAMINA_BENCH_ONEDNN
#ifdef _OPENMP
    omp_set_num_threads(static_cast<int>(threads));
#endif
    onednn_runner dnn;
#else
    std::fprintf(stderr, "bench_conv: built without oneDNN; measuring lamina only\n");
#endif
    for (conv_shape s : shapes) {
        if (batch) s.n = batch;
        if (!filter.empty() && shape_name(s).find(filter) == std::string::npos) continue;
        const auto g = geometry(s);
        if (a.selects("impl", "lamina")) run_lamina(s, g, ctx, p, a);
#ifdef LAMINA_BENCH_ONEDNN
        if (a.selects("impl", "onednn")) {
            dnn.run(s, g, threads, p, a, false);
            dnn.run(s, g, threads, p, a, true);
        }
#endif
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_conv: error: %s\n", e.what());
    return 1;
}
