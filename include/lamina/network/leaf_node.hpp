// lamina: the model's handle on each leaf (a layer's impl), through which it binds tensors,
// plans memory and runs passes. Composites only wire; the model runs the leaves' handles in
// wiring order (one virtual call per leaf and pass: nothing next to a kernel launch).
//
// leaf_node<D, In, Backend, T> adapts a descriptor's impl to that handle:
//   - builds the node_io of each call from the memory plan (exec.hpp);
//   - for a leaf that does not accumulate input gradients itself, writes them to the planned
//     temporary and adds it (dx += tmp), so every leaf honours the accumulate contract;
//   - reports parameter gradients to the sink after backward when the impl takes no sink;
//   - runs layers written against lamina 0.1's contract (see layers/layer_concept.hpp);
//   - times each call when a profiler is attached.
// fused_leaf_node runs a producer with an activation epilogue (dense + relu) as one leaf.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/activation.hpp"
#include "../core/error.hpp"
#include "../core/philox.hpp"
#include "../layers/layer_concept.hpp"
#include "exec.hpp"
#include "graph.hpp"
#include "node_io.hpp"
#include "profiler.hpp"
#include "shape_check.hpp"

namespace lamina {

/// Where a node sits in the network: "3" (the fourth node of the top chain), "3.1.0" nested;
/// `key` keys its random streams (equal to the position for the top chain, as in lamina 0.1).
struct node_path {
    std::string text;
    std::uint64_t key = 0;
    node_path child(std::size_t i) const {
        return {text.empty() ? std::to_string(i) : text + "." + std::to_string(i),
                text.empty() ? i : (key + 1) * 1000003ull + i};
    }
};

/// Parameter gradients reported by backward (type-erased so the model's loop over leaves
/// needs no template per sink). The MPI communicator implements one.
template <class T>
class gradient_sink {
public:
    virtual ~gradient_sink() = default;
    virtual void ready(const T* gradient, std::size_t count) = 0;
};

/// What the impl's backward sees: forwards to the model's sink, or to nothing.
template <class T>
struct sink_ref {
    gradient_sink<T>* to = nullptr;
    void ready(const T* g, std::size_t n) {
        if (to) to->ready(g, n);
    }
};

template <class Backend, class T>
class leaf_handle : public graph::leaf_sizes {
public:
    using context = typename Backend::context;
    node_path path;
    std::uint32_t id = 0;  // index in the graph (execution order)
    std::string owner;     // the name its tensors are listed under (a fused leaf's producer)

