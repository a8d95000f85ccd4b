// lamina: a network with its memory: the model of a network type on a backend.
//
//   lenet5::model<lamina::host> net{lamina::seed{42}};            // = network_model<lenet5, host, float>
//   std::cout << net.summary(64);                                  // layers, shapes, FLOPs, planned bytes
//   net.predict(in, out, batch);                                   // const, thread-safe
//
// The model wires its node tree into a graph once (network/graph.hpp), keeps one flat buffer
// per tensor kind (trainable parameters and their gradients, running state, frozen), and
// plans memory per batch size (network/memory_plan.hpp): training steps 2..N and inference
// at a batch size seen before allocate nothing.
#pragma once

#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "../core/error.hpp"
#include "../core/philox.hpp"
#include "../core/thread_pool.hpp"
#include "../init/initializers.hpp"
#include "exec.hpp"
#include "graph.hpp"
#include "leaf_node.hpp"
#include "memory_plan.hpp"
#include "parameter_segment.hpp"
#include "profiler.hpp"
#include "tensor_spec.hpp"

namespace lamina {

namespace detail {
template <class S>
struct output_sizes {
    static constexpr std::size_t count = 1;
    static constexpr std::array<std::size_t, 1> sizes{S::size};
};
template <class... S>
struct output_sizes<shapes<S...>> {
    static constexpr std::size_t count = sizeof...(S);
    static constexpr std::array<std::size_t, sizeof...(S)> sizes{S::size...};
};
}  // namespace detail

template <class Net, class Backend, class T>
class network_model {
    static_assert(Net::is_network, "lamina: only a sequential that starts with input<...> has a model");

public:
    using network = Net;
    using backend = Backend;
    using value_type = T;
    using context_type = typename Backend::context;
    using input_shape = typename Net::input_shape;
    using node_type = typename Net::template node<input_shape, Backend, T>;
    using output_shape = typename node_type::output_shape;  // a shape, or shapes<...> for several heads
    using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

    static constexpr std::size_t outputs = detail::output_sizes<output_shape>::count;
    static constexpr std::array<std::size_t, outputs> output_sizes = detail::output_sizes<output_shape>::sizes;
    static constexpr std::size_t input_size = input_shape::size;
    /// Elements per sample of the (first) output.
    static constexpr std::size_t output_size = output_sizes[0];
    static constexpr std::size_t parameter_count = node_type::parameter_count;
    static constexpr std::size_t state_count = node_type::state_count;
    static constexpr double flops_per_sample = node_type::flops_per_sample;
    static constexpr std::size_t depth = Net::length;  // nodes in the top-level list
    template <std::size_t I>
    using shape_at = typename node_type::chain::template shape_at<I>;

    /// A network with freshly initialised parameters. `threads` bounds the host backend's
    /// worker threads (default: LAMINA_NUM_THREADS or the available cores).
    explicit network_model(seed s = seed{0}, threads t = threads{}) : ctx_(t) {
        const graph::edge_id in = graph_.add_input(input_size);
        graph::edge_id out[outputs];
        node_.wire_top(graph_, &in, out, handles_);
        for (std::size_t k = 0; k < outputs; ++k) {
            if (out[k] == in) {  // a network of views: its output needs storage of its own
                copies_.push_back(std::make_unique<copy_leaf<Backend, T>>(input_size));
                copies_.back()->wire(graph_, in, &out[k], handles_);
            }
            graph_.mark_output(out[k], static_cast<std::int32_t>(k));
        }
        std::size_t per_sample = 1;
        for (const auto& e : graph_.edges()) per_sample += 2 * e.size;  // values and gradients
        max_batch_ = std::size_t(-1) / 1024 / sizeof(T) / per_sample;
        lay_out_tensors();
        initialize(s);
    }
    network_model(const network_model&) = delete;
    network_model& operator=(const network_model&) = delete;

