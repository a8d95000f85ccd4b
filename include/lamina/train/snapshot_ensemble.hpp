// lamina: an ensemble of snapshots of one classifier (its parameters and running state at
// chosen moments of one training run), predicting the average of the snapshots' softmax
// outputs. The Collapsed Ensemble (train/collapsed_ensemble.hpp) fills one at every collapse.
//
//   lm::snapshot_ensemble<decltype(net)> ens{lm::threads{2}};
//   ens.add(net);                                   // after each cycle, say
//   auto r = ens.evaluate(test);                    // r.snapshots[k], r.ensemble: accuracy, loss
//   ens.predict_proba(x, probs, batch);             // host arrays: batch x classes probabilities
//
// The snapshots live in host memory; inference runs on a model of its own (built on first use
// with the thread count given here), into which each snapshot is loaded in turn, so the
// trained model is never touched. Softmax, averaging and the loss are computed in double:
// the ensemble's loss is -log(mean_k p_k[label]), through log-sum-exp of the snapshots'
// log-probabilities (no underflow to log 0). Argmax ties go to the lowest class, as in evaluate().
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/philox.hpp"
#include "../core/thread_pool.hpp"
#include "../data/dataset.hpp"
#include "training_types.hpp"

namespace lamina {

template <class Model>
class snapshot_ensemble {
public:
    using T = typename Model::value_type;
    static_assert(Model::outputs == 1, "lamina::snapshot_ensemble: the model must have one (classifier) output");
    static constexpr std::size_t classes = Model::output_size;

    struct snapshot {
        std::size_t cycle = 0;   // which cycle (or any label the caller gives)
        std::uint64_t step = 0;  // training steps done when it was taken
        std::vector<T> parameters, state;
    };
    /// evaluate()'s answer: every snapshot on its own, and the ensemble.
    struct report {
        std::vector<evaluation> snapshots;
        evaluation ensemble;
        /// The snapshot with the highest accuracy (ties: the lower loss).
        std::size_t best_snapshot() const {
            std::size_t b = 0;
            for (std::size_t k = 1; k < snapshots.size(); ++k)
                if (snapshots[k].accuracy > snapshots[b].accuracy ||
                    (snapshots[k].accuracy == snapshots[b].accuracy && snapshots[k].loss < snapshots[b].loss))
                    b = k;
            return b;
        }
    };

    explicit snapshot_ensemble(threads t = threads{}) : threads_(t) {}

    /// Keeps a copy of `net`'s parameters and running state.
    void add(const Model& net, std::size_t cycle = 0, std::uint64_t step = 0) {
        snapshot s;
        s.cycle = cycle;
        s.step = step;
        s.parameters = net.get_parameters();
        s.state = net.get_state();
        snaps_.push_back(std::move(s));
    }
    /// Keeps a snapshot given as host arrays (checked against the model's sizes).
    void add(snapshot s) {
        if (s.parameters.size() != Model::parameter_count || s.state.size() != Model::state_count)
            throw shape_error("lamina: snapshot_ensemble: a snapshot has " + std::to_string(s.parameters.size()) +
                              " parameters and " + std::to_string(s.state.size()) +
                              " running-state values, the model has " + std::to_string(Model::parameter_count) +
                              " and " + std::to_string(Model::state_count));
        snaps_.push_back(std::move(s));
    }
    std::size_t size() const noexcept { return snaps_.size(); }
    bool empty() const noexcept { return snaps_.empty(); }
    const snapshot& operator[](std::size_t k) const { return snaps_.at(k); }
    const std::vector<snapshot>& snapshots() const noexcept { return snaps_; }
    void clear() noexcept {
        snaps_.clear();
        loaded_ = npos;
    }
    /// The model snapshots are loaded into (for summaries; its parameters are the last loaded).
    Model& model() { return work(); }

    /// probs[batch x classes] = mean over the snapshots of softmax(snapshot(x)); host arrays,
    /// x is batch x Model::input_size.
    void predict_proba(const T* x, T* probs, std::size_t batch) {
        require_snapshots("predict_proba");
        check_pointers(x, probs, batch);
        acc_.assign(batch * classes, 0.0);
        for (std::size_t k = 0; k < snaps_.size(); ++k) {
            log_softmax(k, x, batch);
            for (std::size_t i = 0; i < batch * classes; ++i) acc_[i] += std::exp(logp_[i]);
        }
        const double inv = 1.0 / static_cast<double>(snaps_.size());
        for (std::size_t i = 0; i < batch * classes; ++i) probs[i] = static_cast<T>(acc_[i] * inv);
    }
    /// Softmax outputs of snapshot k alone.
    void predict_proba(std::size_t k, const T* x, T* probs, std::size_t batch) {
        require_snapshots("predict_proba");
        if (k >= snaps_.size())
            throw argument_error("lamina: snapshot_ensemble::predict_proba: snapshot " + std::to_string(k) +
                                 " of " + std::to_string(snaps_.size()));
        check_pointers(x, probs, batch);
        log_softmax(k, x, batch);
        for (std::size_t i = 0; i < batch * classes; ++i) probs[i] = static_cast<T>(std::exp(logp_[i]));
    }