    virtual std::vector<tensor_spec> specs() const = 0;
    virtual void bind(const tensor_binding<T>& b) = 0;
    virtual void set_stream(random_stream root) = 0;
    virtual void plan_state(const context& c, std::size_t batch) = 0;  // lamina 0.1 layers' own buffers
    virtual void forward(const context& c, const exec<T>& e) const = 0;
    virtual void forward_train(const context& c, const exec<T>& e, std::uint64_t step) = 0;
    virtual void backward(const context& c, const exec<T>& e, gradient_sink<T>* sink) = 0;
    virtual bool adds_loss() const { return false; }
    /// A named constant of the node (batch norm's "eps"), for tools that rewrite networks.
    virtual double constant(const std::string& name) const {
        throw error("lamina: node '" + owner + "' has no constant '" + name + "'");
    }
    virtual double added_loss(const context&, const exec<T>&) const { return 0.0; }
};

namespace node_detail {

template <class I, class = void>
struct inputs_of : std::integral_constant<std::size_t, 1> {};
template <class I>
struct inputs_of<I, std::void_t<decltype(I::inputs)>> : std::integral_constant<std::size_t, I::inputs> {};

template <class I, class = void>
struct state_count_of : std::integral_constant<std::size_t, 0> {};
template <class I>
struct state_count_of<I, std::void_t<decltype(I::state_count)>> : std::integral_constant<std::size_t, I::state_count> {};

template <class I, class Ctx, class IO, class = void>
struct has_node_forward : std::false_type {};
template <class I, class Ctx, class IO>
struct has_node_forward<I, Ctx, IO,
                        std::void_t<decltype(std::declval<const I&>().forward(std::declval<const Ctx&>(),
                                                                               std::declval<const IO&>()))>>
    : std::true_type {};

template <class I, class Ctx, class IO, class = void>
struct has_node_forward_train : std::false_type {};
template <class I, class Ctx, class IO>
struct has_node_forward_train<I, Ctx, IO,
                              std::void_t<decltype(std::declval<I&>().forward_train(
                                  std::declval<const Ctx&>(), std::declval<const IO&>(), std::uint64_t(0)))>>
    : std::true_type {};

template <class I, class Ctx, class IO, class T, class = void>
struct has_sink_backward : std::false_type {};
template <class I, class Ctx, class IO, class T>
struct has_sink_backward<I, Ctx, IO, T,
                         std::void_t<decltype(std::declval<I&>().backward(std::declval<const Ctx&>(),
                                                                          std::declval<const IO&>(),
                                                                          std::declval<sink_ref<T>&>()))>>
    : std::true_type {};

template <class I, class = void>
struct has_set_stream : std::false_type {};
template <class I>
struct has_set_stream<I, std::void_t<decltype(std::declval<I&>().set_stream(random_stream{}))>> : std::true_type {};

template <class I, class Ctx, class = void>
struct has_plan : std::false_type {};
template <class I, class Ctx>
struct has_plan<I, Ctx, std::void_t<decltype(std::declval<I&>().plan(std::declval<const Ctx&>(), std::size_t(1)))>>
    : std::true_type {};

template <class I, class = void>
struct has_constant : std::false_type {};
template <class I>
struct has_constant<I, std::void_t<decltype(std::declval<const I&>().constant(std::string()))>> : std::true_type {};

template <class I, class = void>
struct adds_loss : std::false_type {};
template <class I>
struct adds_loss<I, std::enable_if_t<I::adds_loss>> : std::true_type {};

template <class I, class = void>
struct fuses_activation : std::false_type {};
template <class I>
struct fuses_activation<I, std::enable_if_t<I::fuses_activation>> : std::true_type {};
template <class I, class = void>
struct fusable_activation : std::false_type {};
template <class I>
struct fusable_activation<I, std::enable_if_t<I::fusable_into_producer>> : std::true_type {};

template <class Backend, class = void>
struct has_fence : std::false_type {};
template <class Backend>
struct has_fence<Backend, std::void_t<decltype(Backend::fence(std::declval<const typename Backend::context&>()))>>
    : std::true_type {};

template <class Backend>
void fence(const typename Backend::context& c) {
    if constexpr (has_fence<Backend>::value) Backend::fence(c);
    else (void)c;
}

/// Times one call when a profiler is attached.
template <class Backend, class F>
void timed(const typename Backend::context& c, node_profiler* p, std::uint32_t id, node_profiler::phase what,
           std::size_t batch, F&& f) {
    if (!p) {
        f();
        return;
    }
    fence<Backend>(c);
    const double t0 = p->now_us();
    f();
    fence<Backend>(c);
    p->record(id, what, batch, t0, p->now_us());
}

}  // namespace node_detail

template <class D, class In, class Backend, class T>
class leaf_node final : public leaf_handle<Backend, T> {
public:
    using impl_type = typename D::template impl<In, Backend, T>;
    using context = typename Backend::context;
    static constexpr std::size_t inputs = node_detail::inputs_of<impl_type>::value;
    using io_type = node_io<T, inputs>;
    static constexpr bool legacy = !node_detail::has_node_forward<impl_type, context, io_type>::value;
    static_assert(!legacy || inputs == 1, "lamina: a layer with several inputs must use the node_io contract");
    static constexpr std::size_t parameter_count = impl_type::parameter_count;
    static constexpr std::size_t state_count = node_detail::state_count_of<impl_type>::value;
    static constexpr double flops_per_sample = impl_type::flops_per_sample;
    static constexpr std::size_t leaf_count = 1;
    static constexpr graph::leaf_traits traits = [] {
        if constexpr (legacy) {
            graph::leaf_traits t;
            t.needs_input = true;
            t.needs_output = true;
            return t;
        } else {
            return impl_type::traits;
        }
    }();
    static constexpr bool is_view = traits.view;

    impl_type& impl() noexcept { return impl_; }
    const impl_type& impl() const noexcept { return impl_; }

    using output_shape = typename D::template output_shape<In>;
    static constexpr std::size_t outputs = 1;

