// Philox4x32-10 known answers, statistics of lamina's random streams, the initialisers'
// distributions, and reproducible model initialisation from a seed.
#include <catch2/catch.hpp>

#include "gradient_check.hpp"

#include <lamina/core/philox.hpp>
#include <lamina/init/initializers.hpp>
#include <lamina/layers/activations.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/layers/dense.hpp>
#include <lamina/layers/flatten.hpp>
#include <lamina/network/sequential.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace la = lamina;
namespace lt = lamina::test;

namespace {

struct moments {
    double mean = 0, var = 0, min = 1e300, max = -1e300;
};
template <class F>
moments sample_moments(std::size_t n, F draw) {
    moments m;
    double s = 0, s2 = 0;
    for (std::size_t i = 0; i < n; ++i) {
        double v = draw(i);
        s += v;
        s2 += v * v;
        m.min = std::min(m.min, v);
        m.max = std::max(m.max, v);
    }
    m.mean = s / double(n);
    m.var = s2 / double(n) - m.mean * m.mean;
    return m;
}

std::array<std::uint32_t, 4> philox(std::array<std::uint32_t, 4> ctr, std::array<std::uint32_t, 2> key) {
    auto b = la::philox4x32::generate(ctr.data(), key.data());
    return {b.v[0], b.v[1], b.v[2], b.v[3]};
}

}  // namespace

// ================================================================================================
// Philox4x32-10
// ================================================================================================