    /// Re-draws every trainable parameter from `s` (counter-based: identical on every backend)
    /// and resets running state to its initial values.
    void initialize(seed s) {
        seed_ = s.value;
        random_stream root{s.value, 0};
        std::vector<T> host(parameter_count), st(state_count);
        std::size_t trainable_index = 0;
        for (const auto& t : tensors_) {
            if (t.spec.kind == tensor_kind::trainable) {
                random_stream r = root.child(handles_[t.leaf]->path.key * 1024 + trainable_index++);
                for (std::size_t k = 0; k < t.spec.count; ++k)
                    host[t.offset + k] = static_cast<T>(init::sample(t.spec.init, r, k, t.spec.fan_in, t.spec.fan_out));
            } else if (t.spec.kind == tensor_kind::state) {
                random_stream r = root.child(0x57A7Eull).child(handles_[t.leaf]->path.key);
                for (std::size_t k = 0; k < t.spec.count; ++k)
                    st[t.offset + k] = static_cast<T>(init::sample(t.spec.init, r, k, t.spec.fan_in, t.spec.fan_out));
            }
        }
        if (parameter_count) Backend::upload(ctx_, params_.data(), host.data(), parameter_count);
        if (state_count) Backend::upload(ctx_, state_.data(), st.data(), state_count);
        if (!grads_.empty()) Backend::fill(ctx_, grads_.data(), grads_.size(), T(0));
        restore_seed(s.value);
    }
    std::uint64_t seed_value() const noexcept { return seed_; }
    /// Sets the seed that keys dropout masks without re-drawing parameters (checkpoint resume).
    void restore_seed(std::uint64_t s) {
        seed_ = s;
        random_stream root = random_stream{s, 0}.child(0xD0D0D0D0ull);
        for (auto* h : handles_) h->set_stream(root);
    }

    // ---- description ------------------------------------------------------------------------
    static std::string name_of_layers() { return Net::layer_names(); }
    const graph::description& graph() const noexcept { return graph_; }

    /// A table of nodes (composites indented under their heading), output shapes, parameter
    /// counts and forward FLOPs per sample; with a batch size, also the memory planned for a
    /// training step and for inference at that batch.
    std::string summary(std::size_t batch = 0) const {
        std::ostringstream os;
        char line[640];
        std::snprintf(line, sizeof line, "%-12s %-34s %-16s %12s %14s\n", "#", "layer", "output", "params", "FLOPs/sample");
        os << line;
        std::snprintf(line, sizeof line, "%-12s %-34s %-16s %12s %14s\n", "", "input", input_shape::str().c_str(), "0", "0");
        os << line;
        for (const auto& r : graph_.rows()) {
            std::string indent(2 * r.depth, ' ');
            if (!r.is_leaf) {
                std::snprintf(line, sizeof line, "%-12s %s\n", "", (indent + r.heading).c_str());
            } else {
                const auto& l = graph_.leaves()[r.leaf];
                std::snprintf(line, sizeof line, "%-12s %-34.34s %-16s %12zu %14.0f\n", l.path.c_str(), (indent + l.name).c_str(),
                              l.output_shape.c_str(), l.parameters, l.flops_per_sample);
            }
            os << line;
        }
        std::snprintf(line, sizeof line, "total: %zu parameters, %.4g MFLOPs per sample (forward), backend %s\n",
                      parameter_count, flops_per_sample / 1e6, Backend::name);
        os << line;
        if (state_count) {
            std::snprintf(line, sizeof line, "running state: %zu values (not trained, checkpointed)\n", state_count);
            os << line;
        }
        if (batch) {
            const auto tp = graph::plan_training(graph_, batch, sizeof(T), true);
            const auto ip = graph::plan_inference(graph_, batch, sizeof(T), Backend::host_accessible);
            auto mib = [](std::size_t elements) { return double(elements) * sizeof(T) / 1048576.0; };
            std::snprintf(line, sizeof line,
                          "planned memory at batch %zu: training %.2f MiB (activations %.2f, gradients %.2f, saved "
                          "%.2f, temporaries %.2f MiB, shared down from %.2f MiB) + workspace %.2f MiB; inference %.2f "
                          "MiB + workspace %.2f MiB; parameters and gradients %.2f MiB\n",
                          batch, mib(tp.arena_elements), mib(tp.value_elements), mib(tp.gradient_elements),
                          mib(tp.saved_elements), mib(tp.temp_elements), mib(tp.unshared_elements),
                          mib(tp.workspace_elements), mib(ip.arena_elements), mib(ip.workspace_elements),
                          mib(2 * parameter_count + state_count));
            os << line;
        }
        return os.str();
    }