    /// Registers this leaf; `in` holds `inputs` edges, `out` receives the output edge.
    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, node_path p,
              std::vector<leaf_handle<Backend, T>*>& handles) {
        graph::leaf l;
        l.name = D::name();
        l.path = p.text;
        l.output_shape = output_shape::str();
        l.depth = g.depth();
        l.inputs.assign(in, in + inputs);
        l.traits = traits;
        l.sizes = this;
        l.flops_per_sample = flops_per_sample;
        l.parameters = parameter_count;
        l.state = state_count;
        this->path = std::move(p);
        this->owner = D::name();
        this->id = g.add_leaf(std::move(l), output_shape::size);
        handles.push_back(this);
        out[0] = g.leaves()[this->id].output;
    }

    // ---- graph::leaf_sizes
    std::size_t saved_bytes(std::size_t batch) const override {
        if constexpr (legacy) return 0;
        else return impl_.saved_bytes(batch);
    }
    std::size_t workspace_elements(std::size_t batch) const override { return impl_.workspace_size(batch); }

    // ---- leaf_handle
    std::vector<tensor_spec> specs() const override {
        if constexpr (legacy) return impl_.parameter_specs();
        else return impl_.tensor_specs();
    }
    void bind(const tensor_binding<T>& b) override {
        gradients_ = b.gradients;
        if constexpr (legacy) impl_.bind_parameters(b.parameters, b.gradients);
        else impl_.bind(b);
    }
    void set_stream(random_stream root) override {
        if constexpr (node_detail::has_set_stream<impl_type>::value) impl_.set_stream(root.child(this->path.key));
        else (void)root;
    }
    void plan_state(const context& c, std::size_t batch) override {
        if constexpr (node_detail::has_plan<impl_type, context>::value) impl_.plan(c, batch);
        else (void)c, (void)batch;
    }

    void forward(const context& c, const exec<T>& e) const override {
        if constexpr (is_view) {
            (void)c, (void)e;
        } else {
            const io_type io = make_io(e, false);
            node_detail::timed<Backend>(c, e.profiler, this->id, node_profiler::forward, e.batch, [&] {
                if constexpr (legacy) impl_.forward(c, io.x[0], io.y, io.batch, io.workspace);
                else impl_.forward(c, io);
            });
        }
    }
    void forward_train(const context& c, const exec<T>& e, std::uint64_t step) override {
        if constexpr (is_view) {
            (void)c, (void)e, (void)step;
        } else {
            const io_type io = make_io(e, false);
            node_detail::timed<Backend>(c, e.profiler, this->id, node_profiler::forward_train, e.batch, [&] {
                if constexpr (legacy) impl_.forward_train(c, io.x[0], io.y, io.batch, io.workspace, step);
                else if constexpr (node_detail::has_node_forward_train<impl_type, context, io_type>::value)
                    impl_.forward_train(c, io, step);
                else impl_.forward(c, io);
            });
        }
    }
    void backward(const context& c, const exec<T>& e, gradient_sink<T>* sink) override {
        if constexpr (is_view) {
            (void)c, (void)e, (void)sink;
        } else {
            io_type io = make_io(e, true);
            // A leaf that cannot accumulate writes its accumulated ports into planned temporaries.
            T* target[inputs] = {};
            std::size_t count[inputs] = {};
            if constexpr (!traits.accumulates) {
                const graph::leaf_plan& lp = e.plan->leaves[this->id];
                for (std::size_t i = 0; i < inputs; ++i) {
                    const graph::port_plan& pp = e.plan->ports[lp.first_port + i];
                    if (io.dx[i] && io.accumulate[i]) {
                        target[i] = io.dx[i];
                        count[i] = e.batch * input_size(i);
                        io.dx[i] = e.at(pp.temp);
                        io.accumulate[i] = false;
                    }
                }
            }
            sink_ref<T> s{sink};
            node_detail::timed<Backend>(c, e.profiler, this->id, node_profiler::backward, e.batch, [&] {
                if constexpr (legacy) {
                    impl_.backward(c, io.x[0], io.y, io.dy, io.dx[0], io.batch, io.workspace);
                    report_all(s);
                } else if constexpr (node_detail::has_sink_backward<impl_type, context, io_type, T>::value) {
                    impl_.backward(c, io, s);
                } else {
                    impl_.backward(c, io);
                    report_all(s);
                }
                for (std::size_t i = 0; i < inputs; ++i)
                    if (target[i]) Backend::axpy(c, count[i], T(1), static_cast<const T*>(io.dx[i]), target[i]);
            });
        }
    }
    bool adds_loss() const override { return node_detail::adds_loss<impl_type>::value; }
    double constant(const std::string& name) const override {
        if constexpr (node_detail::has_constant<impl_type>::value) return impl_.constant(name);
        else return leaf_handle<Backend, T>::constant(name);
    }
    double added_loss(const context& c, const exec<T>& e) const override {
        if constexpr (node_detail::adds_loss<impl_type>::value) return impl_.added_loss(c, make_io(e, false));
        else return (void)c, (void)e, 0.0;
    }

private:
    static constexpr std::size_t input_size(std::size_t i) {
        if constexpr (inputs == 1) return (void)i, In::size;
        else return In::sizes[i];
    }
    io_type make_io(const exec<T>& e, bool grads) const {
        const graph::leaf_plan& lp = e.plan->leaves[this->id];
        io_type io;
        io.batch = e.batch;
        io.workspace = e.workspace;
        io.saved = e.at(lp.saved);
        io.y = e.at(lp.y);
        io.in_place = lp.in_place;
        for (std::size_t i = 0; i < inputs; ++i) {
            const graph::port_plan& pp = e.plan->ports[lp.first_port + i];
            io.x[i] = e.at(pp.x);
            if (grads) {
                io.dx[i] = e.at(pp.dx);
                io.accumulate[i] = pp.accumulate || (pp.first_input_writer && e.accumulate_input_gradient);
            }
        }
        if (grads) io.dy = e.at(lp.dy);
        return io;
    }
    void report_all(sink_ref<T>& s) const {
        if constexpr (parameter_count > 0) {
            if (s.to) s.ready(gradients_, parameter_count);
        }
    }