TEST_CASE("philox4x32-10: Random123 known-answer vectors", "[rng][philox]") {
    // kat_vectors of the Random123 distribution (philox4x32 10 rounds): counter, key -> output
    using a4 = std::array<std::uint32_t, 4>;
    CHECK(philox({0, 0, 0, 0}, {0, 0}) == a4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
    CHECK(philox({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}) ==
          a4{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
    CHECK(philox({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}) ==
          a4{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("random_stream: documented counter/key layout reproduces the known answers", "[rng][philox]") {
    // index -> counter words 0, 1 (low, high); stream -> counter words 2, 3; seed -> key 0, 1.
    auto words = [](la::philox4x32::block b) { return std::array<std::uint32_t, 4>{b.v[0], b.v[1], b.v[2], b.v[3]}; };
    using a4 = std::array<std::uint32_t, 4>;
    CHECK(words(la::random_stream{0, 0}.bits(0)) == a4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
    CHECK(words(la::random_stream{~0ull, ~0ull}.bits(~0ull)) == a4{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
    CHECK(words(la::random_stream{0x299f31d0a4093822ull, 0x0370734413198a2eull}.bits(0x85a308d3243f6a88ull)) ==
          a4{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

// ================================================================================================
// random_stream statistics and counter-based determinism
// ================================================================================================

TEST_CASE("random_stream: uniform() in [0, 1) with 24-bit resolution, mean 1/2, variance 1/12", "[rng]") {
    const la::random_stream s{42, 7};
    const std::size_t n = 200000;
    std::size_t not_24bit = 0;
    auto m = sample_moments(n, [&](std::size_t i) {
        float u = s.uniform(i);
        double scaled = double(u) * 16777216.0;
        if (scaled != std::floor(scaled)) ++not_24bit;
        return double(u);
    });
    CHECK(m.min >= 0.0);
    CHECK(m.max < 1.0);
    CHECK(m.min < 1e-3);
    CHECK(m.max > 1 - 1e-3);
    // sd of the mean: sqrt(1/12 / n) = 6.5e-4; of the variance about 1.5e-4
    CHECK(m.mean == Approx(0.5).margin(0.004));
    CHECK(m.var == Approx(1.0 / 12).margin(0.001));
    CHECK(not_24bit == 0);
    // decile histogram: chi-square with 9 degrees of freedom (p = 1e-5 at about 37)
    std::array<double, 10> bins{};
    for (std::size_t i = 0; i < n; ++i) bins[std::min<std::size_t>(9, std::size_t(s.uniform(i) * 10))] += 1;
    double chi2 = 0;
    for (double b : bins) chi2 += (b - n / 10.0) * (b - n / 10.0) / (n / 10.0);
    CHECK(chi2 < 40);
}

TEST_CASE("random_stream: uniform_double() and normal() statistics", "[rng]") {
    const la::random_stream s{3, 1};
    const std::size_t n = 200000;
    std::size_t finer_than_24 = 0;
    auto u = sample_moments(n, [&](std::size_t i) {
        double v = s.uniform_double(i);
        if (v * 16777216.0 != std::floor(v * 16777216.0)) ++finer_than_24;
        return v;
    });
    CHECK(u.min >= 0.0);
    CHECK(u.max < 1.0);
    CHECK(u.mean == Approx(0.5).margin(0.004));
    CHECK(u.var == Approx(1.0 / 12).margin(0.001));
    CHECK(finer_than_24 > n * 9 / 10);  // 53 random bits, not 24
    std::size_t within1 = 0, within2 = 0;
    auto z = sample_moments(n, [&](std::size_t i) {
        double v = s.normal(i);
        within1 += std::abs(v) < 1;
        within2 += std::abs(v) < 2;
        return v;
    });
    // N(0, 1): sd of the mean 0.0022, of the variance 0.0032
    CHECK(z.mean == Approx(0.0).margin(0.012));
    CHECK(z.var == Approx(1.0).margin(0.02));
    CHECK(double(within1) / n == Approx(0.6826894921).margin(0.006));  // sd 0.001
    CHECK(double(within2) / n == Approx(0.9544997361).margin(0.003));  // sd 0.0005
    CHECK(z.max > 3.5);   // tails exist (P(z > 3.5) * n = 46 expected)
    CHECK(z.min < -3.5);
}

TEST_CASE("random_stream: below(n) range and uniformity", "[rng]") {
    const la::random_stream s{9, 2};
    SECTION("n = 10: chi-square") {
        const std::size_t draws = 100000;
        std::array<double, 10> counts{};
        bool in_range = true;
        for (std::size_t i = 0; i < draws; ++i) {
            auto v = s.below(i, 10);
            if (v >= 10) in_range = false;
            else counts[v] += 1;
        }
        REQUIRE(in_range);
        double chi2 = 0;
        for (double c : counts) chi2 += (c - draws / 10.0) * (c - draws / 10.0) / (draws / 10.0);
        CHECK(chi2 < 40);  // 9 dof
    }
    SECTION("n = 7 and n = 1") {
        std::array<std::size_t, 7> counts{};
        std::size_t out_of_range = 0, nonzero = 0;
        for (std::size_t i = 0; i < 70000; ++i) {
            auto v = s.below(i, 7);
            if (v < 7) ++counts[v];
            else ++out_of_range;
        }
        CHECK(out_of_range == 0);
        for (auto c : counts) CHECK(double(c) == Approx(10000).margin(500));  // sd 93
        for (std::size_t i = 0; i < 1000; ++i) nonzero += s.below(i, 1) != 0;
        CHECK(nonzero == 0);
    }
    SECTION("large n = 2^40 + 3") {
        const std::uint64_t big = (std::uint64_t(1) << 40) + 3;
        std::size_t out_of_range = 0;
        auto m = sample_moments(50000, [&](std::size_t i) {
            auto v = s.below(i, big);
            out_of_range += v >= big;
            return double(v) / double(big);
        });
        CHECK(out_of_range == 0);
        CHECK(m.mean == Approx(0.5).margin(0.01));
        CHECK(m.max > 0.999);
        CHECK(m.min < 0.001);
    }
    SECTION("mulhi64 is the high word of the 128-bit product") {
        // (2^64 - 1)^2 = 2^128 - 2^65 + 1: high word 2^64 - 2
        CHECK(la::random_stream::mulhi64(~0ull, ~0ull) == ~0ull - 1);
        // 2^63 * 6 = 3 * 2^64: high word 3
        CHECK(la::random_stream::mulhi64(1ull << 63, 6) == 3);
        // (2^32 + 1)^2 = 2^64 + 2^33 + 1: high word 1
        CHECK(la::random_stream::mulhi64((1ull << 32) + 1, (1ull << 32) + 1) == 1);
        CHECK(la::random_stream::mulhi64(12345, 67890) == 0);
    }
}

TEST_CASE("random_stream: element i is independent of draw order; streams are distinct", "[rng]") {
    const la::random_stream s{1234, 5};
    const std::size_t n = 1000;
    std::vector<float> forward(n), backward(n), shuffled(n);
    for (std::size_t i = 0; i < n; ++i) forward[i] = s.uniform(i);
    for (std::size_t i = n; i-- > 0;) backward[i] = s.uniform(i);
    // a strided permutation (397 is coprime with 1000), drawn through a copy of the stream
    const la::random_stream copy = s;
    for (std::size_t k = 0; k < n; ++k) {
        std::size_t i = (k * 397) % n;
        shuffled[i] = copy.uniform(i);
    }
    CHECK(forward == backward);
    CHECK(forward == shuffled);
    // different seeds, streams and children give different numbers
    auto differs = [&](la::random_stream other) {
        std::size_t same = 0;
        for (std::size_t i = 0; i < n; ++i) same += other.uniform(i) == forward[i];
        return same < 5;
    };
    CHECK(differs({1235, 5}));
    CHECK(differs({1234, 6}));
    CHECK(differs(s.child(0)));
    CHECK(differs(s.child(1)));
    CHECK(s.child(1).stream != s.child(2).stream);
    CHECK(s.child(1).seed == s.seed);
    CHECK(s.child(3).stream == la::random_stream{1234, 5}.child(3).stream);  // deterministic
    CHECK(la::random_stream{1234, 6}.child(3).stream != s.child(3).stream);
}

// ================================================================================================
// initialisers
// ================================================================================================

TEST_CASE("init::variance: He 2/fan_in, Glorot 2/(fan_in + fan_out), LeCun 1/fan_in", "[init]") {
    using la::init::kind;
    CHECK(la::init::variance(kind::he_uniform, 100, 50) == Approx(0.02));
    CHECK(la::init::variance(kind::he_normal, 100, 50) == Approx(0.02));
    CHECK(la::init::variance(kind::glorot_uniform, 100, 50) == Approx(2.0 / 150));
    CHECK(la::init::variance(kind::glorot_normal, 100, 50) == Approx(2.0 / 150));
    CHECK(la::init::variance(kind::lecun_uniform, 100, 50) == Approx(0.01));
    CHECK(la::init::variance(kind::lecun_normal, 100, 50) == Approx(0.01));
    CHECK(la::init::variance(kind::zeros, 100, 50) == 0.0);
}

TEST_CASE("init::sample: distributions match the formulas", "[init]") {
    using la::init::kind;
    const std::size_t n = 200000, fan_in = 100, fan_out = 50;
    struct expect {
        kind k;
        double var;
        bool uniform;
    };
    // target variances written out: He 2/100, Glorot 2/150, LeCun 1/100
    const expect cases[] = {{kind::he_uniform, 0.02, true},        {kind::he_normal, 0.02, false},
                            {kind::glorot_uniform, 2.0 / 150, true}, {kind::glorot_normal, 2.0 / 150, false},
                            {kind::lecun_uniform, 0.01, true},       {kind::lecun_normal, 0.01, false}};
    std::uint64_t id = 0;
    for (const auto& c : cases) {
        INFO(la::init::to_string(c.k));
        const la::random_stream s{77, ++id};
        const double sd = std::sqrt(c.var);
        std::size_t beyond2 = 0;
        auto m = sample_moments(n, [&](std::size_t i) {
            double v = la::init::sample(c.k, s, i, fan_in, fan_out);
            beyond2 += std::abs(v) > 2 * sd;
            return v;
        });
        CHECK(m.mean == Approx(0.0).margin(5 * sd / std::sqrt(double(n))));
        CHECK(m.var == Approx(c.var).epsilon(0.02));  // relative sd of the estimate <= 0.32%
        if (c.uniform) {
            // U(-a, a) with a = sqrt(3 var): bounded, and filling the range
            const double a = std::sqrt(3 * c.var);
            CHECK(m.max <= a);
            CHECK(m.min >= -a);
            CHECK(m.max > 0.999 * a);
            CHECK(m.min < -0.999 * a);
            CHECK(beyond2 == 0);  // a = 1.73 sd
        } else {
            // normal: P(|z| > 2) = 0.0455 (sd 0.00047 here)
            CHECK(double(beyond2) / n == Approx(0.0455).margin(0.003));
            CHECK(m.max > 3.5 * sd);
        }
    }
    const la::random_stream s{1, 1};
    CHECK(la::init::sample(kind::zeros, s, 5, 10, 10) == 0.0);
    CHECK(la::init::sample(kind::ones, s, 5, 10, 10) == 1.0);
}

// ================================================================================================
// models: seeds
// ================================================================================================

namespace {
using small_net = la::sequential<la::input<2, 6, 6>, la::conv2d<3, 3>, la::relu, la::flatten, la::dense<4>, la::relu,
                                 la::dense<4>>;
}

TEMPLATE_LIST_TEST_CASE("model initialisation: same seed same parameters, other seed others", "[init][model]",
                        lt::backends) {
    using B = TestType;
    typename small_net::template model<B, double> a{la::seed{7}}, b{la::seed{7}}, c{la::seed{8}};
    auto pa = a.get_parameters(), pb = b.get_parameters(), pc = c.get_parameters();
    REQUIRE(pa.size() == small_net::model<B, double>::parameter_count);
    // conv 3*2*9 + 3 (output 3x4x4 = 48 values), dense 4*48 + 4, dense 4*4 + 4
    REQUIRE(pa.size() == std::size_t(54 + 3 + 192 + 4 + 16 + 4));
    CHECK(pa == pb);
    std::size_t same = 0;
    for (std::size_t i = 0; i < pa.size(); ++i) same += pa[i] == pc[i];
    // only the zero-initialised biases (3 + 4 + 4) coincide
    CHECK(same == 11);
    // re-initialising with the first seed restores the first parameters
    c.initialize(la::seed{7});
    CHECK(c.get_parameters() == pa);

    // layout: conv weight [0, 54) glorot_uniform with fan_in 2*9, fan_out 3*9, bias [54, 57) zero;
    // dense weight [57, 249) glorot_uniform fan_in 48, fan_out 4; bias [249, 253) zero; the last
    // dense's weight [253, 269) fan_in 4, fan_out 4, bias [269, 273). Glorot uniform bound
    // a = sqrt(3 * 2 / (fan_in + fan_out)).
    const double a_conv = std::sqrt(6.0 / (18 + 27)), a_d1 = std::sqrt(6.0 / (48 + 4)), a_d2 = std::sqrt(6.0 / 8);
    auto max_abs = [&](std::size_t from, std::size_t to) {
        double m = 0;
        for (std::size_t i = from; i < to; ++i) m = std::max(m, std::abs(pa[i]));
        return m;
    };
    CHECK(max_abs(0, 54) <= a_conv);
    CHECK(max_abs(0, 54) > 0.5 * a_conv);
    CHECK(max_abs(54, 57) == 0.0);
    CHECK(max_abs(57, 249) <= a_d1);
    CHECK(max_abs(57, 249) > 0.8 * a_d1);
    CHECK(max_abs(249, 253) == 0.0);
    CHECK(max_abs(253, 269) <= a_d2);
    CHECK(max_abs(253, 269) > 0.3 * a_d2);
    CHECK(max_abs(269, 273) == 0.0);
}

TEST_CASE("model initialisation: the model passes each layer's fans to the initialiser", "[init][model]") {
    // dense<300, he_normal> on 200 inputs: 60000 weights with variance 2/200 = 0.01
    using dnet = la::sequential<la::input<200>, la::dense<300, la::init::he_normal>>;
    dnet::model<la::reference, double> d{la::seed{3}};
    auto p = d.get_parameters();
    auto m = sample_moments(60000, [&](std::size_t i) { return p[i]; });
    CHECK(m.var == Approx(0.01).epsilon(0.03));
    CHECK(m.mean == Approx(0.0).margin(0.002));
    // conv2d<32, 3, glorot_normal> on 64 channels: fan_in 64*9 = 576, fan_out 32*9 = 288,
    // variance 2/864; 18432 weights
    using cnet = la::sequential<la::input<64, 3, 3>, la::conv2d<32, 3, 1, 0, la::init::glorot_normal>>;
    cnet::model<la::reference, double> c{la::seed{4}};
    auto q = c.get_parameters();
    auto mc = sample_moments(18432, [&](std::size_t i) { return q[i]; });
    CHECK(mc.var == Approx(2.0 / 864).epsilon(0.05));
    // two identically shaped layers draw different weights (one stream per parameter tensor)
    using twin = la::sequential<la::input<8>, la::dense<8>, la::dense<8>>;
    twin::model<la::reference, double> t{la::seed{5}};
    auto w = t.get_parameters();
    std::size_t same = 0;
    for (std::size_t i = 0; i < 64; ++i) same += w[i] == w[72 + i];
    CHECK(same == 0);
}

#if LAMINA_TEST_HAS_HOST
TEST_CASE("model initialisation: identical on the reference and host backends", "[init][model]") {
    small_net::model<la::reference, double> r{la::seed{11}};
    small_net::model<la::host, double> h{la::seed{11}};
    CHECK(r.get_parameters() == h.get_parameters());
    small_net::model<la::reference, float> rf{la::seed{11}};
    small_net::model<la::host, float> hf{la::seed{11}};
    CHECK(rf.get_parameters() == hf.get_parameters());
}
#endif