    // ---- parameters and state -----------------------------------------------------------------
    T* parameters() noexcept { return params_.data(); }
    const T* parameters() const noexcept { return params_.data(); }
    /// Device pointer of the flat gradient buffer (null until the model has planned training).
    T* gradients() noexcept { return grads_.data(); }
    const T* gradients() const noexcept { return grads_.data(); }
    T* state() noexcept { return state_.data(); }
    const T* state() const noexcept { return state_.data(); }
    const std::vector<parameter_segment>& parameter_segments() const noexcept { return segments_; }
    const std::vector<parameter_segment>& state_segments() const noexcept { return state_segments_; }
    /// Host copy of all parameters, in the flat layout.
    std::vector<T> get_parameters() const { return download(params_, parameter_count); }
    void set_parameters(const std::vector<T>& h) { upload(params_, h, parameter_count, "set_parameters", "parameters"); }
    /// Host copy of the parameter gradients (zeros before the model has trained).
    std::vector<T> get_gradients() const {
        return grads_.empty() ? std::vector<T>(parameter_count, T(0)) : download(grads_, parameter_count);
    }
    /// Host copy of the running state (batch norm statistics), in the flat layout.
    std::vector<T> get_state() const { return download(state_, state_count); }
    void set_state(const std::vector<T>& h) { upload(state_, h, state_count, "set_state", "running-state values"); }

    // ---- training interface (used by trainer; usable directly) -----------------------------
    /// Plans the training buffers for batches of up to `batch` samples (done once; calls with a
    /// batch that fits are free, so the last, smaller batch of an epoch allocates nothing).
    void plan(std::size_t batch) {
        check_batch(batch, "plan");
        if (batch <= planned_) return;
        allocating(batch, [&] {
            allocate_gradients();
            train_plan_ = graph::plan_training(graph_, batch, sizeof(T), true, share_memory_);
            train_arena_.allocate(std::max<std::size_t>(train_plan_.arena_elements, 1));
            grow_workspace(train_plan_.workspace_elements);
            for (auto* h : handles_) h->plan_state(ctx_, batch);
        });
        planned_ = batch;
    }
    std::size_t planned_batch() const noexcept { return planned_; }
    /// Plans forward_infer's buffers for batches of up to `batch` samples (only those: an
    /// evaluation at a larger batch than training plans no training memory for it).
    void plan_inference(std::size_t batch) {
        check_batch(batch, "plan_inference");
        if (batch <= infer_planned_) return;
        allocating(batch, [&] {
            infer_plan_ = graph::plan_inference(graph_, batch, sizeof(T), false, share_memory_);
            infer_arena_.allocate(std::max<std::size_t>(infer_plan_.arena_elements, 1));
            grow_workspace(infer_plan_.workspace_elements);
        });
        infer_planned_ = batch;
    }
    /// The training step's memory plan (planned bytes per edge kind: summary(batch)).
    const graph::memory_plan& training_plan() const noexcept { return train_plan_; }
    /// false: plan every edge in memory of its own and run nothing in place (for checking
    /// the planner; results are bit-identical). Takes effect at the next plan; call before use.
    void set_memory_sharing(bool share) {
        share_memory_ = share;
        planned_ = infer_planned_ = 0;
        std::lock_guard<std::mutex> lk(scratch_mutex_);
        scratch_pool_.clear();
    }

