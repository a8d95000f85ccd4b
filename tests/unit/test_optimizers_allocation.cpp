// The new optimizers' steps and the Collapsed Ensemble's per-step callback allocate nothing
// after the first step (the per-tensor layout of LARS and LAMB is built once), counted with a
// replaced global operator new as tests/unit/test_allocation.cpp does.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include <lamina/lamina.hpp>
#include <lamina/optimizers/adadelta.hpp>
#include <lamina/optimizers/lamb.hpp>
#include <lamina/optimizers/lars.hpp>
#include <lamina/optimizers/rmsprop.hpp>
#include <lamina/schedules/cyclic.hpp>
#include <lamina/train/collapsed_ensemble.hpp>

static std::atomic<long> g_allocations{0};

#if defined(__SANITIZE_ADDRESS__)
// As in tests/unit/test_allocation.cpp: ASan's own operator new can reach this file's delete.
extern "C" const char* __asan_default_options() { return "alloc_dealloc_mismatch=0"; }
#endif

void* operator new(std::size_t n) {
    ++g_allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
// free() matches the malloc() above; GCC cannot see that the two replacements pair up.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace lm = lamina;

namespace {
template <class B, class Opt>
long allocations_in_steps(const Opt& opt, unsigned threads) {
    const std::vector<lm::parameter_segment> segs{{"0:conv.weight", 0, 0, 1000, true},
                                                  {"0:conv.bias", 0, 1000, 8, false},
                                                  {"1:dense.weight", 1, 1008, 300, true}};
    const std::size_t n = 1308;
    typename B::context c{lm::threads{threads}};
    typename B::template buffer<float> w(n), g(n);
    std::vector<float> h(n);
    for (std::size_t i = 0; i < n; ++i) h[i] = float(i % 17) / 17.0f - 0.4f;
    B::upload(c, w.data(), h.data(), n);
    B::upload(c, g.data(), h.data(), n);
    typename Opt::template state<B, float> st(opt, n);
    st.step(c, w.data(), g.data(), segs, 0.01);  // the first step may build its layout
    const long before = g_allocations.load();
    for (int s = 0; s < 4; ++s) st.step(c, w.data(), g.data(), segs, 0.01);
    st.set_weight_decay_scale(2.0);
    st.step(c, w.data(), g.data(), segs, 0.01);
    return g_allocations.load() - before;
}
}  // namespace

TEST_CASE("new optimizers: steps 2..N allocate nothing", "[optim][allocation]") {
    namespace o = lm::optim;
    for (unsigned threads : {1u, 2u}) {
        long used[6] = {allocations_in_steps<lm::host>(o::rmsprop(0.01, 0.9, 1e-8, 1e-2, 0.9, true), threads),
                        allocations_in_steps<lm::host>(o::adadelta(1.0, 0.9, 1e-6, 1e-2), threads),
                        allocations_in_steps<lm::host>(o::lars(0.1, 0.9, 1e-3), threads),
                        allocations_in_steps<lm::host>(o::lamb(1e-3, 1e-2), threads),
                        allocations_in_steps<lm::host>(o::sgd(0.1, 0.9, true, 1e-3), threads),
                        allocations_in_steps<lm::reference>(o::lars(0.1, 0.9, 1e-3), threads)};
        INFO(threads << " thread(s): rmsprop, adadelta, lars, lamb, sgd, lars on the reference backend");
        for (long u : used) CHECK(u == 0);
    }
}

TEST_CASE("collapsed ensemble: the per-step callback allocates nothing between snapshots", "[ensemble][allocation]") {
    using net_t = lm::sequential<lm::input<4>, lm::dense<8>, lm::relu, lm::dense<3>>;
    using model_t = net_t::model<lm::host>;
    model_t net{lm::seed{1}, lm::threads{1}};
    lm::schedule::cyclic_polynomial s;
    s.cycle_epochs = 2;
    s.warmup_epochs = 0.5;
    s.cycles = 3;
    lm::collapsed_ensemble<model_t> ce{s, 0.5};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::lars{0.1, 0.9, 1e-3}, ce.schedule()};
    lm::step_info info;
    info.steps_per_epoch = 4;
    const long before = g_allocations.load();
    for (std::uint64_t step = 1; step < 8; ++step) {  // steps inside cycle 0, collapse included (6, 7)
        info.global_step = step;
        ce.on_step_end(fit, info);
    }
    ce.on_epoch_begin(fit);
    const long used = g_allocations.load() - before;
    CHECK(used == 0);
    CHECK(ce.ensemble().size() == 0);
    info.global_step = 8;  // cycle 0 ends: a snapshot (which allocates, once per cycle)
    ce.on_step_end(fit, info);
    CHECK(ce.ensemble().size() == 1);
    CHECK(fit.optimizer_state_ref().weight_decay_scale() == 1.0);  // step 8 is no collapse
    info.global_step = 7;
    ce.on_step_end(fit, info);
    CHECK(fit.optimizer_state_ref().weight_decay_scale() == 2.0);  // step 7 is
}
