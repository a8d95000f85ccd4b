// lamina tests: a harness that drives a one-node network (or any network) through the model
// API on host vectors, and a finite-difference gradient check built on it.
//
// The check: with parameters w and input x drawn at random, an upstream gradient r drawn at
// random, the scalar f(x, w) = sum_i forward_train(x, w)_i * r_i has the gradients
// df/dx = backward(dy = r).dx and df/dw = backward(dy = r).dw. Each analytic entry is
// compared with the central difference (f(. + h) - f(. - h)) / 2h, h = 1e-6 in double, with
// |a - n| <= tol * max(1, |a|, |n|) (tol 1e-6 by default). The expected values thus come
// from the node's own forward pass, never from its backward pass: a wrong backward fails.
// Besides, backward must overwrite poisoned parameter gradients, give the same parameter
// gradients without dx, and ADD its input gradient into a poisoned dx when asked to
// accumulate (the graph contract: a backward that overwrites where it should accumulate fails).
//
// Kinks: relu/leaky_relu are not differentiable at 0 and max_pool not at ties, so inputs
// can be drawn away from 0 (input_kind::away_from_zero) or pairwise distinct by a margin
// (input_kind::distinct, a shuffled ladder of values). Dropout: the same `step` is used in
// every evaluation, so the mask is the same in f(. + h), f(. - h) and backward.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <lamina/backends/reference/reference_backend.hpp>
#include <lamina/core/philox.hpp>
#include <lamina/layers/input.hpp>
#include <lamina/layers/layer_concept.hpp>
#include <lamina/network/sequential.hpp>

#if __has_include(<lamina/backends/host/host_backend.hpp>)
#include <lamina/backends/host/host_backend.hpp>
#define LAMINA_TEST_HAS_HOST 1
#else
#define LAMINA_TEST_HAS_HOST 0
#endif

namespace lamina::test {

/// The backends every backend-templated test runs on (host joins once its header exists).
#if LAMINA_TEST_HAS_HOST
using backends = std::tuple<lamina::reference, lamina::host>;
#else
using backends = std::tuple<lamina::reference>;
#endif

template <class S>
struct input_of;
template <std::size_t... D>
struct input_of<shape<D...>> {
    using type = input<D...>;
};
template <class S>
using input_of_t = typename input_of<S>::type;

/// Owns a model of network Net, a device input buffer for a fixed batch, and moves host
/// vectors in and out.
template <class Net, class Backend, class T = double>
class network_harness {
public:
    using model_type = typename Net::template model<Backend, T>;
    using context = typename Backend::context;
    using buffer = typename Backend::template buffer<T>;
    static constexpr std::size_t parameter_count = model_type::parameter_count;
    static constexpr std::size_t in_size = model_type::input_size, out_size = model_type::output_size;

    explicit network_harness(std::size_t batch, std::uint64_t seed = 1) : net_(lamina::seed{seed}, threads{2}), batch_(batch) {
        x_.allocate(batch * in_size);
        dx_.allocate(batch * in_size);
    }

    model_type& model() { return net_; }
    const context& ctx() const { return net_.context(); }
    std::size_t batch() const { return batch_; }

    std::vector<parameter_spec> parameter_specs() const {
        std::vector<parameter_spec> s;
        for (const auto& seg : net_.parameter_segments()) {
            parameter_spec p;
            p.name = seg.name;
            p.count = seg.count;
            p.decay = seg.decay;
            s.push_back(p);
        }
        return s;
    }
    std::vector<T> params() const { return net_.get_parameters(); }
    void set_params(const std::vector<T>& p) { net_.set_parameters(p); }
    void set_param(std::size_t i, T v) { Backend::upload(net_.context(), net_.parameters() + i, &v, 1); }
    std::vector<T> param_grads() const { return net_.get_gradients(); }
    /// Fills the gradient buffer with garbage, so a backward that accumulates instead of
    /// overwriting (or skips an entry) is caught.
    void poison_grads(T v) {
        if (parameter_count) Backend::fill(net_.context(), net_.gradients(), parameter_count, v);
    }