    /// Forward pass of a training step on device memory `x` (batch x input_size); returns the
    /// device pointer of the (first) output. `step` keys the dropout masks.
    const T* forward_train(const T* x, std::size_t batch, std::uint64_t step) {
        plan(batch);
        current_batch_ = batch;
        last_input_ = x;
        exec<T> e = training_exec(x, nullptr);
        for (auto* h : handles_) h->forward_train(ctx_, e, step);
        return output(0);
    }
    /// Device pointer to output k of the last forward_train.
    const T* output(std::size_t k = 0) const {
        return resolve(train_plan_.outputs.at(k), last_input_, nullptr);
    }
    /// Device buffer the loss writes dLoss/d(output k) into (batch x output_sizes[k]).
    T* output_gradient(std::size_t k = 0) noexcept { return resolve(train_plan_.output_grads.at(k), last_input_, nullptr); }
    /// The sum of the terms nodes add to the loss (a VAE's KL) in the last forward_train.
    double added_loss() const {
        double s = 0;
        if (!has_added_loss_) return s;
        exec<T> e = training_exec(last_input_, nullptr);
        for (auto* h : handles_)
            if (h->adds_loss()) s += h->added_loss(ctx_, e);
        return s;
    }
    static constexpr bool adds_loss_possible = true;
    /// Backward pass after forward_train: fills gradients() from output_gradient(); each
    /// parameter gradient is reported to `sink` as soon as it is final.
    void backward(gradient_sink<T>* sink = nullptr) { run_backward(nullptr, sink); }
    /// Backward that also writes dLoss/dInput into `dx` (device, batch x input_size).
    void backward(T* dx, gradient_sink<T>* sink = nullptr) { run_backward(dx, sink); }
    /// Backward that adds dLoss/dInput into `dx` (dx += ...; a simulation accumulating
    /// sensitivities, or a caller's own graph around the model).
    void backward_accumulate(T* dx, gradient_sink<T>* sink = nullptr) { run_backward(dx, sink, true); }

    /// Inference forward on device memory through the model's own buffers (not thread-safe; the
    /// trainer's evaluation uses it). Returns the device pointer of output k.
    const T* forward_infer(const T* x, std::size_t batch, std::size_t k = 0) {
        plan_inference(batch);
        exec<T> e;
        e.plan = &infer_plan_;
        e.base[graph::space_arena] = infer_arena_.data();
        e.base[graph::space_input] = const_cast<T*>(x);
        e.workspace = workspace_.data();
        e.batch = batch;
        e.profiler = profiler_;
        for (const auto* h : handles_) h->forward(ctx_, e);
        last_infer_input_ = x;
        return infer_output(k);
    }
    /// Device pointer to output k of the last forward_infer.
    const T* infer_output(std::size_t k) const {
        const graph::ref r = infer_plan_.outputs.at(k);
        if (r.space == graph::space_input) return last_infer_input_ + r.offset;
        return infer_arena_.data() + r.offset;
    }

    context_type& context() noexcept { return ctx_; }
    const context_type& context() const noexcept { return ctx_; }
    node_type& nodes() noexcept { return node_; }
    const node_type& nodes() const noexcept { return node_; }
    /// The leaves in execution order (for tools: profilers, communicators, tests).
    const std::vector<leaf_handle<Backend, T>*>& leaves() const noexcept { return handles_; }

    // ---- profiling ------------------------------------------------------------------------------
    /// Attaches a profiler (null detaches): every leaf's forward and backward is then timed.
    void profile(node_profiler* p) noexcept { profiler_ = p; }
    node_profiler* profiler() const noexcept { return profiler_; }

