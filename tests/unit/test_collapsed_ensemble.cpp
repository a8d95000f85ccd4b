// The Collapsed Ensemble (train/collapsed_ensemble.hpp) and the snapshot ensemble it fills
// (train/snapshot_ensemble.hpp): where the collapses are and what they change, which snapshots
// are kept, averaged softmax predictions and the ensemble's accuracy and loss against naive
// loops written here, and checkpoints of the new optimizers resuming bit-identically in a
// trainer (mid-collapse, with the collapse callback attached).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <unistd.h>

#include <lamina/lamina.hpp>
#include <lamina/optimizers/lamb.hpp>
#include <lamina/optimizers/lars.hpp>
#include <lamina/schedules/cyclic.hpp>
#include <lamina/train/collapsed_ensemble.hpp>
#include <lamina/train/snapshot_ensemble.hpp>

namespace lm = lamina;

namespace {
// batch norm: snapshots must carry running state too
using bn_net = lm::sequential<lm::input<4>, lm::dense<8>, lm::batch_norm, lm::tanh, lm::dense<3>>;
using bn_model = bn_net::model<lm::host>;
using linear_net = lm::sequential<lm::input<4>, lm::dense<3>>;
using linear_model = linear_net::model<lm::host>;

// Three overlapping classes: class c has a raised value in input c (noise makes some wrong).
lm::dataset<float> blobs(std::size_t n, std::uint64_t seed) {
    lm::dataset<float> d(n, 4, 1);
    lm::random_stream r{seed, 0};
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t c = i % 3;
        *d.target(i) = float(c);
        for (std::size_t k = 0; k < 4; ++k) d.sample(i)[k] = 1.5f * r.uniform(i * 4 + k) + (k == c ? 1.0f : 0.0f);
    }
    return d;
}

std::string temp_path(const std::string& name) { return "/tmp/lamina_test_" + std::to_string(::getpid()) + "_" + name; }

/// First cycle 2 epochs, then 1-epoch cycles; warm-up a quarter epoch from 0.01.
lm::schedule::cyclic_polynomial cycles(std::size_t count) {
    lm::schedule::cyclic_polynomial s;
    s.first_cycle_epochs = 2;
    s.cycle_epochs = 1;
    s.warmup_epochs = 0.25;
    s.start_lr = 0.01;
    s.cycles = count;
    return s;
}

/// The independent rule for the tests' layout (4 steps per epoch, collapses of 0.5 epochs):
/// cycle 0 is steps 0..7, cycle k >= 1 steps 4k + 4 .. 4k + 7; the last two steps of each
/// cycle collapse; nothing collapses after `count` cycles.
bool collapse_step(std::uint64_t s, std::size_t count) {
    if (s >= 4 + 4 * count) return false;
    return s == 6 || s == 7 || (s >= 8 && s % 4 >= 2);
}

/// Records the optimizer's decay scale for every step, and the model where each cycle ends.
template <class Model>
struct recorder {
    std::vector<double> scales;                          // scale set for step k, k = 0, 1, ...
    std::vector<std::vector<float>> params_at_end, state_at_end;
    std::vector<lm::evaluation> eval_at_end;
    const lm::dataset<float>* data = nullptr;
    std::size_t count = 0;
    template <class Tr>
    void on_epoch_begin(Tr& t) {
        if (scales.size() == t.global_step()) scales.push_back(t.optimizer_state_ref().weight_decay_scale());
    }
    template <class Tr>
    void on_step_end(Tr& t, const lm::step_info& i) {
        const std::uint64_t s = i.global_step;
        if (scales.size() == s) scales.push_back(t.optimizer_state_ref().weight_decay_scale());
        if ((s == 8 || (s > 8 && s % 4 == 0)) && s <= 4 + 4 * count) {  // cycle ends: after steps 8, 12, 16, ...
            params_at_end.push_back(t.model().get_parameters());
            state_at_end.push_back(t.model().get_state());
            if (data) eval_at_end.push_back(t.evaluate(*data));
        }
    }
};
}  // namespace

