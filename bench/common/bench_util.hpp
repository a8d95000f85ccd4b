// lamina benchmarks: timing, peak RSS, argument parsing and the one-JSON-line-per-measurement
// output shared by every program in bench/. Standard library only (no lamina, no comparison
// library), so the libtorch and oneDNN twins use exactly the same measurement loop.
//
// Protocol: `warmup` untimed iterations, then timed iterations until both `min_reps` have run
// and `min_time` seconds have passed (capped at `max_reps`). Median and minimum of the
// per-iteration wall times are reported.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace bench {

struct timing {
    double median_ms = 0, min_ms = 0;
    std::size_t reps = 0;
};

struct protocol {
    std::size_t warmup = 3;
    std::size_t min_reps = 5;
    std::size_t max_reps = 100000;
    double min_time = 1.0;  // seconds of timed iterations, at least
};

template <class F>
timing measure(const protocol& p, F&& f) {
    using clock = std::chrono::steady_clock;
    for (std::size_t i = 0; i < p.warmup; ++i) f();
    std::vector<double> ms;
    ms.reserve(1024);
    const auto start = clock::now();
    for (;;) {
        const auto t0 = clock::now();
        f();
        const auto t1 = clock::now();
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        const double total = std::chrono::duration<double>(t1 - start).count();
        if (ms.size() >= p.max_reps) break;
        if (ms.size() >= p.min_reps && total >= p.min_time) break;
    }
    timing t;
    t.reps = ms.size();
    std::sort(ms.begin(), ms.end());
    t.min_ms = ms.front();
    const std::size_t n = ms.size();
    t.median_ms = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    return t;
}

/// Peak resident set size of this process so far, in MiB: VmHWM from /proc/self/status, which
/// starts afresh at exec. Not getrusage's ru_maxrss where /proc is readable: Linux carries
/// ru_maxrss across execve, so a program started by a Python runner (run_bench.py, ~17 MiB)
/// would report at least the runner's peak. One model and phase per process for a clean peak:
/// run_bench.py runs each row in a fresh process.
inline double peak_rss_mb() {
    if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
        char line[256];
        double kib = -1;
        while (std::fgets(line, sizeof line, f))
            if (std::strncmp(line, "VmHWM:", 6) == 0) {
                kib = std::strtod(line + 6, nullptr);
                break;
            }
        std::fclose(f);
        if (kib >= 0) return kib / 1024.0;
    }
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

/// One measurement, printed as one JSON line on stdout.
struct record {
    std::string bench, impl, what, shape, phase;
    std::size_t batch = 0;
    unsigned threads = 0;
    timing t;
    double images_per_s = -1;  // printed when >= 0
    double gflops = -1;        // printed when >= 0
};

inline std::string json_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        o += c;
    }
    return o;
}

inline void emit(const record& r) {
    std::string line = "{\"bench\":\"" + json_escape(r.bench) + "\",\"impl\":\"" + json_escape(r.impl) +
                       "\",\"what\":\"" + json_escape(r.what) + "\",\"shape\":\"" + json_escape(r.shape) +
                       "\",\"batch\":" + std::to_string(r.batch) + ",\"threads\":" + std::to_string(r.threads) +
                       ",\"phase\":\"" + json_escape(r.phase) + "\"";
    char buf[256];
    // microseconds too: the batch-1 rows are latencies of tens of microseconds
    std::snprintf(buf, sizeof buf, ",\"median_ms\":%.6g,\"min_ms\":%.6g,\"median_us\":%.6g,\"min_us\":%.6g",
                  r.t.median_ms, r.t.min_ms, r.t.median_ms * 1e3, r.t.min_ms * 1e3);
    line += buf;
    if (r.images_per_s >= 0) {
        std::snprintf(buf, sizeof buf, ",\"images_per_s\":%.6g", r.images_per_s);
        line += buf;
    }
    if (r.gflops >= 0) {
        std::snprintf(buf, sizeof buf, ",\"gflops\":%.6g", r.gflops);
        line += buf;
    }
    std::snprintf(buf, sizeof buf, ",\"peak_rss_mb\":%.1f,\"reps\":%zu}", peak_rss_mb(), r.t.reps);
    line += buf;
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
}

/// Minimal `--name value` parser. Unknown options are an error (exit 2).
class args {
public:
    args(int argc, char** argv, std::vector<std::string> known, const char* usage) : usage_(usage) {
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            if (a == "-h" || a == "--help") {
                std::fprintf(stderr, "%s\n", usage_);
                std::exit(0);
            }
            if (a.rfind("--", 0) != 0 || std::find(known.begin(), known.end(), a.substr(2)) == known.end() ||
                i + 1 >= argc) {
                std::fprintf(stderr, "unknown or incomplete option '%s'\n%s\n", a.c_str(), usage_);
                std::exit(2);
            }
            kv_.emplace_back(a.substr(2), argv[++i]);
        }
    }
    std::string get(const std::string& k, const std::string& def) const {
        std::string v = def;
        for (const auto& [key, val] : kv_)
            if (key == k) v = val;
        return v;
    }
    double num(const std::string& k, double def) const {
        const std::string v = get(k, "");
        if (v.empty()) return def;
        char* end = nullptr;
        const double d = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end) {
            std::fprintf(stderr, "option --%s: '%s' is not a number\n%s\n", k.c_str(), v.c_str(), usage_);
            std::exit(2);
        }
        return d;
    }
    /// Comma-separated list of positive integers.
    std::vector<std::size_t> list(const std::string& k, const std::string& def) const {
        std::vector<std::size_t> out;
        const std::string v = get(k, def);
        std::size_t pos = 0;
        while (pos <= v.size()) {
            std::size_t comma = v.find(',', pos);
            if (comma == std::string::npos) comma = v.size();
            const std::string item = v.substr(pos, comma - pos);
            char* end = nullptr;
            const unsigned long x = std::strtoul(item.c_str(), &end, 10);
            if (item.empty() || *end || x == 0) {
                std::fprintf(stderr, "option --%s: '%s' is not a list of positive integers\n%s\n", k.c_str(),
                             v.c_str(), usage_);
                std::exit(2);
            }
            out.push_back(x);
            pos = comma + 1;
        }
        return out;
    }
    bool selects(const std::string& k, const std::string& value) const {
        const std::string v = get(k, "all");
        return v == "all" || v == value;
    }

private:
    const char* usage_;
    std::vector<std::pair<std::string, std::string>> kv_;
};

/// Deterministic uniform [-1, 1) floats (xorshift64*), the same in every program.
inline void fill_random(float* x, std::size_t n, std::uint64_t seed) {
    std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (std::size_t i = 0; i < n; ++i) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        const std::uint64_t r = s * 0x2545F4914F6CDD1Dull;
        x[i] = static_cast<float>(static_cast<double>(r >> 40) / static_cast<double>(1ull << 24) * 2.0 - 1.0);
    }
}

}  // namespace bench
