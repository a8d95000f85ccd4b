// lamina: a chain of layers with compile-time shapes, itself usable as a layer.
//
// layer_chain<In, Backend, T, L1, ..., Ln> holds the runtime layers L_i::impl<S_i, Backend, T>
// where S_1 = In and S_{i+1} = L_i::output_shape<S_i> (checked, see shape_check.hpp). It owns
// the intermediate activations (kept for backward) and two ping-pong gradient buffers, all
// sized once by plan(batch): training steps allocate nothing.
//
// Layer fusion (decided at compile time): a layer with a fused activation epilogue (dense:
// `fuses_activation`) followed by an activation layer whose derivative needs only its output
// (`fusable_into_producer`: relu, sigmoid, tanh, leaky_relu with slope >= 0) runs as one
// kernel: the producer writes act(...) straight into the activation layer's output, the
// activation layer's forward is skipped and its backward gets y in place of x. No buffer
// holds the pre-activation. Define LAMINA_NO_LAYER_FUSION to turn this off (same results).
#pragma once

#include <cstdint>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "../core/philox.hpp"
#include "../layers/layer_concept.hpp"
#include "shape_check.hpp"

namespace lamina {

namespace detail {

/// Shapes S_1..S_{n+1} of a chain as a tuple of types.
template <class In, class... Ls>
struct chain_shapes;
template <class In>
struct chain_shapes<In> {
    using type = std::tuple<In>;
};
template <class In, class L, class... Ls>
struct chain_shapes<In, L, Ls...> {
    using next = checked_output_t<L, In>;
    using type = decltype(std::tuple_cat(std::declval<std::tuple<In>>(),
                                         std::declval<typename chain_shapes<next, Ls...>::type>()));
};

template <class Impl, class = void>
struct has_set_stream : std::false_type {};
template <class Impl>
struct has_set_stream<Impl, std::void_t<decltype(std::declval<Impl&>().set_stream(random_stream{}))>> : std::true_type {};

template <class Impl, class = void>
struct fuses_activation : std::false_type {};
template <class Impl>
struct fuses_activation<Impl, std::enable_if_t<Impl::fuses_activation>> : std::true_type {};
template <class Impl, class = void>
struct fusable_activation : std::false_type {};
template <class Impl>
struct fusable_activation<Impl, std::enable_if_t<Impl::fusable_into_producer>> : std::true_type {};

}  // namespace detail

template <class In, class Backend, class T, class... Layers>
class layer_chain {
    static_assert(sizeof...(Layers) >= 1, "lamina: a network needs at least one layer after its input");

public:
    using context = typename Backend::context;
    using shapes = typename detail::chain_shapes<In, Layers...>::type;
    static constexpr std::size_t depth = sizeof...(Layers);
    template <std::size_t I>
    using shape_at = std::tuple_element_t<I, shapes>;  // input of layer I; shape_at<depth> = output
    using input_shape = In;
    using output_shape = shape_at<depth>;

private:
    template <std::size_t... I>
    static auto make_impls(std::index_sequence<I...>)
        -> std::tuple<typename Layers::template impl<shape_at<I>, Backend, T>...>;
    using impls_type = decltype(make_impls(std::index_sequence_for<Layers...>{}));

    template <std::size_t... I>
    static constexpr std::size_t sum_params(std::index_sequence<I...>) {
        return (std::size_t(0) + ... + std::tuple_element_t<I, impls_type>::parameter_count);
    }
    template <std::size_t... I>
    static constexpr double sum_flops(std::index_sequence<I...>) {
        return (0.0 + ... + std::tuple_element_t<I, impls_type>::flops_per_sample);
    }
    template <std::size_t... I>
    static constexpr std::size_t max_activation(std::index_sequence<I...>) {
        std::size_t m = 0;
        ((m = shape_at<I + 1>::size > m ? shape_at<I + 1>::size : m), ...);
        return m;
    }

public:
    template <std::size_t I>
    using impl_at = std::tuple_element_t<I, impls_type>;
    static constexpr std::size_t parameter_count = sum_params(std::index_sequence_for<Layers...>{});
    static constexpr double flops_per_sample = sum_flops(std::index_sequence_for<Layers...>{});
    /// Largest per-sample activation of any layer (input excluded).
    static constexpr std::size_t max_activation_size = max_activation(std::index_sequence_for<Layers...>{});