TEST_CASE("collapsed ensemble: collapses double the decay, each cycle end is kept", "[ensemble][collapse]") {
    auto train = blobs(32, 1);  // batch 8: 4 steps per epoch
    auto test = blobs(30, 2);
    bn_model net{lm::seed{3}, lm::threads{1}};
    lm::collapsed_ensemble<bn_model> ce{cycles(3), 0.5, 2.0, lm::threads{1}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.2, 0.9, false, 0.05}, ce.schedule()};
    recorder<bn_model> rec;
    rec.data = &test;
    rec.count = 3;
    fit.run(train, lm::epochs{5}, lm::batch{8}, ce, rec);  // 2 + 1 + 1 epochs of cycles, then one at lr 0

    // The scale before every step: 2 on the last two steps of each cycle (6, 7; 10, 11; 14, 15).
    REQUIRE(rec.scales.size() == 21);
    for (std::uint64_t s = 0; s < 20; ++s) {
        INFO("step " << s);
        CHECK(rec.scales[s] == (collapse_step(s, 3) ? 2.0 : 1.0));
        CHECK(ce.collapsing(lm::schedule::clock{s, 4}) == collapse_step(s, 3));
    }
    // One snapshot per cycle, taken where it ends: the model after steps 8, 12, 16.
    auto& ens = ce.ensemble();
    REQUIRE(ens.size() == 3);
    REQUIRE(rec.params_at_end.size() == 3);
    for (std::size_t k = 0; k < 3; ++k) {
        INFO("snapshot " << k);
        CHECK(ens[k].cycle == k);
        CHECK(ens[k].step == 8 + 4 * k);
        CHECK(ens[k].parameters == rec.params_at_end[k]);
        CHECK(ens[k].state == rec.state_at_end[k]);  // batch norm's running statistics
    }
    CHECK(ens[0].parameters != ens[1].parameters);
    // Each snapshot evaluates as the trained model did at that moment (its running state included).
    auto r = ens.evaluate(test, lm::batch{7});
    REQUIRE(r.snapshots.size() == 3);
    for (std::size_t k = 0; k < 3; ++k) {
        INFO("snapshot " << k);
        CHECK(r.snapshots[k].samples == 30);
        CHECK(r.snapshots[k].accuracy == rec.eval_at_end[k].accuracy);
        CHECK(r.snapshots[k].loss == Approx(rec.eval_at_end[k].loss).epsilon(1e-5));
    }
    CHECK(r.ensemble.samples == 30);
}

namespace {
/// Sets the decay scale before every step from collapse_step(), written without the callback.
struct by_hand {
    template <class Tr>
    void on_epoch_begin(Tr& t) {
        t.optimizer_state_ref().set_weight_decay_scale(collapse_step(t.global_step(), 3) ? 2.0 : 1.0);
    }
    template <class Tr>
    void on_step_end(Tr& t, const lm::step_info& i) {
        t.optimizer_state_ref().set_weight_decay_scale(collapse_step(i.global_step, 3) ? 2.0 : 1.0);
    }
};
}  // namespace

