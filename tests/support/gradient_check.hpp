// lamina tests: a harness that drives one runtime layer (or a layer_chain) through the
// backend interface on host vectors, and a finite-difference gradient check built on it.
//
// The check: with parameters w and input x drawn at random, an upstream gradient r drawn at
// random, the scalar f(x, w) = sum_i forward_train(x, w)_i * r_i has the gradients
// df/dx = backward(dy = r).dx and df/dw = backward(dy = r).dw. Each analytic entry is
// compared with the central difference (f(. + h) - f(. - h)) / 2h, h = 1e-6 in double, with
// |a - n| <= tol * max(1, |a|, |n|) (tol 1e-6 by default). The expected values thus come
// from the layer's own forward pass, never from its backward pass: a wrong backward fails.
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
#include <lamina/layers/layer_concept.hpp>
#include <lamina/network/layer_chain.hpp>

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

namespace detail {
template <class Impl, class = void>
struct has_set_stream : std::false_type {};
template <class Impl>
struct has_set_stream<Impl, std::void_t<decltype(std::declval<Impl&>().set_stream(random_stream{}))>>
    : std::true_type {};

/// Layers have forward(c, x, y, batch, ws); layer_chain has forward(c, x, y, batch, ws, scratch).
template <class Impl, class Ctx, class T, class = void>
struct has_plain_forward : std::false_type {};
template <class Impl, class Ctx, class T>
struct has_plain_forward<Impl, Ctx, T,
                         std::void_t<decltype(std::declval<const Impl&>().forward(
                             std::declval<const Ctx&>(), std::declval<const T*>(), std::declval<T*>(), std::size_t(1),
                             std::declval<T*>()))>> : std::true_type {};
}  // namespace detail

/// Owns one runtime layer, its flat parameter/gradient buffers, device input/output/
/// workspace buffers for a fixed batch, and moves host vectors in and out.
template <class Impl, class Backend, class T = double>
class layer_harness {
public:
    using context = typename Backend::context;
    using buffer = typename Backend::template buffer<T>;
    static constexpr std::size_t parameter_count = Impl::parameter_count;

    layer_harness(std::size_t in_size, std::size_t out_size, std::size_t batch, random_stream stream = {})
        : in_size_(in_size), out_size_(out_size), batch_(batch) {
        params_.allocate(std::max<std::size_t>(parameter_count, 1));
        grads_.allocate(std::max<std::size_t>(parameter_count, 1));
        impl_.bind_parameters(parameter_count ? params_.data() : nullptr, parameter_count ? grads_.data() : nullptr);
        if constexpr (detail::has_set_stream<Impl>::value) impl_.set_stream(stream);
        impl_.plan(ctx_, batch);
        x_.allocate(batch * in_size);
        y_.allocate(batch * out_size);
        y_infer_.allocate(batch * out_size);
        dy_.allocate(batch * out_size);
        dx_.allocate(batch * in_size);
        ws_.allocate(std::max<std::size_t>(impl_.workspace_size(batch), 1));
        if constexpr (!detail::has_plain_forward<Impl, context, T>::value)
            scratch_.allocate(std::max<std::size_t>(Impl::inference_scratch_size(batch), 1));
    }

    Impl& impl() { return impl_; }
    const context& ctx() const { return ctx_; }
    std::size_t batch() const { return batch_; }
    std::size_t in_size() const { return in_size_; }
    std::size_t out_size() const { return out_size_; }

    std::vector<parameter_spec> parameter_specs() const {
        if constexpr (detail::has_plain_forward<Impl, context, T>::value) {
            return impl_.parameter_specs();
        } else {
            std::vector<parameter_spec> s;
            for (auto& p : impl_.parameter_specs()) {
                s.push_back(p.second);
                s.back().name = std::to_string(p.first) + "." + s.back().name;
            }
            return s;
        }
    }

    std::vector<T> params() const { return download(params_, parameter_count); }
    void set_params(const std::vector<T>& p) { upload(params_, p); }
    void set_param(std::size_t i, T v) { Backend::upload(ctx_, params_.data() + i, &v, 1); }
    std::vector<T> param_grads() const { return download(grads_, parameter_count); }
    /// Fills the gradient buffer with garbage, so a backward that accumulates instead of
    /// overwriting (or skips an entry) is caught.
    void poison_grads(T v) {
        if (parameter_count) Backend::fill(ctx_, grads_.data(), parameter_count, v);
    }