    // ---- embedding: inference on the caller's memory ----------------------------------------
    /// out[batch x output_size] = net(in[batch x input_size]), both host pointers. Const and
    /// thread-safe: concurrent callers each take their own planned scratch. At a batch size
    /// seen before, nothing is allocated. A network with several outputs writes output 0 here;
    /// predict_all writes every one.
    void predict(const T* in, T* out, std::size_t batch) const {
        T* outs[outputs] = {out};
        run_predict(in, outs, batch, 1);
    }
    /// Every output: outs[k] receives batch x output_sizes[k] values.
    void predict_all(const T* in, T* const* outs, std::size_t batch) const { run_predict(in, outs, batch, outputs); }
    /// Eigen interop: rows are samples. Checks the column counts.
    void predict(const Eigen::Ref<const matrix>& in, Eigen::Ref<matrix> out) const {
        if (static_cast<std::size_t>(in.cols()) != input_size)
            throw shape_error("lamina: predict input has " + std::to_string(in.cols()) + " columns, the network takes " +
                              std::to_string(input_size) + " (shape " + input_shape::str() + ")");
        if (static_cast<std::size_t>(out.cols()) != output_size || out.rows() != in.rows())
            throw shape_error("lamina: predict output is " + std::to_string(out.rows()) + "x" + std::to_string(out.cols()) +
                              ", expected " + std::to_string(in.rows()) + "x" + std::to_string(output_size));
        if (in.outerStride() != static_cast<Eigen::Index>(input_size) ||
            out.outerStride() != static_cast<Eigen::Index>(output_size))
            throw shape_error("lamina: predict needs contiguous row-major matrices");
        predict(in.data(), out.data(), static_cast<std::size_t>(in.rows()));
    }
    matrix predict(const Eigen::Ref<const matrix>& in) const {
        matrix out(in.rows(), static_cast<Eigen::Index>(output_size));
        predict(in, out);
        return out;
    }
    /// Every output as a matrix (rows are samples).
    std::array<matrix, outputs> predict_all(const Eigen::Ref<const matrix>& in) const {
        if (static_cast<std::size_t>(in.cols()) != input_size || in.outerStride() != in.cols())
            throw shape_error("lamina: predict_all input has " + std::to_string(in.cols()) +
                              " columns (contiguous rows needed), the network takes " + std::to_string(input_size));
        std::array<matrix, outputs> r;
        T* outs[outputs];
        for (std::size_t k = 0; k < outputs; ++k) {
            r[k].resize(in.rows(), static_cast<Eigen::Index>(output_sizes[k]));
            outs[k] = r[k].data();
        }
        predict_all(in.data(), outs, static_cast<std::size_t>(in.rows()));
        return r;
    }

    /// The largest batch whose buffer sizes are sure not to wrap size_t: every buffer a node
    /// or kernel plans is at most 1024 elements per element of the network's edges.
    std::size_t max_batch() const noexcept { return max_batch_; }

private:
    struct placed_tensor {
        std::size_t leaf;  // index into handles_
        tensor_spec spec;
        std::size_t offset;  // in its kind's flat buffer
    };
    struct scratch_set {
        std::size_t batch = 0;
        graph::memory_plan plan;
        typename Backend::template buffer<T> arena, workspace, input;
        std::array<typename Backend::template buffer<T>, outputs> output;
    };

    void lay_out_tensors() {
        std::size_t off[3] = {0, 0, 0};
        for (std::size_t i = 0; i < handles_.size(); ++i) {
            for (auto& spec : handles_[i]->specs()) {
                spec.type = dtype_of<T>();
                auto k = static_cast<std::size_t>(spec.kind);
                tensors_.push_back({i, spec, off[k]});
                off[k] += spec.count;
            }
        }
        if (off[0] != parameter_count || off[1] != state_count)
            throw error("lamina: internal error: tensor specs cover " + std::to_string(off[0]) + " of " +
                        std::to_string(parameter_count) + " parameters and " + std::to_string(off[1]) + " of " +
                        std::to_string(state_count) + " state values");
        params_.allocate(std::max<std::size_t>(parameter_count, 1));
        state_.allocate(std::max<std::size_t>(state_count, 1));
        frozen_.allocate(std::max<std::size_t>(off[2], 1));
        // each leaf gets pointers to its first tensor of each kind (its tensors of a kind are contiguous)
        std::vector<tensor_binding<T>> b(handles_.size());
        std::vector<std::array<bool, 3>> seen(handles_.size(), {false, false, false});
        for (const auto& t : tensors_) {
            auto k = static_cast<std::size_t>(t.spec.kind);
            if (seen[t.leaf][k]) continue;
            seen[t.leaf][k] = true;
            if (k == 0) {
                b[t.leaf].parameters = params_.data() + t.offset;
            } else if (k == 1) {
                b[t.leaf].state = state_.data() + t.offset;
            } else {
                b[t.leaf].frozen = frozen_.data() + t.offset;
            }
        }
        bindings_ = b;
        for (std::size_t i = 0; i < handles_.size(); ++i) {
            handles_[i]->bind(b[i]);
            graph_.leaves()[handles_[i]->id].parameter_offset =
                b[i].parameters ? static_cast<std::size_t>(b[i].parameters - params_.data()) : 0;
            if (handles_[i]->adds_loss()) has_added_loss_ = true;
        }
        for (const auto& t : tensors_) {
            const auto& h = *handles_[t.leaf];
            parameter_segment seg{h.path.text + ":" + h.owner + "." + t.spec.name, h.id, t.offset,
                                  t.spec.count, t.spec.decay};
            if (t.spec.kind == tensor_kind::trainable) segments_.push_back(seg);
            else if (t.spec.kind == tensor_kind::state) state_segments_.push_back(seg);
        }
    }

