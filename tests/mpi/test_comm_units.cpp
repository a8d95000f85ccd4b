// The communicators' pieces that need no MPI: the fusion plan (buckets of whole layers in the
// order backward reports them, a small first bucket, thresholds smaller than one tensor, odd
// sizes), the per-step bucket fill, the bucketed optimizer state (equal to one whole-model
// step, checkpoint layout independent of the buckets), the distributed sampler's three modes
// (checked by counting, against properties derived here, not against its own output), and
// comm::none's trainer (the plain one).
#include <catch2/catch.hpp>

#include <lamina/communicators/bucketed_optimizer.hpp>
#include <lamina/communicators/fusion_buckets.hpp>
#include <lamina/communicators/none.hpp>
#include <lamina/communicators/parameter_shards.hpp>
#include <lamina/data/distributed_sampler.hpp>
#include <lamina/lamina.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

namespace lm = lamina;

namespace {
/// Segments of `layers` leaves, leaf i holding tensors of sizes[i] (one or two tensors each).
std::vector<lm::parameter_segment> segments_of(const std::vector<std::vector<std::size_t>>& layers) {
    std::vector<lm::parameter_segment> s;
    std::size_t off = 0;
    for (std::size_t l = 0; l < layers.size(); ++l)
        for (std::size_t k = 0; k < layers[l].size(); ++k) {
            s.push_back({"t" + std::to_string(l) + "." + std::to_string(k), l * 3 + 1, off, layers[l][k], k == 0});
            off += layers[l][k];
        }
    return s;
}
}  // namespace

TEST_CASE("fusion plan: whole layers in reverse order, small first bucket, odd sizes", "[comm][fusion]") {
    // leaves of 7+3, 13, 5+1, 11 floats (28 bytes + 12, 52, ...)
    const auto segs = segments_of({{7, 3}, {13}, {5, 1}, {11}});
    SECTION("thresholds smaller than one tensor: one bucket per layer, last layer first") {
        const auto p = lm::comm::fusion_plan::build(segs, 4, 1, 8);
        REQUIRE(p.size() == 4);
        CHECK(p.total() == 40);
        // report order: layer 3 (offset 29, 11), layer 2 (23, 6), layer 1 (10, 13), layer 0 (0, 10)
        const std::size_t off[4] = {29, 23, 10, 0}, cnt[4] = {11, 6, 13, 10}, nseg[4] = {1, 2, 1, 2};
        for (std::size_t k = 0; k < 4; ++k) {
            CHECK(p[k].offset == off[k]);
            CHECK(p[k].count == cnt[k]);
            CHECK(p[k].segments == nseg[k]);
        }
        CHECK(p.largest() == 13);
    }
    SECTION("a first bucket of 44 bytes closes after 11 floats, later ones at 80 bytes (20 floats)") {
        const auto p = lm::comm::fusion_plan::build(segs, 4, 44, 80);
        REQUIRE(p.size() == 2);
        CHECK((p[0].offset == 29 && p[0].count == 11));
        CHECK((p[1].offset == 0 && p[1].count == 29));  // 6 + 13 = 19 < 20 floats: layer 0 joins
        CHECK((p[1].first_segment == 0 && p[1].segments == 5));
    }
    SECTION("one large bucket holds everything") {
        const auto p = lm::comm::fusion_plan::build(segs, 8, 1 << 20, 1 << 20);
        REQUIRE(p.size() == 1);
        CHECK((p[0].offset == 0 && p[0].count == 40 && p[0].segments == 6));
    }
    SECTION("every element belongs to exactly one bucket, and bucket_of finds it") {
        for (std::size_t first : {0u, 4u, 30u, 100u})
            for (std::size_t rest : {0u, 7u, 50u, 1000u}) {
                const auto p = lm::comm::fusion_plan::build(segs, 4, first, rest);
                std::vector<int> hits(p.total(), 0);
                for (std::size_t k = 0; k < p.size(); ++k)
                    for (std::size_t i = p[k].offset; i < p[k].offset + p[k].count; ++i) {
                        ++hits[i];
                        CHECK(p.bucket_of(i) == k);
                    }
                CHECK(std::count(hits.begin(), hits.end(), 1) == 40);
            }
    }
    SECTION("segments that do not tile the buffer are rejected") {
        auto bad = segs;
        bad[2].offset += 1;
        CHECK_THROWS_WITH(lm::comm::fusion_plan::build(bad, 4, 0, 0), Catch::Contains("t1.0") && Catch::Contains("tile"));
    }
}