    /// Layer I applies layer I + 1 (an activation) in its own epilogue (see the file comment).
    template <std::size_t I>
    static constexpr bool fused_with_next = [] {
#if defined(LAMINA_NO_LAYER_FUSION)
        return false;
#else
        if constexpr (I + 1 >= depth) return false;
        else return detail::fuses_activation<std::tuple_element_t<I, impls_type>>::value &&
                    detail::fusable_activation<std::tuple_element_t<I + 1, impls_type>>::value;
#endif
    }();
    /// Layer I is an activation applied by layer I - 1: its forward is skipped.
    template <std::size_t I>
    static constexpr bool absorbed = [] {
        if constexpr (I == 0) return false;
        else return fused_with_next<I - 1>;
    }();

private:
    template <std::size_t J, std::size_t... I>
    static constexpr std::size_t count_executed(std::index_sequence<I...>) {
        return (std::size_t(0) + ... + (I <= J && !absorbed<I> ? std::size_t(1) : std::size_t(0)));
    }

public:
    /// How many layers in 0..J run their own kernels (absorbed activations do not).
    template <std::size_t J>
    static constexpr std::size_t executed_through = count_executed<J>(std::index_sequence_for<Layers...>{});

    template <std::size_t I>
    auto& layer() { return std::get<I>(impls_); }
    template <std::size_t I>
    const auto& layer() const { return std::get<I>(impls_); }

    /// Parameter specs of every layer in order, each tagged with its layer index.
    std::vector<std::pair<std::size_t, parameter_spec>> parameter_specs() const {
        std::vector<std::pair<std::size_t, parameter_spec>> all;
        for_each_layer([&](auto i, const auto& l) {
            for (auto& p : l.parameter_specs()) all.emplace_back(decltype(i)::value, p);
        });
        return all;
    }

    /// Hands each layer its slice of the flat parameter and gradient buffers.
    void bind_parameters(T* w, T* g) {
        std::size_t off = 0;
        for_each_layer_mut([&](auto, auto& l) {
            using L = std::decay_t<decltype(l)>;
            l.bind_parameters(L::parameter_count ? w + off : nullptr, L::parameter_count ? g + off : nullptr);
            off += L::parameter_count;
        });
    }

    /// Gives every stochastic layer its own random stream derived from `s`.
    void set_stream(random_stream s) {
        for_each_layer_mut([&](auto i, auto& l) {
            using L = std::decay_t<decltype(l)>;
            if constexpr (detail::has_set_stream<L>::value) l.set_stream(s.child(decltype(i)::value));
        });
    }

    /// Sizes every buffer for up to `batch` samples; a no-op when the capacity suffices, so a
    /// smaller last batch of an epoch reuses the buffers.
    void plan(const context& c, std::size_t batch) {
        if (batch <= planned_batch_) return;
        activations_.clear();
        activations_.resize(depth > 0 ? depth - 1 : 0);
        plan_activations(batch, std::make_index_sequence<depth - 1>{});
        for (auto& g : grads_) g.allocate(batch * max_activation_size);
        for_each_layer_mut([&](auto, auto& l) { l.plan(c, batch); });
        planned_batch_ = batch;
    }
    std::size_t planned_batch() const { return planned_batch_; }

    std::size_t workspace_size(std::size_t batch) const {
        std::size_t m = 0;
        for_each_layer([&](auto, const auto& l) { m = std::max(m, l.workspace_size(batch)); });
        return m;
    }
    /// Scratch T elements const inference needs besides the workspace: two ping-pong buffers.
    static constexpr std::size_t inference_scratch_size(std::size_t batch) { return 2 * batch * max_activation_size; }

    /// Training forward: keeps every intermediate activation for backward.
    void forward_train(const context& c, const T* x, T* y, std::size_t batch, T* ws, std::uint64_t step) {
        forward_train_impl(c, x, y, batch, ws, step, std::index_sequence_for<Layers...>{});
    }
    /// Backward through the chain: needs the x and y of the preceding forward_train.
    void backward(const context& c, const T* x, const T* y, const T* dy, T* dx, std::size_t batch, T* ws) {
        backward_impl<depth - 1>(c, x, y, dy, dx, batch, ws);
    }
    /// Const inference through caller-provided scratch (inference_scratch_size elements).
    void forward(const context& c, const T* x, T* y, std::size_t batch, T* ws, T* scratch) const {
        forward_impl(c, x, y, batch, ws, scratch, std::index_sequence_for<Layers...>{});
    }

    /// Device pointer to the output of layer I from the last forward_train (I < depth - 1).
    /// Not kept for a layer whose activation is fused into it (fused_with_next<I>).
    template <std::size_t I>
    const T* activation() const {
        static_assert(!fused_with_next<I>, "lamina: this layer's output is not kept: its activation is fused into it");
        return activations_[I].data();
    }

