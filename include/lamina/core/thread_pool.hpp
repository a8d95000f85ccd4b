// lamina: the host backend's thread pool.
//
// Why std::thread and not OpenMP: lamina is embedded in simulation codes that often run
// their own OpenMP (possibly another runtime: libgomp vs libomp) or many MPI ranks per node.
// An explicit pool with an explicit thread count never nests into or fights the caller's
// runtime, never oversubscribes behind the user's back, and needs no compiler flag.
//
// Defining LAMINA_NO_THREADS (before including lamina) replaces the pool with a trivial serial
// one: no std::thread, no atomics, no locks; every context has one thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#ifndef LAMINA_NO_THREADS
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>
#endif

#include "error.hpp"

namespace lamina {

/// True when lamina was built with a real thread pool (LAMINA_NO_THREADS not defined).
#ifdef LAMINA_NO_THREADS
inline constexpr bool threading_enabled = false;
#else
inline constexpr bool threading_enabled = true;
#endif

/// The thread count to use: an explicit request, else LAMINA_NUM_THREADS, else the cores.
inline unsigned default_thread_count() {
    if (const char* s = std::getenv("LAMINA_NUM_THREADS")) {
        char* end = nullptr;
        long v = std::strtol(s, &end, 10);
        if (end == s || *end != '\0' || v < 1 || v > 4096)
            throw argument_error(std::string("lamina: LAMINA_NUM_THREADS must be a positive integer, got '") + s + "'");
        return static_cast<unsigned>(v);
    }
#ifdef LAMINA_NO_THREADS
    return 1;
#else
    unsigned hc = std::thread::hardware_concurrency();
    return hc ? hc : 1;
#endif
}

/// The user-facing thread-count type: `model{seed{1}, threads{2}}`. 0 means the default.
struct threads {
    unsigned count = 0;
};

#ifdef LAMINA_NO_THREADS
/// The serial stand-in: same interface, always one thread, everything runs inline.
class thread_pool {
public:
    explicit thread_pool(unsigned = 0) noexcept {}
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    unsigned size() const noexcept { return 1; }
    template <class F>
    void run(F&& f) {
        f(0u, 1u);
    }
    template <class F>
    void parallel_for(std::size_t n, F&& f, std::size_t = 1) {
        if (n) f(std::size_t(0), n);
    }
};
#else
/// A fixed set of worker threads that run one job at a time. Handoff: the caller publishes the
/// job and bumps an atomic generation; workers spin on it (with a CPU pause) for up to
/// spin_time before they sleep on a condition variable, so consecutive kernels of a training
/// step (microseconds apart) never pay a futex wake-up; the caller only locks and notifies
/// when some worker is actually asleep.
class thread_pool {
public:
    /// How long an idle worker spins before sleeping (OpenMP runtimes spin for a similar
    /// time); LAMINA_POOL_SPIN_US overrides it at compile time (0: sleep at once, for heavily
    /// oversubscribed machines).
#ifdef LAMINA_POOL_SPIN_US
    static constexpr std::chrono::microseconds spin_time{LAMINA_POOL_SPIN_US};
#else
    static constexpr std::chrono::microseconds spin_time{100};
#endif

