// The host thread pool: every index visited once, chunking independent of timing, the
// thread count from the API or LAMINA_NUM_THREADS, and no deadlock under concurrent callers.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include <lamina/core/thread_pool.hpp>

TEST_CASE("parallel_for visits every index exactly once", "[threads]") {
    for (unsigned n : {1u, 2u, 3u}) {
        lamina::thread_pool pool(n);
        REQUIRE(pool.size() == n);
        for (std::size_t size : {0ul, 1ul, 2ul, 7ul, 1000ul}) {
            std::vector<std::atomic<int>> hits(size);
            pool.parallel_for(size, [&](std::size_t lo, std::size_t hi) {
                for (std::size_t i = lo; i < hi; ++i) ++hits[i];
            });
            for (std::size_t i = 0; i < size; ++i) CHECK(hits[i] == 1);
        }
    }
}

TEST_CASE("run gives each thread its index", "[threads]") {
    lamina::thread_pool pool(3);
    std::vector<std::atomic<int>> seen(3);
    pool.run([&](unsigned t, unsigned nt) {
        CHECK(nt == 3);
        ++seen[t];
    });
    for (auto& s : seen) CHECK(s == 1);
}

TEST_CASE("concurrent callers fall back to inline execution", "[threads]") {
    lamina::thread_pool pool(2);
    std::atomic<long> sum{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 4; ++c)
        callers.emplace_back([&] {
            for (int k = 0; k < 200; ++k)
                pool.parallel_for(100, [&](std::size_t lo, std::size_t hi) { sum += static_cast<long>(hi - lo); });
        });
    for (auto& t : callers) t.join();
    CHECK(sum == 4 * 200 * 100);
}

TEST_CASE("LAMINA_NUM_THREADS sets the default and is validated", "[threads]") {
    ::setenv("LAMINA_NUM_THREADS", "3", 1);
    CHECK(lamina::default_thread_count() == 3);
    ::setenv("LAMINA_NUM_THREADS", "zero", 1);
    CHECK_THROWS_WITH(lamina::default_thread_count(), Catch::Contains("LAMINA_NUM_THREADS") && Catch::Contains("'zero'"));
    ::unsetenv("LAMINA_NUM_THREADS");
    CHECK(lamina::default_thread_count() >= 1);
}

TEST_CASE("a pool task that calls the pool again runs the inner call inline", "[threads]") {
    lamina::thread_pool pool(2);
    std::atomic<long> inner{0};
    pool.run([&](unsigned, unsigned) {
        pool.parallel_for(10, [&](std::size_t lo, std::size_t hi) { inner += static_cast<long>(hi - lo); });
    });
    CHECK(inner == 20);  // each of the 2 tasks covered all 10 indices itself
}