TEST_CASE("collapsed ensemble: the collapse changes training exactly as a doubled decay would", "[ensemble][collapse]") {
    auto train = blobs(32, 1);
    auto sgd = lm::optim::sgd{0.2, 0.9, false, 0.05};
    // A: the collapse callback
    bn_model a{lm::seed{3}, lm::threads{1}};
    lm::collapsed_ensemble<bn_model> ce{cycles(3), 0.5};
    lm::trainer ta{a, lm::loss::softmax_cross_entropy{}, sgd, ce.schedule()};
    ta.run(train, lm::epochs{4}, lm::batch{8}, ce);
    // B: the same schedule with the decay set by hand from the rule above
    bn_model b{lm::seed{3}, lm::threads{1}};
    lm::trainer tb{b, lm::loss::softmax_cross_entropy{}, sgd, cycles(3)};
    tb.run(train, lm::epochs{4}, lm::batch{8}, by_hand{});
    CHECK(a.get_parameters() == b.get_parameters());
    // C: no collapse: the parameters differ (so the comparison above has teeth)
    bn_model c{lm::seed{3}, lm::threads{1}};
    lm::trainer tc{c, lm::loss::softmax_cross_entropy{}, sgd, cycles(3)};
    tc.run(train, lm::epochs{4}, lm::batch{8});
    CHECK(a.get_parameters() != c.get_parameters());
}

TEST_CASE("collapsed ensemble: argument checks", "[ensemble][collapse]") {
    using ce_t = lm::collapsed_ensemble<bn_model>;
    CHECK_THROWS_AS(ce_t(cycles(3), 0.0), lm::argument_error);
    CHECK_THROWS_AS(ce_t(cycles(3), 0.8), lm::argument_error);  // longer than a 1-epoch cycle after its 0.25 warm-up
    CHECK_NOTHROW(ce_t(cycles(3), 0.75));
    CHECK_THROWS_AS(ce_t(cycles(3), 0.5, -1.0), lm::argument_error);
    auto s = cycles(3);
    s.power = 0;
    CHECK_THROWS_AS(ce_t(s, 0.5), lm::argument_error);
}

namespace {
/// Logits of linear_net (dense<3> on 4 inputs: W[3][4] then b[3], PyTorch's layout) by hand.
std::vector<double> softmax_by_hand(const std::vector<float>& p, const float* x) {
    std::vector<double> z(3), q(3);
    double mx = -1e300, s = 0;
    for (std::size_t o = 0; o < 3; ++o) {
        z[o] = p[12 + o];
        for (std::size_t i = 0; i < 4; ++i) z[o] += double(p[o * 4 + i]) * double(x[i]);
        mx = std::max(mx, z[o]);
    }
    for (std::size_t o = 0; o < 3; ++o) s += std::exp(z[o] - mx);
    for (std::size_t o = 0; o < 3; ++o) q[o] = std::exp(z[o] - mx) / s;
    return q;
}
}  // namespace