    explicit thread_pool(unsigned n_threads = 0) : n_(n_threads ? n_threads : default_thread_count()) {
        // More threads than cores: spinning would steal the core a working thread needs
        // (libgomp throttles its spinning the same way).
        const unsigned cores = std::thread::hardware_concurrency();
        spin_ = cores != 0 && n_ > cores ? std::chrono::microseconds(0) : spin_time;
        workers_.reserve(n_ - 1);
        for (unsigned t = 1; t < n_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
    }
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    ~thread_pool() {
        stop_ = true;
        publish();
        for (auto& w : workers_) w.join();
    }

    unsigned size() const noexcept { return n_; }

    /// Runs f(thread_index, thread_count) on every thread of the pool and waits. When the pool
    /// is already busy (another caller thread, e.g. concurrent predict), f runs inline as
    /// f(0, 1) on the calling thread: no deadlock, no oversubscription.
    template <class F>
    void run(F&& f) {
        // Serial when the pool has one thread, when called from inside a pool task (a kernel
        // nested in a for_each_index callback), or when another caller holds the pool.
        if (n_ == 1 || inside_task()) {
            f(0u, 1u);
            return;
        }
        std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
        if (!busy.owns_lock()) {
            f(0u, 1u);
            return;
        }
        task_scope scope;
        using Fn = std::remove_reference_t<F>;
        job_ctx_ = static_cast<void*>(std::addressof(f));
        job_fn_ = [](void* ctx, unsigned t, unsigned n) { (*static_cast<Fn*>(ctx))(t, n); };
        pending_.store(n_ - 1, std::memory_order_relaxed);
        publish();
        f(0u, n_);
        // Spin (kernels are short), then yield, until every worker is done.
        for (unsigned spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
            if (spins < 4096)
                cpu_relax();
            else
                std::this_thread::yield();
        }
    }

    /// Splits [0, n) into contiguous chunks, one per thread, and runs f(begin, end) on each.
    /// Chunk boundaries depend only on n and the thread count (deterministic results).
    template <class F>
    void parallel_for(std::size_t n, F&& f, std::size_t min_chunk = 1) {
        if (n == 0) return;
        std::size_t max_parts = std::max<std::size_t>(1, n / std::max<std::size_t>(1, min_chunk));
        if (max_parts == 1 || n_ == 1) {
            f(std::size_t(0), n);
            return;
        }
        run([&](unsigned t, unsigned nt) {
            std::size_t parts = std::min<std::size_t>(nt, max_parts);
            if (t >= parts) return;
            std::size_t lo = n * t / parts, hi = n * (t + 1) / parts;
            if (lo < hi) f(lo, hi);
        });
    }

private:
    static bool& inside_task() noexcept {
        thread_local bool inside = false;
        return inside;
    }
    struct task_scope {
        task_scope() noexcept { inside_task() = true; }
        ~task_scope() { inside_task() = false; }
    };

    static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        asm volatile("yield" ::: "memory");
#endif
    }

    /// Makes the job (or stop_) visible to the workers and wakes any that sleep. The sequentially
    /// consistent generation bump and sleepers_ read pair with the worker's sleepers_ increment
    /// and generation re-check: a worker either sees the new generation or is counted here.
    void publish() {
        generation_.fetch_add(1, std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) != 0) {
            { std::lock_guard<std::mutex> lk(m_); }
            cv_.notify_all();
        }
    }

    void worker_loop(unsigned t) {
        inside_task() = true;  // workers only ever run pool tasks
        std::uint64_t seen = 0;
        for (;;) {
            std::uint64_t g = generation_.load(std::memory_order_acquire);
            if (g == seen && spin_.count() > 0) {
                const auto start = std::chrono::steady_clock::now();
                for (unsigned i = 1; (g = generation_.load(std::memory_order_acquire)) == seen; ++i) {
                    cpu_relax();
                    if (i % 64 == 0 && std::chrono::steady_clock::now() - start > spin_) break;
                }
            }
            if (g == seen) {
                std::unique_lock<std::mutex> lk(m_);
                sleepers_.fetch_add(1, std::memory_order_seq_cst);
                cv_.wait(lk, [&] { return (g = generation_.load(std::memory_order_seq_cst)) != seen; });
                sleepers_.fetch_sub(1, std::memory_order_relaxed);
            }
            seen = g;
            if (stop_) return;
            job_fn_(job_ctx_, t, n_);
            pending_.fetch_sub(1, std::memory_order_acq_rel);
        }
    }

    unsigned n_;
    std::chrono::microseconds spin_{0};
    std::vector<std::thread> workers_;
    std::mutex m_;
    std::condition_variable cv_;
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<unsigned> sleepers_{0};
    bool stop_ = false;  // written before a generation bump, read after seeing it
    std::mutex run_mutex_;
    void (*job_fn_)(void*, unsigned, unsigned) = nullptr;
    void* job_ctx_ = nullptr;
    std::atomic<unsigned> pending_{0};
};
#endif  // LAMINA_NO_THREADS

}  // namespace lamina