    /// Training forward; keeps x on the device for backward.
    std::vector<T> forward_train(const std::vector<T>& x, std::uint64_t step) {
        upload(x_, x);
        const T* y = net_.forward_train(x_.data(), batch_, step);
        return download(y, batch_ * out_size);
    }
    /// Inference forward (predict: const, its own buffers).
    std::vector<T> forward(const std::vector<T>& x) {
        std::vector<T> y(batch_ * out_size);
        net_.predict(x.data(), y.data(), batch_);
        return y;
    }
    /// Backward after forward_train: returns dx (empty when want_dx is false: no input gradient).
    std::vector<T> backward(const std::vector<T>& dy, bool want_dx = true, T poison_dx = T(777)) {
        Backend::upload(net_.context(), net_.output_gradient(), dy.data(), dy.size());
        if (!want_dx) {
            net_.backward();
            return {};
        }
        Backend::fill(net_.context(), dx_.data(), batch_ * in_size, poison_dx);
        net_.backward(dx_.data());
        return download(dx_.data(), batch_ * in_size);
    }
    /// Backward that adds the input gradient into `base` (returned).
    std::vector<T> backward_accumulate(const std::vector<T>& dy, const std::vector<T>& base) {
        Backend::upload(net_.context(), net_.output_gradient(), dy.data(), dy.size());
        upload(dx_, base);
        net_.backward_accumulate(dx_.data());
        return download(dx_.data(), batch_ * in_size);
    }

private:
    std::vector<T> download(const T* p, std::size_t n) const {
        std::vector<T> h(n);
        if (n) Backend::download(net_.context(), h.data(), p, n);
        return h;
    }
    void upload(buffer& b, const std::vector<T>& h) {
        if (!h.empty()) Backend::upload(net_.context(), b.data(), h.data(), h.size());
    }

    model_type net_;
    std::size_t batch_;
    buffer x_, dx_;
};

/// The harness of one node D on input shape In.
template <class D, class In, class Backend, class T = double>
using node_harness = network_harness<sequential<input_of_t<In>, D>, Backend, T>;

enum class input_kind {
    gaussian,        // N(0, 1)
    away_from_zero,  // sign * (margin + |N(0, 1)|): no relu kink within reach of h
    distinct,        // a shuffled ladder with gaps >= margin / 2: no max-pool ties
};

struct gradient_check_options {
    std::size_t batch = 2;
    std::uint64_t seed = 1;
    std::uint64_t step = 5;       // training step handed to forward_train (dropout mask key)
    double h = 1e-6;              // central-difference step
    double tol = 1e-6;            // |a - n| <= tol * max(1, |a|, |n|)
    input_kind input = input_kind::gaussian;
    double margin = 0.05;
    double param_scale = 0.5;     // parameters ~ U(-scale, scale)
    std::size_t max_entries = 1500;  // per tensor; a random subset (plus both ends) beyond that
    bool inference_matches_train = true;  // false for dropout
};

struct gradient_check_result {
    std::size_t checked = 0, failed = 0;
    double worst_error = 0;          // max |a - n| / max(1, |a|, |n|)
    double max_abs_dx = 0;           // largest |analytic dx| (a check of all-zero gradients is vacuous)
    double max_abs_dw = 0;
    bool grads_overwritten = true;   // backward overwrote poisoned parameter gradients
    bool dx_null_consistent = true;  // backward(dx = nullptr) gives the same parameter gradients
    bool accumulates = true;         // backward_accumulate adds dx into a poisoned buffer
    bool inference_consistent = true;
    std::vector<std::string> messages;  // first few failures