    /// Parameter gradients exist only once the model trains (inference-only models, e.g. a
    /// ResNet-50 embedded for prediction, never hold them): allocated and bound at the first
    /// training plan.
    void allocate_gradients() {
        if (!grads_.empty() || parameter_count == 0) return;
        grads_.allocate(parameter_count);
        for (std::size_t i = 0; i < handles_.size(); ++i) {
            if (bindings_[i].parameters) bindings_[i].gradients = grads_.data() + (bindings_[i].parameters - params_.data());
            handles_[i]->bind(bindings_[i]);
        }
    }
    void grow_workspace(std::size_t n) {
        if (workspace_.size() < std::max<std::size_t>(n, 1)) workspace_.allocate(std::max<std::size_t>(n, 1));
    }

    std::vector<T> download(const typename Backend::template buffer<T>& b, std::size_t n) const {
        std::vector<T> h(n);
        if (n) Backend::download(ctx_, h.data(), b.data(), n);
        return h;
    }
    void upload(typename Backend::template buffer<T>& b, const std::vector<T>& h, std::size_t n, const char* where,
                const char* what) {
        if (h.size() != n)
            throw shape_error(std::string("lamina: ") + where + " got " + std::to_string(h.size()) + " values, the network has " +
                              std::to_string(n) + " " + what);
        if (n) Backend::upload(ctx_, b.data(), h.data(), n);
    }

    exec<T> training_exec(const T* x, T* dx) const {
        exec<T> e;
        e.plan = &train_plan_;
        e.base[graph::space_arena] = const_cast<T*>(train_arena_.data());
        e.base[graph::space_input] = const_cast<T*>(x);
        e.base[graph::space_input_grad] = dx;
        e.workspace = const_cast<T*>(workspace_.data());
        e.batch = current_batch_;
        e.profiler = profiler_;
        return e;
    }
    T* resolve(const graph::ref& r, const T* x, T* dx) const { return training_exec(x, dx).at(r); }

    void run_backward(T* dx, gradient_sink<T>* sink, bool accumulate = false) {
        if (!current_batch_) throw argument_error("lamina: backward() needs a forward_train() first");
        exec<T> e = training_exec(last_input_, dx);
        e.accumulate_input_gradient = accumulate;
        for (auto it = handles_.rbegin(); it != handles_.rend(); ++it) (*it)->backward(ctx_, e, sink);
    }

    void run_predict(const T* in, T* const* outs, std::size_t batch, std::size_t n_out) const {
        if (batch == 0) return;
        if (!in) throw argument_error("lamina: predict got a null input pointer");
        for (std::size_t k = 0; k < n_out; ++k)
            if (!outs[k]) throw argument_error("lamina: predict got a null pointer for output " + std::to_string(k));
        check_batch(batch, "predict");
        auto s = acquire_scratch(batch);
        exec<T> e;
        e.plan = &s->plan;
        e.base[graph::space_arena] = s->arena.data();
        e.workspace = s->workspace.data();
        e.batch = batch;
        e.profiler = profiler_;
        if constexpr (Backend::host_accessible) {
            e.base[graph::space_input] = const_cast<T*>(in);
            for (std::size_t k = 0; k < outputs; ++k) e.base[graph::space_output0 + k] = k < n_out ? outs[k] : s->output[k].data();
        } else {
            Backend::upload(ctx_, s->input.data(), in, batch * input_size);
            e.base[graph::space_input] = s->input.data();
        }
        for (const auto* h : handles_) h->forward(ctx_, e);
        for (std::size_t k = 0; k < n_out; ++k) {
            const T* y = e.at(s->plan.outputs[k]);
            if constexpr (Backend::host_accessible) {
                if (y != outs[k]) Backend::copy(ctx_, outs[k], y, batch * output_sizes[k]);  // output is a view of the input
            } else {
                Backend::download(ctx_, outs[k], y, batch * output_sizes[k]);
            }
        }
        release_scratch(std::move(s));
    }

