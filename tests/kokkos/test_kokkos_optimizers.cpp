// Every optimizer state (sgd, adam, adamw, rmsprop, adadelta, lars, lamb) on the Kokkos backend
// against the same optimizer on the reference backend: four steps on random float parameters
// laid out as a small network's tensors (weights spanning several of segment_norms' chunks,
// biases without decay, an empty tensor), with a changing rate and the weight decay doubled for
// the last step (set_weight_decay_scale). Weights, the saved state and, for LARS and LAMB, the
// per-tensor trust ratios must agree within the Kokkos tests' tolerance.
#include "kokkos_test_support.hpp"

#include <lamina/backends/reference/reference_backend.hpp>
#include <lamina/optimizers/adadelta.hpp>
#include <lamina/optimizers/adam.hpp>
#include <lamina/optimizers/lamb.hpp>
#include <lamina/optimizers/lars.hpp>
#include <lamina/optimizers/rmsprop.hpp>
#include <lamina/optimizers/sgd.hpp>

#include <type_traits>
#include <vector>

namespace lm = lamina;
using ref = lm::reference;
using kt::dev;
using kt::random_vector;

namespace {

const std::vector<lm::parameter_segment> segs{{"0:conv.weight", 0, 0, 2000, true},
                                              {"0:conv.bias", 0, 2000, 16, false},
                                              {"1:empty", 1, 2016, 0, true},
                                              {"2:dense.weight", 2, 2016, 700, true},
                                              {"2:dense.bias", 2, 2716, 10, false}};
constexpr std::size_t n = 2726;

template <class B, class Opt>
void compare(const Opt& opt) {
    typename B::context c;
    ref::context rc;
    auto w0 = random_vector<float>(n, 31);
    typename Opt::template state<B, float> ks(opt, n);
    typename Opt::template state<ref, float> rs(opt, n);
    dev<B, float> dw(w0), dg(n);
    auto rw = w0;
    const double rates[4] = {0.05, 0.03, 0.02, 0.01};
    for (int step = 0; step < 4; ++step) {
        auto g = random_vector<float>(n, 40 + static_cast<std::uint64_t>(step));
        if (step == 3) {  // the collapse doubles the decay
            ks.set_weight_decay_scale(2.0);
            rs.set_weight_decay_scale(2.0);
        }
        B::upload(c, dg.data(), g.data(), n);
        ks.step(c, dw.data(), static_cast<const float*>(dg.data()), segs, rates[step]);
        rs.step(rc, rw.data(), g.data(), segs, rates[step]);
        if constexpr (std::is_same_v<Opt, lm::optim::lars> || std::is_same_v<Opt, lm::optim::lamb>) {
            const auto kr = ks.trust_ratios(c), rr = rs.trust_ratios(rc);
            KT_REQUIRE_CLOSE(kr, rr);
            REQUIRE(kr.size() == segs.size());
            REQUIRE(kr[1] == 1.0);  // a bias: no trust ratio
        }
    }
    KT_REQUIRE_CLOSE(dw.host(), rw);
    REQUIRE(dw.host() != w0);
    const auto kst = ks.save(c), rst = rs.save(rc);
    REQUIRE(kst.size() == rst.size());
    for (std::size_t k = 0; k < kst.size(); ++k) {
        INFO("state " << rst[k].first);
        REQUIRE(kst[k].first == rst[k].first);
        KT_REQUIRE_CLOSE(kst[k].second, rst[k].second);
    }
    REQUIRE(ks.steps() == 4);
}

}  // namespace

TEMPLATE_TEST_CASE("kokkos optimizer states match the reference", "[kokkos][optimizer]", LAMINA_KOKKOS_TEST_SPACES) {
    using B = lm::kokkos_backend<TestType>;
    namespace o = lm::optim;
    SECTION("sgd") { compare<B>(o::sgd(0.05, 0.9, true, 5e-3)); }
    SECTION("adam") { compare<B>(o::adam(1e-2, 0.9, 0.999, 1e-8, 1e-2)); }
    SECTION("adamw") { compare<B>(o::adamw(1e-2, 1e-2)); }
    SECTION("rmsprop") { compare<B>(o::rmsprop(1e-2, 0.9, 1e-8, 1e-2)); }
    SECTION("rmsprop centered, momentum") { compare<B>(o::rmsprop(1e-2, 0.9, 1e-8, 1e-2, 0.5, true)); }
    SECTION("adadelta") { compare<B>(o::adadelta(1.0, 0.9, 1e-6, 1e-2)); }
    SECTION("lars") { compare<B>(o::lars(0.5, 0.9, 5e-3, 0.02)); }
    SECTION("lamb") { compare<B>(o::lamb(1e-2, 1e-2)); }
}
