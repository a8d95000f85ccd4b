// lamina: the host backend's thread pool.
//
// Why std::thread and not OpenMP: lamina is embedded in simulation codes that often run
// their own OpenMP (possibly another runtime: libgomp vs libomp) or many MPI ranks per node.
// An explicit pool with an explicit thread count never nests into or fights the caller's
// runtime, never oversubscribes behind the user's back, and needs no compiler flag.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "error.hpp"

namespace lamina {

/// The thread count to use: an explicit request, else LAMINA_NUM_THREADS, else the cores.
inline unsigned default_thread_count() {
    if (const char* s = std::getenv("LAMINA_NUM_THREADS")) {
        char* end = nullptr;
        long v = std::strtol(s, &end, 10);
        if (end == s || *end != '\0' || v < 1 || v > 4096)
            throw argument_error(std::string("lamina: LAMINA_NUM_THREADS must be a positive integer, got '") + s + "'");
        return static_cast<unsigned>(v);
    }
    unsigned hc = std::thread::hardware_concurrency();
    return hc ? hc : 1;
}

/// The user-facing thread-count type: `model{seed{1}, threads{2}}`. 0 means the default.
struct threads {
    unsigned count = 0;
};

class thread_pool {
public:
    explicit thread_pool(unsigned n_threads = 0) : n_(n_threads ? n_threads : default_thread_count()) {
        workers_.reserve(n_ - 1);
        for (unsigned t = 1; t < n_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
    }
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    ~thread_pool() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
            generation_atomic_.store(++generation_, std::memory_order_release);
        }
        cv_.notify_all();
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
        job_ = [&f](unsigned t, unsigned n) { f(t, n); };
        pending_.store(n_ - 1, std::memory_order_relaxed);
        {
            std::lock_guard<std::mutex> lk(m_);
            generation_atomic_.store(++generation_, std::memory_order_release);
        }
        cv_.notify_all();
        f(0u, n_);
        // Spin briefly (kernels are short), then yield, until every worker is done.
        for (unsigned spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins)
            if (spins > 1024) std::this_thread::yield();
        job_ = nullptr;
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

    void worker_loop(unsigned t) {
        inside_task() = true;  // workers only ever run pool tasks
        std::uint64_t seen = 0;
        for (;;) {
            // Spin a little before sleeping: consecutive kernels of one training step follow
            // each other within microseconds.
            for (int i = 0; i < 4000; ++i)
                if (generation_atomic_.load(std::memory_order_acquire) != seen) break;
            std::unique_lock<std::mutex> lk(m_);
            cv_.wait(lk, [&] { return generation_ != seen; });
            seen = generation_;
            if (stop_) return;
            lk.unlock();
            job_(t, n_);
            pending_.fetch_sub(1, std::memory_order_acq_rel);
        }
    }

    unsigned n_;
    std::vector<std::thread> workers_;
    std::mutex m_;
    std::condition_variable cv_;
    std::uint64_t generation_ = 0;
    std::atomic<std::uint64_t> generation_atomic_{0};
    bool stop_ = false;
    std::mutex run_mutex_;
    std::function<void(unsigned, unsigned)> job_;
    std::atomic<unsigned> pending_{0};
};

}  // namespace lamina
