// The cyclic polynomial schedule with re-warm-up (schedules/cyclic.hpp) at chosen clock points,
// cycle boundaries included, against values derived by hand from its documented formulas:
//   warm-up (t < W epochs into a cycle): lr = (t base + (W - t) start) / W
//   decay: lr = (base - end) (1 - (t - W) / (L - W))^power + end;  after the last cycle: end
#include <catch2/catch.hpp>

#include <lamina/core/error.hpp>
#include <lamina/schedules/cyclic.hpp>

#include <cstdint>

namespace la = lamina;
namespace sch = lamina::schedule;

namespace {
sch::clock at(std::uint64_t step, std::uint64_t steps_per_epoch) { return sch::clock{step, steps_per_epoch}; }

/// First cycle 4 epochs, then 2-epoch cycles, 3 in all; warm-up 0.5 epochs from 0.01; power 2 to 0.
sch::cyclic_polynomial three_cycles() {
    sch::cyclic_polynomial s;
    s.first_cycle_epochs = 4;
    s.cycle_epochs = 2;
    s.warmup_epochs = 0.5;
    s.power = 2;
    s.start_lr = 0.01;
    s.end_lr = 0;
    s.cycles = 3;
    return s;
}
}  // namespace

TEST_CASE("cyclic_polynomial: warm-up, power-2 decay, re-warm-up, end", "[schedule][cyclic]") {
    const auto s = three_cycles();
    // 4 steps per epoch; base 0.1
    // cycle 0 (epochs 0..4, decay over 3.5 epochs)
    CHECK(s(0.1, at(0, 4)) == Approx(0.01).epsilon(1e-14));    // t = 0: start
    CHECK(s(0.1, at(1, 4)) == Approx(0.055).epsilon(1e-14));   // t = 0.25: (0.025 + 0.0025) / 0.5
    CHECK(s(0.1, at(2, 4)) == Approx(0.1).epsilon(1e-14));     // t = 0.5: the decay starts at base
    CHECK(s(0.1, at(9, 4)) == Approx(0.025).epsilon(1e-14));   // t = 2.25: x = 1.75 / 3.5 = 0.5, 0.1 * 0.25
    CHECK(s(0.1, at(15, 4)) == Approx(0.1 / 196).epsilon(1e-12));  // t = 3.75: x = 3.25 / 3.5, (1 - x)^2 = 1/196
    // cycle 1 (epochs 4..6, decay over 1.5 epochs): warms up again
    CHECK(s(0.1, at(16, 4)) == Approx(0.01).epsilon(1e-14));
    CHECK(s(0.1, at(17, 4)) == Approx(0.055).epsilon(1e-14));
    CHECK(s(0.1, at(18, 4)) == Approx(0.1).epsilon(1e-14));
    CHECK(s(0.1, at(21, 4)) == Approx(0.025).epsilon(1e-14));  // t = 1.25: x = 0.75 / 1.5 = 0.5
    CHECK(s(0.1, at(23, 4)) == Approx(0.1 / 36).epsilon(1e-12));  // t = 1.75: x = 1.25 / 1.5, (1/6)^2
    // cycle 2 (epochs 6..8)
    CHECK(s(0.1, at(24, 4)) == Approx(0.01).epsilon(1e-14));
    CHECK(s(0.1, at(31, 4)) == Approx(0.1 / 36).epsilon(1e-12));
    // past the last cycle: end_lr
    CHECK(s(0.1, at(32, 4)) == 0.0);
    CHECK(s(0.1, at(1000, 4)) == 0.0);

    CHECK(s.at(at(15, 4)).cycle == 0);
    CHECK(s.at(at(16, 4)).cycle == 1);
    CHECK(s.at(at(16, 4)).into == 0.0);
    CHECK(s.at(at(17, 4)).length == 2.0);
    CHECK(s.at(at(3, 4)).length == 4.0);
    CHECK(s.at(at(23, 4)).cycle == 1);
    CHECK(s.at(at(24, 4)).cycle == 2);
    CHECK_FALSE(s.at(at(31, 4)).finished);
    CHECK(s.at(at(32, 4)).finished);
    CHECK(s.at(at(32, 4)).cycle == 3);
    CHECK(s.cycle_begin(0) == 0.0);
    CHECK(s.cycle_begin(1) == 4.0);
    CHECK(s.cycle_begin(2) == 6.0);
    CHECK(s.total_epochs() == 8.0);
}