    template <class F>
    void for_each_layer(F&& f) const {
        for_each_impl(f, std::index_sequence_for<Layers...>{});
    }
    template <class F>
    void for_each_layer_mut(F&& f) {
        for_each_impl_mut(f, std::index_sequence_for<Layers...>{});
    }

private:
    template <std::size_t... I>
    void plan_activations(std::size_t batch, std::index_sequence<I...>) {
        (void)batch;  // unused by a one-layer chain (no intermediate activations)
        ((activations_[I].allocate(fused_with_next<I> ? 0 : batch * shape_at<I + 1>::size)), ...);
    }
    template <class F, std::size_t... I>
    void for_each_impl(F& f, std::index_sequence<I...>) const {
        (f(std::integral_constant<std::size_t, I>{}, std::get<I>(impls_)), ...);
    }
    template <class F, std::size_t... I>
    void for_each_impl_mut(F& f, std::index_sequence<I...>) {
        (f(std::integral_constant<std::size_t, I>{}, std::get<I>(impls_)), ...);
    }
    template <std::size_t I>
    const T* train_in(const T* x) const { if constexpr (I == 0) return x; else return activations_[I - 1].data(); }
    template <std::size_t I>
    T* train_out(T* y) { if constexpr (I + 1 == depth) return y; else return activations_[I].data(); }

    template <std::size_t I>
    void forward_train_one(const context& c, const T* x, T* y, std::size_t batch, T* ws, std::uint64_t step) {
        if constexpr (fused_with_next<I>)
            std::get<I>(impls_).forward_fused(c, train_in<I>(x), train_out<I + 1>(y), batch, ws,
                                              impl_at<I + 1>::fused_activation());
        else if constexpr (!absorbed<I>)
            std::get<I>(impls_).forward_train(c, train_in<I>(x), train_out<I>(y), batch, ws, step);
    }
    template <std::size_t... I>
    void forward_train_impl(const context& c, const T* x, T* y, std::size_t batch, T* ws, std::uint64_t step,
                            std::index_sequence<I...>) {
        (forward_train_one<I>(c, x, y, batch, ws, step), ...);
    }
    template <std::size_t I>
    void backward_impl(const context& c, const T* x, const T* y, const T* dy, T* dx, std::size_t batch, T* ws) {
        // A fused producer's own output was never stored (it must not read it); an absorbed
        // activation gets its output y in place of its input x.
        const T* yout = fused_with_next<I> ? nullptr : (I + 1 == depth) ? y : activations_[I].data();
        const T* xin = absorbed<I> ? yout : train_in<I>(x);
        const T* dyin = (I + 1 == depth) ? dy : grads_[I % 2].data();
        T* dxout = (I == 0) ? dx : grads_[(I + 1) % 2].data();
        std::get<I>(impls_).backward(c, xin, yout, dyin, dxout, batch, ws);
        if constexpr (I > 0) backward_impl<I - 1>(c, x, y, dy, dx, batch, ws);
    }
    template <std::size_t... I>
    void forward_impl(const context& c, const T* x, T* y, std::size_t batch, T* ws, T* scratch,
                      std::index_sequence<I...>) const {
        // Ping-pong over the layers that run (absorbed activations run inside their producer):
        // the output of layer j lives in ping[(executed_through<j> - 1) % 2].
        T* ping[2] = {scratch, scratch + batch * max_activation_size};
        auto output_of = [&](auto j) -> T* {
            constexpr std::size_t k = decltype(j)::value;
            if constexpr (k + 1 == depth) return y; else return ping[(executed_through<k> - 1) % 2];
        };
        auto in = [&](auto i) -> const T* {
            constexpr std::size_t k = decltype(i)::value;
            if constexpr (k == 0) return x; else return output_of(std::integral_constant<std::size_t, k - 1>{});
        };
        auto one = [&](auto i) {
            constexpr std::size_t k = decltype(i)::value;
            if constexpr (fused_with_next<k>)
                std::get<k>(impls_).forward_fused(c, in(i), output_of(std::integral_constant<std::size_t, k + 1>{}), batch,
                                                  ws, impl_at<k + 1>::fused_activation());
            else if constexpr (!absorbed<k>)
                std::get<k>(impls_).forward(c, in(i), output_of(i), batch, ws);
        };
        (one(std::integral_constant<std::size_t, I>{}), ...);
    }

    impls_type impls_;
    std::vector<typename Backend::template buffer<T>> activations_;
    typename Backend::template buffer<T> grads_[2];
    std::size_t planned_batch_ = 0;
};

}  // namespace lamina