    impl_type impl_{};
    T* gradients_ = nullptr;  // reported to the sink for impls whose backward takes none
};

/// A copy of the network input as an output: the leaf a model adds when a network's output is
/// its input (a network of views only), so the output has storage and its gradient a writer.
template <class Backend, class T>
class copy_leaf final : public leaf_handle<Backend, T> {
public:
    using context = typename Backend::context;
    explicit copy_leaf(std::size_t size) : size_(size) {}
    void wire(graph::description& g, graph::edge_id in, graph::edge_id* out,
              std::vector<leaf_handle<Backend, T>*>& handles) {
        graph::leaf l;
        l.name = "copy";
        l.output_shape = "(" + std::to_string(size_) + ")";
        l.depth = g.depth();
        l.inputs = {in};
        l.traits.needs_input = false;
        l.traits.accumulates = true;
        l.sizes = this;
        this->owner = "copy";
        this->id = g.add_leaf(std::move(l), size_);
        handles.push_back(this);
        *out = g.leaves()[this->id].output;
    }
    std::size_t saved_bytes(std::size_t) const override { return 0; }
    std::size_t workspace_elements(std::size_t) const override { return 0; }
    std::vector<tensor_spec> specs() const override { return {}; }
    void bind(const tensor_binding<T>&) override {}
    void set_stream(random_stream) override {}
    void plan_state(const context&, std::size_t) override {}
    void forward(const context& c, const exec<T>& e) const override {
        const graph::leaf_plan& lp = e.plan->leaves[this->id];
        Backend::copy(c, e.at(lp.y), static_cast<const T*>(e.at(e.plan->ports[lp.first_port].x)), e.batch * size_);
    }
    void forward_train(const context& c, const exec<T>& e, std::uint64_t) override { forward(c, e); }
    void backward(const context& c, const exec<T>& e, gradient_sink<T>*) override {
        const graph::leaf_plan& lp = e.plan->leaves[this->id];
        const graph::port_plan& pp = e.plan->ports[lp.first_port];
        T* dx = e.at(pp.dx);
        if (!dx) return;
        const T* dy = e.at(lp.dy);
        if (pp.accumulate || (pp.first_input_writer && e.accumulate_input_gradient))
            Backend::axpy(c, e.batch * size_, T(1), dy, dx);
        else
            Backend::copy(c, dx, dy, e.batch * size_);
    }

private:
    std::size_t size_;
};