TEST_CASE("cyclic_polynomial: end_lr, power 1, no warm-up, equal cycles, no limit", "[schedule][cyclic]") {
    sch::cyclic_polynomial s;
    s.cycle_epochs = 3;
    s.warmup_epochs = 0;
    s.power = 1;
    s.end_lr = 0.001;
    // 2 steps per epoch, base 0.1: each cycle starts at base and falls linearly to 0.001
    CHECK(s(0.1, at(0, 2)) == Approx(0.1).epsilon(1e-14));
    CHECK(s(0.1, at(3, 2)) == Approx(0.0505).epsilon(1e-14));  // t = 1.5: 0.099 * 0.5 + 0.001
    CHECK(s(0.1, at(5, 2)) == Approx(0.099 / 6 + 0.001).epsilon(1e-14));  // t = 2.5
    CHECK(s(0.1, at(6, 2)) == Approx(0.1).epsilon(1e-14));     // cycle 1 begins at base
    CHECK(s(0.1, at(600003, 2)) == Approx(0.0505).epsilon(1e-12));  // cycle 100000, t = 1.5: no limit
    CHECK(s.at(at(600003, 2)).cycle == 100000);
    CHECK(s.total_epochs() == HUGE_VAL);
    s.cycles = 2;
    CHECK(s(0.1, at(12, 2)) == 0.001);  // after the last cycle: end_lr
}

TEST_CASE("cyclic_polynomial: boundaries are not lost to rounding", "[schedule][cyclic]") {
    // Cycles of 0.1 epochs at 10 steps per epoch: step k is cycle k exactly, although e.g.
    // (0.3 - 0.1) / 0.1 is 1.9999999999999996 in double.
    sch::cyclic_polynomial s;
    s.cycle_epochs = 0.1;
    s.warmup_epochs = 0.05;
    for (std::uint64_t k = 0; k < 2000; ++k) {
        INFO("step " << k);
        REQUIRE(s.at(at(k, 10)).cycle == k);
        REQUIRE(s(1.0, at(k, 10)) == Approx(0.0).margin(1e-6));  // each step is a cycle's first: start_lr 0
    }
    // 3 steps per epoch, cycles of 1 epoch: steps 0..2, 3..5, ...
    s.cycle_epochs = 1;
    s.warmup_epochs = 0;
    for (std::uint64_t k = 0; k < 300; ++k) {
        INFO("step " << k);
        REQUIRE(s.at(at(k, 3)).cycle == k / 3);
    }
}

TEST_CASE("cyclic_polynomial: invalid fields are named", "[schedule][cyclic]") {
    auto bad = [](auto change, const char* field) {
        auto s = three_cycles();
        change(s);
        CHECK_THROWS_AS(s(0.1, at(0, 1)), la::argument_error);
        CHECK_THROWS_WITH(s.validate(), Catch::Contains(field));
    };
    bad([](sch::cyclic_polynomial& s) { s.cycle_epochs = 0; }, "cycle_epochs");
    bad([](sch::cyclic_polynomial& s) { s.cycle_epochs = -1; }, "cycle_epochs");
    bad([](sch::cyclic_polynomial& s) { s.first_cycle_epochs = -1; }, "first_cycle_epochs");
    bad([](sch::cyclic_polynomial& s) { s.warmup_epochs = 2; }, "warmup_epochs");   // as long as a cycle
    bad([](sch::cyclic_polynomial& s) { s.warmup_epochs = -0.5; }, "warmup_epochs");
    bad([](sch::cyclic_polynomial& s) {
        s.first_cycle_epochs = 0.25;  // shorter than the warm-up
    }, "warmup_epochs");
    bad([](sch::cyclic_polynomial& s) { s.power = 0; }, "power");
    CHECK_NOTHROW(three_cycles().validate());
}