    bool ok() const {
        return failed == 0 && grads_overwritten && dx_null_consistent && accumulates && inference_consistent;
    }
    std::string describe() const {
        char worst[32];
        std::snprintf(worst, sizeof worst, "%.3g", worst_error);
        std::string s = "checked " + std::to_string(checked) + " entries, " + std::to_string(failed) +
                        " failed, worst relative error " + worst +
                        (grads_overwritten ? "" : "; parameter gradients were not overwritten by backward") +
                        (dx_null_consistent ? "" : "; backward(dx = nullptr) gave other parameter gradients") +
                        (accumulates ? "" : "; backward overwrote an input gradient it should have accumulated") +
                        (inference_consistent ? "" : "; inference forward differs from training forward");
        for (auto& m : messages) s += "\n  " + m;
        return s;
    }
};

/// Host-side random test data, drawn from lamina's counter-based stream (only the inputs
/// are random; no expected value comes from lamina).
inline std::vector<double> random_vector(std::size_t n, random_stream s, input_kind kind = input_kind::gaussian,
                                         double margin = 0.05) {
    std::vector<double> v(n);
    switch (kind) {
        case input_kind::gaussian:
            for (std::size_t i = 0; i < n; ++i) v[i] = s.normal(i);
            break;
        case input_kind::away_from_zero:
            for (std::size_t i = 0; i < n; ++i) {
                double z = s.normal(i);
                v[i] = (z < 0 ? -1.0 : 1.0) * (margin + std::abs(z));
            }
            break;
        case input_kind::distinct: {
            // values (k - n/2) * margin for a random permutation k, plus jitter < margin / 4
            std::vector<std::size_t> perm(n);
            for (std::size_t i = 0; i < n; ++i) perm[i] = i;
            random_stream shuf = s.child(1);
            for (std::size_t i = n; i > 1; --i) std::swap(perm[i - 1], perm[shuf.below(i, i)]);
            for (std::size_t i = 0; i < n; ++i)
                v[i] = (static_cast<double>(perm[i]) - static_cast<double>(n) / 2) * margin +
                       (s.uniform_double(i) - 0.5) * margin * 0.5;
            break;
        }
    }
    return v;
}

inline std::vector<double> uniform_vector(std::size_t n, random_stream s, double lo, double hi) {
    std::vector<double> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * s.uniform_double(i);
    return v;
}

/// Which entries of an n-element tensor to check: all, or a random subset of `max` that
/// always includes the first and the last.
inline std::vector<std::size_t> entries_to_check(std::size_t n, std::size_t max, random_stream s) {
    std::vector<std::size_t> idx;
    if (n <= max) {
        for (std::size_t i = 0; i < n; ++i) idx.push_back(i);
        return idx;
    }
    idx.push_back(0);
    idx.push_back(n - 1);
    for (std::size_t k = 0; idx.size() < max; ++k) idx.push_back(static_cast<std::size_t>(s.below(k, n)));
    return idx;
}

/// Gradient check of a whole network Net (T = double).
template <class Net, class Backend>
gradient_check_result check_network_gradients(const gradient_check_options& o = {}) {
    using T = double;
    random_stream root{o.seed, 0x6772616463686bull};
    network_harness<Net, Backend, T> hx(o.batch, o.seed);
    const std::size_t P = network_harness<Net, Backend, T>::parameter_count;
    const std::size_t in_size = network_harness<Net, Backend, T>::in_size;
    const std::size_t out_size = network_harness<Net, Backend, T>::out_size;
    const std::size_t nx = o.batch * in_size, ny = o.batch * out_size;

    std::vector<T> w = uniform_vector(P, root.child(1), -o.param_scale, o.param_scale);
    std::vector<T> x = random_vector(nx, root.child(2), o.input, o.margin);
    std::vector<T> r = random_vector(ny, root.child(3));
    hx.set_params(w);

    gradient_check_result res;
    auto f = [&](const std::vector<T>& xin) {
        auto y = hx.forward_train(xin, o.step);
        long double s = 0;
        for (std::size_t i = 0; i < ny; ++i) s += static_cast<long double>(y[i]) * r[i];
        return static_cast<double>(s);
    };
    auto compare = [&](const std::string& what, std::size_t i, double a, double n) {
        double scale = std::max({1.0, std::abs(a), std::abs(n)});
        double err = std::abs(a - n) / scale;
        res.worst_error = std::max(res.worst_error, err);
        ++res.checked;
        if (!(err <= o.tol)) {  // NaN fails too
            ++res.failed;
            if (res.messages.size() < 12) {
                char buf[200];
                std::snprintf(buf, sizeof buf, "%s[%zu]: analytic %.12g, numeric %.12g", what.c_str(), i, a, n);
                res.messages.push_back(buf);
            }
        }
    };

    // analytic gradients
    auto y_train = hx.forward_train(x, o.step);
    if (o.inference_matches_train) {
        auto y_inf = hx.forward(x);
        for (std::size_t i = 0; i < ny; ++i)
            if (std::abs(y_inf[i] - y_train[i]) > 1e-12 * std::max(1.0, std::abs(y_train[i])))
                res.inference_consistent = false;
    }
    hx.forward_train(x, o.step);
    hx.poison_grads(T(-4242));
    std::vector<T> dx = hx.backward(r, true);
    std::vector<T> dw = hx.param_grads();
    for (double v : dx) res.max_abs_dx = std::max(res.max_abs_dx, std::abs(v));
    for (double v : dw) res.max_abs_dw = std::max(res.max_abs_dw, std::abs(v));
    for (double v : dw)
        if (v == -4242.0) res.grads_overwritten = false;
    if (P) {
        hx.forward_train(x, o.step);
        hx.poison_grads(T(1234));
        hx.backward(r, false);
        auto dw2 = hx.param_grads();
        for (std::size_t i = 0; i < P; ++i)
            if (std::abs(dw2[i] - dw[i]) > 1e-12 * std::max(1.0, std::abs(dw[i]))) res.dx_null_consistent = false;
    }
    {  // accumulate: dx_acc = base + dx
        std::vector<T> base = uniform_vector(nx, root.child(5), 50.0, 60.0);
        hx.forward_train(x, o.step);
        auto acc = hx.backward_accumulate(r, base);
        for (std::size_t i = 0; i < nx; ++i)
            if (std::abs(acc[i] - base[i] - dx[i]) > 1e-9 * std::max(1.0, std::abs(base[i]))) res.accumulates = false;
    }

    // numeric: input
    for (std::size_t i : entries_to_check(nx, o.max_entries, root.child(4))) {
        std::vector<T> xp = x;
        xp[i] = x[i] + o.h;
        double fp = f(xp);
        xp[i] = x[i] - o.h;
        double fm = f(xp);
        compare("dx", i, dx[i], (fp - fm) / (2 * o.h));
    }
    // numeric: each parameter tensor
    std::size_t off = 0, tensor = 0;
    for (const auto& spec : hx.parameter_specs()) {
        for (std::size_t k : entries_to_check(spec.count, o.max_entries, root.child(10 + tensor))) {
            std::size_t i = off + k;
            hx.set_param(i, w[i] + o.h);
            double fp = f(x);
            hx.set_param(i, w[i] - o.h);
            double fm = f(x);
            hx.set_param(i, w[i]);
            compare("d" + spec.name, k, dw[i], (fp - fm) / (2 * o.h));
        }
        off += spec.count;
        ++tensor;
    }
    if (off != P) {
        ++res.failed;
        res.messages.push_back("parameter segments cover " + std::to_string(off) + " of " + std::to_string(P) +
                               " parameters");
    }
    return res;
}

/// Gradient check of node D (a layer or a composite) on input shape In (T = double).
template <class D, class In, class Backend>
gradient_check_result check_layer_gradients(const gradient_check_options& o = {}) {
    return check_network_gradients<sequential<input_of_t<In>, D>, Backend>(o);
}

/// Gradient check of a whole chain of nodes on In.
template <class In, class Backend, class... Layers>
gradient_check_result check_chain_gradients(const gradient_check_options& o = {}) {
    return check_network_gradients<sequential<input_of_t<In>, Layers...>, Backend>(o);
}

}  // namespace lamina::test