/// A producer whose impl can apply an activation in its epilogue (`fuses_activation`, e.g.
/// dense) followed by an activation whose derivative needs only its output
/// (`fusable_into_producer`: relu, sigmoid, tanh, leaky_relu with slope >= 0), run as one
/// leaf: the producer writes act(...) straight into the output, no buffer holds the
/// pre-activation, and backward applies the activation's derivative (from y) into the
/// workspace before the producer's backward. Define LAMINA_NO_LAYER_FUSION to turn it off.
template <class P, class A, class In, class Backend, class T>
class fused_leaf_node final : public leaf_handle<Backend, T> {
public:
    using mid_shape = checked_output_t<P, In>;
    using out_shape = checked_output_t<A, mid_shape>;
    using producer_type = typename P::template impl<In, Backend, T>;
    using activation_type = typename A::template impl<mid_shape, Backend, T>;
    using context = typename Backend::context;
    using io_type = node_io<T>;
    static constexpr std::size_t parameter_count = producer_type::parameter_count;
    static constexpr std::size_t state_count = 0;
    static constexpr double flops_per_sample = producer_type::flops_per_sample + activation_type::flops_per_sample;
    static constexpr std::size_t leaf_count = 1;
    static constexpr graph::leaf_traits traits = [] {
        graph::leaf_traits t;
        t.needs_input = true;
        t.needs_output = true;
        t.accumulates = producer_type::traits.accumulates;
        return t;
    }();

    using output_shape = out_shape;
    static constexpr std::size_t outputs = 1;

    void wire(graph::description& g, const graph::edge_id* in, graph::edge_id* out, node_path p,
              std::vector<leaf_handle<Backend, T>*>& handles) {
        graph::leaf l;
        l.name = P::name() + "+" + A::name();
        l.path = p.text;
        l.output_shape = out_shape::str();
        l.depth = g.depth();
        l.inputs.assign(in, in + 1);
        l.traits = traits;
        l.sizes = this;
        l.flops_per_sample = flops_per_sample;
        l.parameters = parameter_count;
        this->path = std::move(p);
        this->owner = P::name();
        this->id = g.add_leaf(std::move(l), out_shape::size);
        handles.push_back(this);
        out[0] = g.leaves()[this->id].output;
    }

    std::size_t saved_bytes(std::size_t batch) const override { return producer_.saved_bytes(batch); }
    std::size_t workspace_elements(std::size_t batch) const override {
        return producer_.workspace_size(batch) + align(batch * out_shape::size);
    }
    std::vector<tensor_spec> specs() const override { return producer_.tensor_specs(); }
    void bind(const tensor_binding<T>& b) override { producer_.bind(b); }
    void set_stream(random_stream) override {}
    void plan_state(const context&, std::size_t) override {}

    void forward(const context& c, const exec<T>& e) const override {
        io_type io = make_io(e, false);
        node_detail::timed<Backend>(c, e.profiler, this->id, node_profiler::forward, e.batch,
                                    [&] { producer_.forward_fused(c, io, activation_type::fused_activation()); });
    }
    void forward_train(const context& c, const exec<T>& e, std::uint64_t) override { forward(c, e); }
    void backward(const context& c, const exec<T>& e, gradient_sink<T>* sink) override {
        io_type io = make_io(e, true);
        const std::size_t n = e.batch * out_shape::size;
        T* dmid = e.workspace + producer_.workspace_size(e.plan->batch);
        sink_ref<T> s{sink};
        node_detail::timed<Backend>(c, e.profiler, this->id, node_profiler::backward, e.batch, [&] {
            // d(pre-activation) from y alone
            Backend::activation_backward(c, activation_type::fused_activation(), static_cast<const T*>(io.y),
                                         static_cast<const T*>(io.y), io.dy, dmid, n);
            io_type pio = io;
            pio.dy = dmid;
            producer_.backward(c, pio, s);
        });
    }

private:
    static constexpr std::size_t align(std::size_t n) { return (n + 15) / 16 * 16; }
    io_type make_io(const exec<T>& e, bool grads) const {
        const graph::leaf_plan& lp = e.plan->leaves[this->id];
        const graph::port_plan& pp = e.plan->ports[lp.first_port];
        io_type io;
        io.batch = e.batch;
        io.workspace = e.workspace;
        io.saved = e.at(lp.saved);
        io.y = e.at(lp.y);
        io.x[0] = e.at(pp.x);
        if (grads) {
            io.dy = e.at(lp.dy);
            io.dx[0] = e.at(pp.dx);
            io.accumulate[0] = pp.accumulate || (pp.first_input_writer && e.accumulate_input_gradient);
        }
        return io;
    }
    producer_type producer_{};
};

}  // namespace lamina