    std::unique_ptr<scratch_set> acquire_scratch(std::size_t batch) const {
        {
            std::lock_guard<std::mutex> lk(scratch_mutex_);
            for (auto it = scratch_pool_.begin(); it != scratch_pool_.end(); ++it)
                if ((*it)->batch == batch) {
                    auto s = std::move(*it);
                    scratch_pool_.erase(it);
                    return s;
                }
        }
        auto s = std::make_unique<scratch_set>();
        s->batch = batch;
        allocating(batch, [&] {
            s->plan = graph::plan_inference(graph_, batch, sizeof(T), Backend::host_accessible, share_memory_);
            s->arena.allocate(std::max<std::size_t>(s->plan.arena_elements, 1));
            s->workspace.allocate(std::max<std::size_t>(s->plan.workspace_elements, 1));
            if constexpr (!Backend::host_accessible) s->input.allocate(batch * input_size);
            // device outputs, and on host backends the outputs predict() does not return
            for (std::size_t k = Backend::host_accessible ? 1 : 0; k < outputs; ++k)
                s->output[k].allocate(batch * output_sizes[k]);
        });
        return s;
    }
    void release_scratch(std::unique_ptr<scratch_set> s) const {
        std::lock_guard<std::mutex> lk(scratch_mutex_);
        if (scratch_pool_.size() == scratch_pool_.capacity()) scratch_pool_.reserve(scratch_pool_.size() * 2 + 4);
        scratch_pool_.push_back(std::move(s));
    }

    void check_batch(std::size_t batch, const char* where) const {
        if (batch == 0) throw argument_error(std::string("lamina: ") + where + ": batch size must be positive");
        if (batch > max_batch_)
            throw argument_error(std::string("lamina: ") + where + ": batch size " + std::to_string(batch) +
                                 " is too large: its buffers would not fit in the address space (at most " +
                                 std::to_string(max_batch_) + " samples for this network)");
    }
    /// Runs the allocations of a plan, turning an allocation failure into a lamina error that
    /// names the batch.
    template <class F>
    static void allocating(std::size_t batch, F&& f) {
        try {
            f();
        } catch (const std::bad_alloc&) {
            throw allocation_error("lamina: out of memory planning buffers for batch size " + std::to_string(batch) +
                                   " (see summary(batch) for the planned bytes)");
        }
    }

    context_type ctx_;
    graph::description graph_;
    node_type node_;
    std::vector<leaf_handle<Backend, T>*> handles_;
    std::vector<std::unique_ptr<copy_leaf<Backend, T>>> copies_;
    std::vector<placed_tensor> tensors_;
    std::vector<tensor_binding<T>> bindings_;
    typename Backend::template buffer<T> params_, grads_, state_, frozen_;
    std::vector<parameter_segment> segments_, state_segments_;
    std::uint64_t seed_ = 0;
    std::size_t max_batch_ = 0;
    std::size_t planned_ = 0, infer_planned_ = 0, current_batch_ = 0;
    const T* last_input_ = nullptr;
    const T* last_infer_input_ = nullptr;
    bool has_added_loss_ = false;
    bool share_memory_ = true;
    graph::memory_plan train_plan_, infer_plan_;
    typename Backend::template buffer<T> train_arena_, infer_arena_, workspace_;
    node_profiler* profiler_ = nullptr;
    mutable std::mutex scratch_mutex_;
    mutable std::vector<std::unique_ptr<scratch_set>> scratch_pool_;
};

}  // namespace lamina