TEST_CASE("bucket fill: buckets become ready in order, a double report is an error", "[comm][fusion]") {
    const auto segs = segments_of({{7, 3}, {13}, {5, 1}, {11}});
    const auto p = lm::comm::fusion_plan::build(segs, 4, 44, 80);  // buckets [29, 40) and [0, 29)
    lm::comm::bucket_fill f(&p);
    f.reset();
    CHECK(f.ready_prefix() == 0);
    f.report(29, 11);
    CHECK(f.ready_prefix() == 1);
    f.report(23, 6);
    f.report(10, 13);
    CHECK(f.ready_prefix() == 1);
    CHECK_THROWS_WITH(f.report(10, 13), Catch::Contains("twice"));
    f.reset();
    // out of order: bucket 1 complete first does not make it ready before bucket 0
    f.report(0, 10);
    f.report(10, 13);
    f.report(23, 6);
    CHECK(f.complete(1));
    CHECK(f.ready_prefix() == 0);
    f.report(29, 11);
    CHECK(f.ready_prefix() == 2);
    CHECK_THROWS_WITH(f.report(35, 6), Catch::Contains("outside"));
    f.reset();
    f.complete_all();
    CHECK(f.ready_prefix() == 2);
}

TEST_CASE("bucketed optimizer state (every optimizer) steps like one whole-model state; checkpoint layout is the whole model's",
          "[comm][optimizer]") {
    const auto segs = segments_of({{7, 3}, {13}, {5, 1}, {11}});
    const auto p = lm::comm::fusion_plan::build(segs, 4, 1, 40);  // buckets of one and several layers
    REQUIRE(p.size() >= 2);
    std::vector<float> w0(40), g(40);
    for (std::size_t i = 0; i < 40; ++i) {
        w0[i] = std::sin(0.7f * float(i)) - 0.2f;
        g[i] = std::cos(1.3f * float(i)) * 0.5f;
    }
    auto run = [&](auto opt) {
        using O = decltype(opt);
        STATIC_REQUIRE(lm::comm::steps_by_segment<O>::value);
        lm::host::context c;
        typename O::template state<lm::host, float> whole(opt, 40);
        lm::comm::bucketed_state<O, lm::host, float> parts(opt, p, segs);
        auto a = w0, b = w0;
        for (int s = 0; s < 3; ++s) {
            whole.step(c, a.data(), g.data(), segs, 0.1);
            for (std::size_t k = p.size(); k-- > 0;) parts.step_bucket(k, c, b.data(), g.data(), 0.1);  // any order
        }
        for (std::size_t i = 0; i < 40; ++i) CHECK(a[i] == Approx(b[i]).margin(1e-7));
        CHECK(parts.steps() == 3);
        const auto sw = whole.save(c), sp = parts.save(c);
        REQUIRE(sw.size() == sp.size());
        for (std::size_t j = 0; j < sw.size(); ++j) {
            CHECK(sw[j].first == sp[j].first);
            REQUIRE(sw[j].second.size() == sp[j].second.size());
            for (std::size_t i = 0; i < 40; ++i) CHECK(sw[j].second[i] == Approx(sp[j].second[i]).margin(1e-7));
        }
        // loading the whole model's state into a bucketed one and stepping again matches
        lm::comm::bucketed_state<O, lm::host, float> again(opt, lm::comm::fusion_plan::build(segs, 4, 0, 0), segs);
        again.load(c, sw, whole.steps());
        whole.step(c, a.data(), g.data(), segs, 0.05);
        again.step(c, b.data(), g.data(), segs, 0.05);
        for (std::size_t i = 0; i < 40; ++i) CHECK(a[i] == Approx(b[i]).margin(1e-7));
        auto wrong = sw;
        wrong[0].second.pop_back();
        CHECK_THROWS_AS(again.load(c, wrong, 1), lm::checkpoint_error);
    };
    run(lm::optim::sgd{0.1, 0.9, true, 1e-2});
    run(lm::optim::adam{0.01, 0.9, 0.999, 1e-8, 1e-2});
    run(lm::optim::adamw{0.01, 1e-2});
    run(lm::optim::rmsprop{0.01, 0.9, 1e-8, 1e-2, 0.5, true});
    run(lm::optim::adadelta{1.0, 0.9, 1e-6, 1e-2});
    run(lm::optim::lars{0.1, 0.9, 1e-2});
    run(lm::optim::lamb{0.01, 1e-2});
}

TEST_CASE("parameter shards: whole buckets, balanced by bytes (largest first to the least loaded server)",
          "[comm][hybrid]") {
    // Buckets of 100, 10, 60, 50, 40 elements over 2 servers, by hand: 100 -> s0 (tie: lower);
    // 60 -> s1; 50 -> s1 (60 < 100, s1 = 110); 40 -> s0 (100 < 110, s0 = 140); 10 -> s1 (110 < 140).
    const auto m = lm::comm::shard_map::balance({100, 10, 60, 50, 40}, 4, 2);
    CHECK(m.servers() == 2);
    CHECK(m.buckets_of(0) == std::vector<std::size_t>{0, 4});
    CHECK(m.buckets_of(1) == std::vector<std::size_t>{1, 2, 3});
    CHECK(m.bytes_of(0) == 560);
    CHECK(m.bytes_of(1) == 480);
    CHECK(m.owner(1) == 1);
    // equal sizes: round robin in bucket order; one server owns everything
    const auto even = lm::comm::shard_map::balance({8, 8, 8, 8}, 4, 2);
    CHECK(even.buckets_of(0) == std::vector<std::size_t>{0, 2});
    CHECK(lm::comm::shard_map::balance({1, 2, 3}, 8, 1).buckets_of(0) == std::vector<std::size_t>{0, 1, 2});
    CHECK_THROWS_WITH(lm::comm::shard_map::balance({1, 2}, 4, 3),
                      Catch::Contains("3 parameter servers but only 2 fusion buckets"));
    CHECK_THROWS_WITH(lm::comm::shard_map::balance({1, 2}, 4, 0), Catch::Contains("at least one server"));
}