TEST_CASE("snapshot ensemble: averaged softmax, accuracy and loss against naive loops", "[ensemble]") {
    linear_model net{lm::seed{1}, lm::threads{1}};
    REQUIRE(net.parameter_segments().size() == 2);
    REQUIRE(net.parameter_segments()[0].count == 12);  // the weight first, then the bias
    lm::snapshot_ensemble<linear_model> ens{lm::threads{1}};
    // three snapshots with chosen parameters
    std::vector<std::vector<float>> ps(3, std::vector<float>(15));
    for (std::size_t k = 0; k < 3; ++k)
        for (std::size_t i = 0; i < 15; ++i) ps[k][i] = float(std::sin(double(7 * k + 3 * i) + 0.5) * (1.0 + double(k)));
    for (std::size_t k = 0; k < 3; ++k) {
        lm::snapshot_ensemble<linear_model>::snapshot s;
        s.cycle = k;
        s.parameters = ps[k];
        ens.add(s);
    }
    REQUIRE(ens.size() == 3);
    auto data = blobs(23, 9);
    // predict_proba: mean over the snapshots of softmax(W_k x + b_k)
    std::vector<float> probs(23 * 3), one(23 * 3);
    ens.predict_proba(data.sample(0), probs.data(), 23);
    ens.predict_proba(1, data.sample(0), one.data(), 23);
    double loss[3] = {0, 0, 0}, ens_loss = 0;
    std::size_t correct[3] = {0, 0, 0}, ens_correct = 0;
    for (std::size_t i = 0; i < 23; ++i) {
        const auto y = static_cast<std::size_t>(*data.target(i));
        std::vector<double> mean(3, 0.0);
        for (std::size_t k = 0; k < 3; ++k) {
            auto q = softmax_by_hand(ps[k], data.sample(i));
            for (std::size_t o = 0; o < 3; ++o) mean[o] += q[o] / 3;
            if (k == 1)
                for (std::size_t o = 0; o < 3; ++o) CHECK(one[i * 3 + o] == Approx(q[o]).epsilon(1e-5).margin(1e-7));
            loss[k] -= std::log(q[y]);
            const std::size_t arg = std::max_element(q.begin(), q.end()) - q.begin();
            correct[k] += arg == y;
        }
        for (std::size_t o = 0; o < 3; ++o) CHECK(probs[i * 3 + o] == Approx(mean[o]).epsilon(1e-5).margin(1e-7));
        ens_loss -= std::log(mean[y]);
        ens_correct += std::size_t(std::max_element(mean.begin(), mean.end()) - mean.begin()) == y;
    }
    auto r = ens.evaluate(data, lm::batch{5});
    for (std::size_t k = 0; k < 3; ++k) {
        INFO("snapshot " << k);
        CHECK(r.snapshots[k].loss == Approx(loss[k] / 23).epsilon(1e-5));
        CHECK(r.snapshots[k].accuracy == Approx(double(correct[k]) / 23).epsilon(1e-12));
    }
    CHECK(r.ensemble.loss == Approx(ens_loss / 23).epsilon(1e-5));
    CHECK(r.ensemble.accuracy == Approx(double(ens_correct) / 23).epsilon(1e-12));
    // the ensemble is not just one of its members
    CHECK(r.ensemble.loss != Approx(r.snapshots[0].loss).epsilon(1e-3));
    // best_snapshot: highest accuracy, ties to the lower loss
    std::size_t best = 0;
    for (std::size_t k = 1; k < 3; ++k)
        if (correct[k] > correct[best] || (correct[k] == correct[best] && loss[k] < loss[best])) best = k;
    CHECK(r.best_snapshot() == best);
    // One snapshot: the ensemble is that snapshot.
    lm::snapshot_ensemble<linear_model> single{lm::threads{1}};
    single.add(ens[2]);
    auto r1 = single.evaluate(data);
    CHECK(r1.ensemble.loss == Approx(r1.snapshots[0].loss).epsilon(1e-12));
    CHECK(r1.ensemble.accuracy == r1.snapshots[0].accuracy);
    // The trained model is untouched: add() copies, evaluate() runs on a model of its own.
    auto before = net.get_parameters();
    single.add(net);
    single.evaluate(data);
    CHECK(net.get_parameters() == before);
    CHECK(single[1].parameters == before);
}

TEST_CASE("snapshot ensemble: clear errors", "[ensemble][errors]") {
    lm::snapshot_ensemble<linear_model> ens{lm::threads{1}};
    auto data = blobs(6, 1);
    std::vector<float> probs(6 * 3);
    CHECK_THROWS_WITH(ens.evaluate(data), Catch::Contains("no snapshots"));
    CHECK_THROWS_WITH(ens.predict_proba(data.sample(0), probs.data(), 6), Catch::Contains("no snapshots"));
    lm::snapshot_ensemble<linear_model>::snapshot wrong;
    wrong.parameters.assign(14, 0.0f);
    CHECK_THROWS_WITH(ens.add(wrong), Catch::Contains("14 parameters") && Catch::Contains("15"));
    linear_model net{lm::seed{1}, lm::threads{1}};
    ens.add(net);
    CHECK_THROWS_AS(ens.predict_proba(1, data.sample(0), probs.data(), 6), lm::argument_error);
    CHECK_THROWS_AS(ens.predict_proba(nullptr, probs.data(), 6), lm::argument_error);
    *data.target(4) = 3.0f;  // 3 classes: labels 0..2
    CHECK_THROWS_WITH(ens.evaluate(data), Catch::Contains("sample 4") && Catch::Contains("0..2"));
    *data.target(4) = 1.5f;
    CHECK_THROWS_WITH(ens.evaluate(data), Catch::Contains("sample 4"));
    lm::dataset<float> five(3, 5, 1);
    CHECK_THROWS_WITH(ens.evaluate(five), Catch::Contains("5 values"));
    lm::dataset<float> two_targets(3, 4, 2);
    CHECK_THROWS_WITH(ens.evaluate(two_targets), Catch::Contains("2 values per sample"));
}

