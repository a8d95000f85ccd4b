// lamina: the opt-in per-node profiler. When a model has one attached (model::profile()),
// every leaf's forward and backward is timed (the backend is fenced around each call, so
// device time is measured, not launch time), and report() prints a table named as the
// summary names the nodes, with FLOPs, GFLOP/s and bytes moved; write_chrome_trace() writes
// the events as Chrome trace JSON (open it in chrome://tracing or https://ui.perfetto.dev).
// Detached (the default) the model passes a null profiler and each leaf pays one branch.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "graph.hpp"

namespace lamina {

class node_profiler {
public:
    enum phase : std::uint8_t { forward = 0, forward_train = 1, backward = 2 };
    struct event {
        std::uint32_t leaf;
        phase what;
        std::size_t batch;
        double start_us, duration_us;
    };

    node_profiler() : t0_(clock::now()) { events_.reserve(4096); }

    double now_us() const { return std::chrono::duration<double, std::micro>(clock::now() - t0_).count(); }
    void record(std::uint32_t leaf, phase what, std::size_t batch, double start_us, double end_us) {
        events_.push_back({leaf, what, batch, start_us, end_us - start_us});
    }
    void clear() { events_.clear(); }
    const std::vector<event>& events() const noexcept { return events_; }

    /// One row per leaf: mean forward (inference or training) and backward milliseconds per
    /// call, forward FLOPs (backward counted as 2x forward), GFLOP/s and bytes moved (inputs,
    /// output and parameters once per pass; backward twice that), then totals.
    std::string report(const graph::description& d, std::size_t element_bytes) const {
        const auto& leaves = d.leaves();
        struct acc {
            double fwd_us = 0, bwd_us = 0;
            std::size_t fwd_n = 0, bwd_n = 0, batch = 0;
        };
        std::vector<acc> a(leaves.size());
        for (const auto& e : events_) {
            auto& x = a[e.leaf];
            x.batch = std::max(x.batch, e.batch);
            if (e.what == backward) {
                x.bwd_us += e.duration_us;
                ++x.bwd_n;
            } else {
                x.fwd_us += e.duration_us;
                ++x.fwd_n;
            }
        }
        std::string out;
        char line[256];
        std::snprintf(line, sizeof line, "%-4s %-34s %10s %10s %12s %9s %9s %12s\n", "#", "node", "fwd ms", "bwd ms",
                      "MFLOP/call", "fwd GF/s", "bwd GF/s", "MB moved");
        out += line;
        double tf = 0, tb = 0, tflop = 0, tbytes = 0;
        for (std::size_t l = 0; l < leaves.size(); ++l) {
            const auto& x = a[l];
            if (!x.fwd_n && !x.bwd_n) continue;
            const double fms = x.fwd_n ? x.fwd_us / 1000.0 / double(x.fwd_n) : 0;
            const double bms = x.bwd_n ? x.bwd_us / 1000.0 / double(x.bwd_n) : 0;
            const double flop = leaves[l].flops_per_sample * double(x.batch);
            double bytes = double(leaves[l].parameters);
            for (auto e : leaves[l].inputs) bytes += double(d.edges()[e].size) * double(x.batch);
            bytes += double(d.edges()[leaves[l].output].size) * double(x.batch);
            bytes *= double(element_bytes);
            const double moved = bytes * ((x.fwd_n ? 1.0 : 0.0) + (x.bwd_n ? 2.0 : 0.0));
            std::string name = std::string(2 * leaves[l].depth, ' ') + leaves[l].name;
            std::snprintf(line, sizeof line, "%-4zu %-34.34s %10.3f %10.3f %12.3f %9.1f %9.1f %12.2f\n", l,
                          name.c_str(), fms, bms, flop / 1e6, fms > 0 ? flop / (fms * 1e6) : 0.0,
                          bms > 0 ? 2 * flop / (bms * 1e6) : 0.0, moved / 1e6);
            out += line;
            tf += fms;
            tb += bms;
            tflop += flop * ((x.fwd_n ? 1.0 : 0.0) + (x.bwd_n ? 2.0 : 0.0));
            tbytes += moved;
        }
        std::snprintf(line, sizeof line, "total: forward %.3f ms, backward %.3f ms, %.1f MFLOP, %.1f GFLOP/s, %.1f MB moved\n",
                      tf, tb, tflop / 1e6, (tf + tb) > 0 ? tflop / ((tf + tb) * 1e6) : 0.0, tbytes / 1e6);
        out += line;
        return out;
    }

    /// Chrome trace JSON ("X" complete events, microseconds): one row for forward, one for backward.
    void write_chrome_trace(const std::string& path, const graph::description& d) const {
        std::ofstream f(path);
        if (!f) throw io_error("lamina: cannot write the profile trace '" + path + "'");
        f << "{\"traceEvents\":[\n";
        bool first = true;
        for (const auto& e : events_) {
            const auto& lf = d.leaves()[e.leaf];
            if (!first) f << ",\n";
            first = false;
            f << "{\"name\":\"" << escape(std::to_string(e.leaf) + " " + lf.name) << "\",\"cat\":\""
              << (e.what == backward ? "backward" : e.what == forward ? "inference" : "forward") << "\",\"ph\":\"X\",\"ts\":"
              << e.start_us << ",\"dur\":" << e.duration_us << ",\"pid\":1,\"tid\":" << (e.what == backward ? 2 : 1)
              << ",\"args\":{\"batch\":" << e.batch << ",\"shape\":\"" << escape(lf.output_shape)
              << "\",\"mflop\":" << lf.flops_per_sample * double(e.batch) * (e.what == backward ? 2.0 : 1.0) / 1e6 << "}}";
        }
        f << "\n],\"displayTimeUnit\":\"ms\"}\n";
        if (!f) throw io_error("lamina: failed writing the profile trace '" + path + "'");
    }

private:
    using clock = std::chrono::steady_clock;
    static std::string escape(const std::string& s) {
        std::string o;
        for (char c : s) {
            if (c == '"' || c == '\\') o += '\\';
            o += c;
        }
        return o;
    }
    clock::time_point t0_;
    std::vector<event> events_;
};

}  // namespace lamina