TEST_CASE("distributed sampler: equal counts per rank, shards, reshuffle period, all data", "[comm][sampler]") {
    using S = lm::distributed_sampler;
    const std::size_t n = 23, batch = 2;
    for (std::size_t N = 1; N <= 4; ++N) {
        INFO(N << " ranks");
        {  // reshuffle every epoch: the ranks together cover every sample, padding at most N - 1
            const S s = S::reshuffle_every(1);
            const std::size_t L = s.samples_per_rank(n, N);
            CHECK(L == (n + N - 1) / N);
            for (std::size_t e = 0; e < 3; ++e) {
                std::multiset<std::size_t> all;
                for (std::size_t r = 0; r < N; ++r) {
                    std::vector<std::size_t> o(L);
                    s.order(o.data(), n, e, r, N, batch, 99);
                    for (auto i : o) {
                        REQUIRE(i < n);
                        all.insert(i);
                    }
                }
                CHECK(std::set<std::size_t>(all.begin(), all.end()).size() == n);
                CHECK(all.size() == N * L);
            }
        }
        {  // fixed shards: rank r always gets its contiguous part
            const S s = S::fixed_shards();
            const std::size_t L = s.samples_per_rank(n, N);
            for (std::size_t r = 0; r < N; ++r) {
                // shard sizes differ by at most one: the first n % N ranks hold one more
                const std::size_t lo = r * (n / N) + std::min(r, n % N), size = n / N + (r < n % N ? 1 : 0);
                std::vector<std::size_t> o0(L), o1(L);
                s.order(o0.data(), n, 0, r, N, batch, 99);
                s.order(o1.data(), n, 1, r, N, batch, 99);
                std::set<std::size_t> set0(o0.begin(), o0.end()), set1(o1.begin(), o1.end());
                CHECK(set0 == set1);
                CHECK(set0.size() == size);
                CHECK(*set0.begin() == lo);
                CHECK(*set0.rbegin() == lo + size - 1);
            }
        }
        {  // all data: every rank sees every sample once per epoch
            const S s = S::all_data();
            CHECK(s.samples_per_rank(n, N) == n);
            for (std::size_t r = 0; r < N; ++r) {
                std::vector<std::size_t> o(n);
                s.order(o.data(), n, 2, r, N, batch, 99);
                CHECK(std::set<std::size_t>(o.begin(), o.end()).size() == n);
            }
        }
        if (N > 1) {  // reshuffle every 2 epochs: shards kept for epochs 0-1, redrawn at 2
            const S s = S::reshuffle_every(2);
            const std::size_t L = s.samples_per_rank(n, N);
            std::vector<std::size_t> a(L), b(L), c(L);
            s.order(a.data(), n, 0, 1, N, batch, 99);
            s.order(b.data(), n, 1, 1, N, batch, 99);
            s.order(c.data(), n, 2, 1, N, batch, 99);
            CHECK(std::multiset<std::size_t>(a.begin(), a.end()) == std::multiset<std::size_t>(b.begin(), b.end()));
            CHECK(a != b);  // but visited in a new order
            CHECK(std::multiset<std::size_t>(a.begin(), a.end()) != std::multiset<std::size_t>(c.begin(), c.end()));
        }
    }
    CHECK_THROWS_WITH(S::reshuffle_every(0), Catch::Contains("m >= 1"));
    std::vector<std::size_t> o(8);
    CHECK_THROWS_WITH(S::fixed_shards().order(o.data(), 3, 0, 0, 4, 1, 1), Catch::Contains("3 samples"));
}

TEST_CASE("comm::none: the trainer is the plain one", "[comm]") {
    using net_t = lm::sequential<lm::input<4>, lm::dense<3>>;
    typename net_t::template model<lm::host> net{lm::seed{3}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1}};
    STATIC_REQUIRE(std::is_same_v<decltype(fit), lm::trainer<decltype(net), lm::loss::softmax_cross_entropy,
                                                             lm::optim::sgd, lm::schedule::constant, lm::comm::none>>);
    STATIC_REQUIRE(!decltype(fit)::distributed);
    STATIC_REQUIRE(std::is_same_v<decltype(fit)::session_type, lm::comm::no_session>);
    CHECK(fit.rank() == 0);
    CHECK(fit.ranks() == 1);
    lm::trainer fit2{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1}, lm::comm::none{}};
    STATIC_REQUIRE(std::is_same_v<decltype(fit2), decltype(fit)>);
}