    /// Accuracy and mean cross-entropy of every snapshot and of the ensemble on `data`
    /// (targets: class labels), in batches of `b.size` samples.
    report evaluate(dataset_view<T> data, batch b = batch{256}) {
        require_snapshots("evaluate");
        check_data(data);
        report r;
        r.snapshots.assign(snaps_.size(), evaluation{});
        if (data.size() == 0) return r;
        const std::size_t bs = std::min(b.size ? b.size : 256, data.size());
        const std::size_t K = snaps_.size();
        std::vector<double> loss(K, 0.0);
        std::vector<std::size_t> correct(K, 0);
        std::vector<double> lse(bs);
        double ens_loss = 0;
        std::size_t ens_correct = 0;
        const double log_k = std::log(static_cast<double>(K));
        for (std::size_t lo = 0; lo < data.size(); lo += bs) {
            const std::size_t n = std::min(bs, data.size() - lo);
            acc_.assign(n * classes, 0.0);
            std::fill(lse.begin(), lse.end(), -std::numeric_limits<double>::infinity());
            for (std::size_t k = 0; k < K; ++k) {
                log_softmax(k, data.sample(lo), n);
                for (std::size_t i = 0; i < n; ++i) {
                    const double* lp = logp_.data() + i * classes;
                    const auto y = static_cast<std::size_t>(*data.target(lo + i));
                    loss[k] -= lp[y];
                    if (argmax(lp) == y) ++correct[k];
                    lse[i] = log_add_exp(lse[i], lp[y]);
                    for (std::size_t j = 0; j < classes; ++j) acc_[i * classes + j] += std::exp(lp[j]);
                }
            }
            for (std::size_t i = 0; i < n; ++i) {
                ens_loss += log_k - lse[i];
                if (argmax(acc_.data() + i * classes) == static_cast<std::size_t>(*data.target(lo + i))) ++ens_correct;
            }
        }
        const double count = static_cast<double>(data.size());
        for (std::size_t k = 0; k < K; ++k) {
            r.snapshots[k].loss = loss[k] / count;
            r.snapshots[k].accuracy = static_cast<double>(correct[k]) / count;
            r.snapshots[k].samples = data.size();
        }
        r.ensemble.loss = ens_loss / count;
        r.ensemble.accuracy = static_cast<double>(ens_correct) / count;
        r.ensemble.samples = data.size();
        return r;
    }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    Model& work() {
        if (!work_) work_ = std::make_unique<Model>(seed{0}, threads_);
        return *work_;
    }
    void load(std::size_t k) {
        if (loaded_ == k) return;
        Model& m = work();
        m.set_parameters(snaps_[k].parameters);
        if constexpr (Model::state_count > 0) m.set_state(snaps_[k].state);
        loaded_ = k;
    }
    /// logp_[batch x classes] = log softmax of snapshot k's outputs on x (double).
    void log_softmax(std::size_t k, const T* x, std::size_t n) {
        load(k);
        logits_.resize(n * classes);
        logp_.resize(n * classes);
        work().predict(x, logits_.data(), n);
        for (std::size_t i = 0; i < n; ++i) {
            const T* z = logits_.data() + i * classes;
            double* lp = logp_.data() + i * classes;
            double mx = static_cast<double>(z[0]);
            for (std::size_t j = 1; j < classes; ++j) mx = std::max(mx, static_cast<double>(z[j]));
            double s = 0;
            for (std::size_t j = 0; j < classes; ++j) s += std::exp(static_cast<double>(z[j]) - mx);
            const double log_s = std::log(s);
            for (std::size_t j = 0; j < classes; ++j) lp[j] = static_cast<double>(z[j]) - mx - log_s;
        }
    }
    static double log_add_exp(double a, double b) {
        if (a == -std::numeric_limits<double>::infinity()) return b;
        if (b == -std::numeric_limits<double>::infinity()) return a;
        const double m = std::max(a, b);
        return m + std::log(std::exp(a - m) + std::exp(b - m));
    }
    static std::size_t argmax(const double* p) {
        std::size_t b = 0;
        for (std::size_t j = 1; j < classes; ++j)
            if (p[j] > p[b]) b = j;
        return b;
    }
    void require_snapshots(const char* where) const {
        if (snaps_.empty())
            throw argument_error(std::string("lamina: snapshot_ensemble::") + where + ": the ensemble has no snapshots");
    }
    static void check_pointers(const T* x, const T* probs, std::size_t batch) {
        if (batch && (!x || !probs))
            throw argument_error("lamina: snapshot_ensemble::predict_proba: null input or output array");
    }
    static void check_data(const dataset_view<T>& d) {
        if (d.size() == 0) return;
        if (d.sample_size != Model::input_size)
            throw shape_error("lamina: snapshot_ensemble::evaluate: samples have " + std::to_string(d.sample_size) +
                              " values, the network input " + Model::input_shape::str() + " takes " +
                              std::to_string(Model::input_size));
        if (d.target_size != 1)
            throw shape_error("lamina: snapshot_ensemble::evaluate: targets have " + std::to_string(d.target_size) +
                              " values per sample, a classifier's target is one class label");
        for (std::size_t i = 0; i < d.size(); ++i) {
            const T t = *d.target(i);
            if (!(t >= T(0)) || t >= static_cast<T>(classes) || t != std::floor(t))
                throw shape_error("lamina: snapshot_ensemble::evaluate: sample " + std::to_string(i) +
                                  " has class label " + std::to_string(static_cast<double>(t)) +
                                  ", not a whole number in 0.." + std::to_string(classes - 1));
        }
    }

    std::vector<snapshot> snaps_;
    threads threads_;
    std::unique_ptr<Model> work_;
    std::size_t loaded_ = npos;
    std::vector<T> logits_;
    std::vector<double> logp_, acc_;
};

}  // namespace lamina