    /// Training forward; keeps x and y on the device for backward.
    std::vector<T> forward_train(const std::vector<T>& x, std::uint64_t step) {
        upload(x_, x);
        impl_.forward_train(ctx_, x_.data(), y_.data(), batch_, ws_.data(), step);
        return download(y_, batch_ * out_size_);
    }
    /// Inference forward (const in the layer; separate input/output buffers).
    std::vector<T> forward(const std::vector<T>& x) {
        buffer xi;
        xi.allocate(batch_ * in_size_);
        upload(xi, x);
        const Impl& l = impl_;
        if constexpr (detail::has_plain_forward<Impl, context, T>::value)
            l.forward(ctx_, xi.data(), y_infer_.data(), batch_, ws_.data());
        else
            l.forward(ctx_, xi.data(), y_infer_.data(), batch_, ws_.data(), scratch_.data());
        return download(y_infer_, batch_ * out_size_);
    }
    /// Backward after forward_train: returns dx (empty when want_dx is false: dx = nullptr).
    std::vector<T> backward(const std::vector<T>& dy, bool want_dx = true, T poison_dx = T(777)) {
        upload(dy_, dy);
        if (want_dx) Backend::fill(ctx_, dx_.data(), batch_ * in_size_, poison_dx);
        impl_.backward(ctx_, x_.data(), y_.data(), dy_.data(), want_dx ? dx_.data() : static_cast<T*>(nullptr), batch_,
                       ws_.data());
        return want_dx ? download(dx_, batch_ * in_size_) : std::vector<T>{};
    }

private:
    std::vector<T> download(const buffer& b, std::size_t n) const {
        std::vector<T> h(n);
        if (n) Backend::download(ctx_, h.data(), b.data(), n);
        return h;
    }
    void upload(buffer& b, const std::vector<T>& h) {
        if (!h.empty()) Backend::upload(ctx_, b.data(), h.data(), h.size());
    }

    context ctx_{};
    Impl impl_{};
    std::size_t in_size_, out_size_, batch_;
    buffer params_, grads_, x_, y_, y_infer_, dy_, dx_, ws_, scratch_;
};

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
    bool inference_consistent = true;
    std::vector<std::string> messages;  // first few failures

    bool ok() const { return failed == 0 && grads_overwritten && dx_null_consistent && inference_consistent; }
    std::string describe() const {
        char worst[32];
        std::snprintf(worst, sizeof worst, "%.3g", worst_error);
        std::string s = "checked " + std::to_string(checked) + " entries, " + std::to_string(failed) +
                        " failed, worst relative error " + worst +
                        (grads_overwritten ? "" : "; parameter gradients were not overwritten by backward") +
                        (dx_null_consistent ? "" : "; backward(dx = nullptr) gave other parameter gradients") +
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

/// Gradient check of any runtime layer type Impl (a layer's impl or a layer_chain).
template <class Impl, class Backend>
gradient_check_result check_impl_gradients(std::size_t in_size, std::size_t out_size,
                                           const gradient_check_options& o = {}) {
    using T = double;
    random_stream root{o.seed, 0x6772616463686bull};
    layer_harness<Impl, Backend, T> hx(in_size, out_size, o.batch, root.child(100));
    const std::size_t P = Impl::parameter_count;
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
        hx.forward_train(x, o.step);  // restore the training state (argmax, masks) of x
    }
    hx.poison_grads(T(-4242));
    std::vector<T> dx = hx.backward(r, true);
    std::vector<T> dw = hx.param_grads();
    for (double v : dx) res.max_abs_dx = std::max(res.max_abs_dx, std::abs(v));
    for (double v : dw) res.max_abs_dw = std::max(res.max_abs_dw, std::abs(v));
    for (double v : dw)
        if (v == -4242.0) res.grads_overwritten = false;
    if (P) {
        hx.poison_grads(T(1234));
        hx.backward(r, false);
        auto dw2 = hx.param_grads();
        for (std::size_t i = 0; i < P; ++i)
            if (std::abs(dw2[i] - dw[i]) > 1e-12 * std::max(1.0, std::abs(dw[i]))) res.dx_null_consistent = false;
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
        res.messages.push_back("parameter specs cover " + std::to_string(off) + " of " + std::to_string(P) +
                               " parameters");
    }
    return res;
}

/// Gradient check of layer descriptor L on input shape In (T = double).
template <class L, class In, class Backend>
gradient_check_result check_layer_gradients(const gradient_check_options& o = {}) {
    using impl = typename L::template impl<In, Backend, double>;
    using out = typename L::template output_shape<In>;
    return check_impl_gradients<impl, Backend>(In::size, out::size, o);
}

/// Gradient check of a whole layer_chain<In, Backend, double, Layers...>.
template <class In, class Backend, class... Layers>
gradient_check_result check_chain_gradients(const gradient_check_options& o = {}) {
    using chain = layer_chain<In, Backend, double, Layers...>;
    return check_impl_gradients<chain, Backend>(In::size, chain::output_shape::size, o);
}

}  // namespace lamina::test
