// Learning-rate schedules at chosen clock points, including the boundaries, against values
// derived by hand from each schedule's documented formula.
#include <catch2/catch.hpp>

#include <lamina/core/error.hpp>
#include <lamina/schedules/schedules.hpp>

#include <cmath>

namespace la = lamina;
namespace sch = lamina::schedule;

namespace {
sch::clock at(std::uint64_t step, std::uint64_t steps_per_epoch) { return sch::clock{step, steps_per_epoch}; }
constexpr double pi = 3.14159265358979323846;
}  // namespace

TEST_CASE("schedule clock: epoch = step / steps_per_epoch", "[schedule]") {
    CHECK(at(0, 10).epoch() == 0.0);
    CHECK(at(25, 10).epoch() == 2.5);
    CHECK(at(7, 1).epoch() == 7.0);
    CHECK(at(7, 0).epoch() == 7.0);  // 0 steps per epoch is treated as 1
}

TEST_CASE("schedule: constant", "[schedule]") {
    sch::constant s;
    CHECK(s(0.1, at(0, 10)) == 0.1);
    CHECK(s(0.1, at(123456, 10)) == 0.1);
    CHECK(s(3.0, at(5, 1)) == 3.0);
}

TEST_CASE("schedule: linear_warmup", "[schedule]") {
    // 5 epochs from 0.01 to base 0.1, 10 steps per epoch: lr = (t*0.1 + (5 - t)*0.01) / 5
    sch::linear_warmup s{5, 0.01};
    CHECK(s(0.1, at(0, 10)) == Approx(0.01).epsilon(1e-14));                 // t = 0: start_lr
    CHECK(s(0.1, at(10, 10)) == Approx((0.1 + 4 * 0.01) / 5).epsilon(1e-14));  // t = 1: 0.028
    CHECK(s(0.1, at(25, 10)) == Approx(0.055).epsilon(1e-14));               // t = 2.5: midpoint
    CHECK(s(0.1, at(49, 10)) == Approx((0.49 + 0.001) / 5).epsilon(1e-14));  // t = 4.9: 0.0982
    CHECK(s(0.1, at(50, 10)) == 0.1);                                        // t = 5: base
    CHECK(s(0.1, at(1000, 10)) == 0.1);
    // default start 0: lr = base * t / W
    sch::linear_warmup z{2, 0};
    CHECK(z(0.4, at(0, 4)) == 0.0);
    CHECK(z(0.4, at(1, 4)) == Approx(0.05).epsilon(1e-14));  // t = 0.25: 0.4 * 0.125
    CHECK(z(0.4, at(7, 4)) == Approx(0.35).epsilon(1e-14));  // t = 1.75: 0.4 * 0.875
    CHECK(z(0.4, at(8, 4)) == 0.4);
}

TEST_CASE("schedule: step_decay", "[schedule]") {
    // base * 0.1^floor(epoch / 30)
    sch::step_decay s{30, 0.1};
    CHECK(s(1.0, at(0, 1)) == 1.0);
    CHECK(s(1.0, at(29, 1)) == 1.0);
    CHECK(s(1.0, at(299, 10)) == 1.0);      // epoch 29.9
    CHECK(s(1.0, at(29999, 1000)) == 1.0);  // epoch 29.999: the last step before the drop
    CHECK(s(1.0, at(30000, 1000)) == Approx(0.1).epsilon(1e-14));
    CHECK(s(1.0, at(30, 1)) == Approx(0.1).epsilon(1e-14));
    CHECK(s(1.0, at(59, 1)) == Approx(0.1).epsilon(1e-14));
    CHECK(s(1.0, at(60, 1)) == Approx(0.01).epsilon(1e-14));
    CHECK(s(1.0, at(900, 10)) == Approx(0.1 * 0.1 * 0.1).epsilon(1e-14));  // epoch 90
    // fractional period: every 2.5 epochs, gamma 0.5, 4 steps/epoch -> a drop every 10 steps
    sch::step_decay f{2.5, 0.5};
    CHECK(f(0.8, at(9, 4)) == 0.8);
    CHECK(f(0.8, at(10, 4)) == Approx(0.4).epsilon(1e-14));
    CHECK(f(0.8, at(20, 4)) == Approx(0.2).epsilon(1e-14));
    CHECK_THROWS_AS((sch::step_decay{0, 0.1}(1.0, at(1, 1))), la::argument_error);
}

TEST_CASE("schedule: cosine", "[schedule]") {
    // min + (base - min) * (1 + cos(pi t / T)) / 2, base 0.1, min 0.001, T = 10 epochs
    sch::cosine s{10, 0.001};
    CHECK(s(0.1, at(0, 100)) == Approx(0.1).epsilon(1e-14));
    // t = 2.5: cos(pi/4) = 0.7071067811865476 -> 0.001 + 0.099 * 0.8535533905932737 = 0.08550178566873410
    CHECK(s(0.1, at(250, 100)) == Approx(0.0855017856687341).epsilon(1e-13));
    CHECK(s(0.1, at(500, 100)) == Approx(0.001 + 0.099 * 0.5).epsilon(1e-14));  // halfway: 0.0505
    // t = 7.5: cos(3 pi / 4) = -0.7071067811865476 -> 0.001 + 0.099 * 0.1464466094067262 = 0.01549821433126590
    CHECK(s(0.1, at(750, 100)) == Approx(0.0154982143312659).epsilon(1e-13));
    CHECK(s(0.1, at(1000, 100)) == Approx(0.001).epsilon(1e-13));  // end
    CHECK(s(0.1, at(1500, 100)) == Approx(0.001).epsilon(1e-13));  // after the end: min
    // monotone non-increasing
    double prev = 1e9;
    for (std::uint64_t k = 0; k <= 1200; k += 7) {
        double v = s(0.1, at(k, 100));
        CHECK(v <= prev + 1e-15);
        prev = v;
    }
    sch::cosine zero{4, 0};
    CHECK(zero(2.0, at(1, 1)) == Approx(2.0 * (1 + std::cos(pi / 4)) / 2).epsilon(1e-14));
    CHECK_THROWS_AS((sch::cosine{0, 0}(1.0, at(1, 1))), la::argument_error);
}