TEST_CASE("lars and lamb checkpoints resume bit-identically, mid-collapse", "[checkpoint][ensemble][optim]") {
    auto train = blobs(32, 1);  // 4 steps per epoch; cycles end after steps 8, 12, 16, 20
    auto check = [&](auto opt) {
        using Opt = decltype(opt);
        const std::string path = temp_path(Opt::name() + "_collapse.lmck");
        // uninterrupted
        bn_model full{lm::seed{5}, lm::threads{2}};
        lm::collapsed_ensemble<bn_model> ce_full{cycles(4), 0.5};
        lm::trainer t_full{full, lm::loss::softmax_cross_entropy{}, opt, ce_full.schedule()};
        t_full.run(train, lm::epochs{5}, lm::batch{8}, ce_full);
        REQUIRE(ce_full.ensemble().size() == 4);
        // interrupted after step 10, the first step of cycle 1's collapse
        bn_model first{lm::seed{5}, lm::threads{2}};
        lm::collapsed_ensemble<bn_model> ce_first{cycles(4), 0.5};
        lm::trainer t1{first, lm::loss::softmax_cross_entropy{}, opt, ce_first.schedule()};
        struct save_at {
            std::string path;
            void on_step_end(decltype(t1)& t, const lm::step_info& i) {
                if (i.global_step == 10) lm::save_checkpoint(path, t);
            }
        };
        t1.run(train, lm::epochs{3}, lm::batch{8}, ce_first, save_at{path});
        bn_model second{lm::seed{77}, lm::threads{2}};
        lm::collapsed_ensemble<bn_model> ce_second{cycles(4), 0.5};
        lm::trainer t2{second, lm::loss::softmax_cross_entropy{}, opt, ce_second.schedule()};
        lm::load_checkpoint(path, t2);
        CHECK(t2.global_step() == 10);
        t2.run(train, lm::epochs{3}, lm::batch{8}, ce_second);  // the rest of epoch 3, then epochs 4 and 5
        CHECK(t2.global_step() == 20);
        CHECK(second.get_parameters() == full.get_parameters());
        CHECK(second.get_state() == full.get_state());
        REQUIRE(ce_second.ensemble().size() == 3);  // cycles 1..3 ended after the resume
        for (std::size_t k = 0; k < 3; ++k) CHECK(ce_second.ensemble()[k].parameters == ce_full.ensemble()[k + 1].parameters);
        // the checkpoint holds this optimizer's state under its name
        auto rs = lm::io::record_set::load(path);
        CHECK(rs.get_string("optimizer", path) == Opt::name());
        for (const auto& [name, size] : t2.optimizer_state_ref().layout()) {
            INFO(name);
            CHECK(rs.has("optimizer." + name));
        }
        // and a trainer with another optimizer refuses it
        bn_model other{lm::seed{5}, lm::threads{2}};
        lm::trainer t_other{other, lm::loss::softmax_cross_entropy{}, lm::optim::sgd{0.1}};
        CHECK_THROWS_AS(lm::load_checkpoint(path, t_other), lm::checkpoint_error);
        std::remove(path.c_str());
    };
    SECTION("lars") { check(lm::optim::lars{0.5, 0.9, 1e-3, 0.02}); }
    SECTION("lamb") { check(lm::optim::lamb{0.05, 0.01}); }
}