TEST_CASE("schedule: polynomial", "[schedule]") {
    // (base - end) * (1 - t/T)^p + end
    sch::polynomial s{90, 2, 0};
    CHECK(s(1.0, at(0, 1)) == 1.0);
    CHECK(s(1.0, at(45, 1)) == Approx(0.25).epsilon(1e-14));  // (1/2)^2
    CHECK(s(1.0, at(60, 1)) == Approx(1.0 / 9).epsilon(1e-14));  // (1/3)^2
    CHECK(s(1.0, at(90, 1)) == 0.0);
    CHECK(s(1.0, at(200, 1)) == 0.0);
    sch::polynomial lin{10, 1, 0.01};  // linear decay to 0.01
    CHECK(lin(0.11, at(0, 2)) == Approx(0.11).epsilon(1e-14));
    CHECK(lin(0.11, at(5, 2)) == Approx(0.1 * 0.75 + 0.01).epsilon(1e-14));  // t = 2.5
    CHECK(lin(0.11, at(20, 2)) == Approx(0.01).epsilon(1e-14));
    CHECK(lin(0.11, at(40, 2)) == Approx(0.01).epsilon(1e-14));
    sch::polynomial cube{8, 3, 0};
    CHECK(cube(2.0, at(2, 1)) == Approx(2.0 * 0.421875).epsilon(1e-14));  // (6/8)^3
    CHECK_THROWS_AS((sch::polynomial{0, 2, 0}(1.0, at(1, 1))), la::argument_error);
}

TEST_CASE("schedule: warmup_then<cosine>", "[schedule]") {
    // 2 warm-up epochs from 0, then a 10-epoch cosine starting at the end of the warm-up;
    // 100 steps per epoch, base 0.5.
    sch::warmup_then<sch::cosine> s{sch::linear_warmup{2, 0}, sch::cosine{10, 0}};
    CHECK(s(0.5, at(0, 100)) == 0.0);
    CHECK(s(0.5, at(100, 100)) == Approx(0.25).epsilon(1e-14));        // epoch 1: half way up
    CHECK(s(0.5, at(199, 100)) == Approx(0.5 * 1.99 / 2).epsilon(1e-14));  // last warm-up step
    CHECK(s(0.5, at(200, 100)) == Approx(0.5).epsilon(1e-14));         // cosine at its t = 0
    // shifted t = 2.5 epochs at step 450: 0.5 (1 + cos(pi/4)) / 2 = 0.42677669529663687
    CHECK(s(0.5, at(450, 100)) == Approx(0.42677669529663687).epsilon(1e-13));
    CHECK(s(0.5, at(700, 100)) == Approx(0.25).epsilon(1e-13));  // shifted t = 5: half
    CHECK(s(0.5, at(1200, 100)) == Approx(0.0).margin(1e-15));   // shifted t = 10: end
    CHECK(s(0.5, at(5000, 100)) == Approx(0.0).margin(1e-15));
    // class template argument deduction
    sch::warmup_then d{sch::linear_warmup{1, 0.1}, sch::polynomial{4, 1, 0}};
    CHECK(d(1.0, at(0, 10)) == Approx(0.1).epsilon(1e-14));
    CHECK(d(1.0, at(5, 10)) == Approx(0.55).epsilon(1e-14));    // (0.5*1 + 0.5*0.1) / 1
    CHECK(d(1.0, at(10, 10)) == Approx(1.0).epsilon(1e-14));    // polynomial at shifted 0
    CHECK(d(1.0, at(30, 10)) == Approx(0.5).epsilon(1e-14));    // shifted t = 2 of 4: linear half
    CHECK(d(1.0, at(50, 10)) == Approx(0.0).margin(1e-15));
}

TEST_CASE("schedule: linear_scaling and type erasure", "[schedule]") {
    // lr = base * global / base_batch (Goyal et al.): 0.1 at 256 -> 3.2 at 8192
    CHECK(sch::linear_scaling(0.1, 256, 8192) == Approx(3.2).epsilon(1e-14));
    CHECK(sch::linear_scaling(0.1, 256, 256) == 0.1);
    CHECK(sch::linear_scaling(0.1, 256, 64) == Approx(0.025).epsilon(1e-14));
    CHECK_THROWS_AS(sch::linear_scaling(0.1, 0, 64), la::argument_error);
    sch::any a = sch::step_decay{1, 0.5};
    CHECK(a(1.0, at(3, 1)) == Approx(0.125).epsilon(1e-14));
    a = sch::constant{};
    CHECK(a(1.0, at(3, 1)) == 1.0);
}
