// lamina: sequential networks as types.
//
//   using lenet5 = lamina::sequential<lamina::input<1, 28, 28>, lamina::conv2d<6, 5>, lamina::relu, ...>;
//   lenet5::model<lamina::host> net{lamina::seed{42}};
//
// Every layer's input and output shape is deduced while compiling; a layer that cannot take
// its input fails to compile with a diagnostic naming the layer and both shapes. The batch
// size is a runtime value: buffers are planned once per batch size, so training steps and
// batch-1 inference allocate nothing after the first call.
#pragma once

#include <algorithm>
#include <cstdio>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "../core/backend_fwd.hpp"
#include "../core/error.hpp"
#include "../core/philox.hpp"
#include "../core/thread_pool.hpp"
#include "../init/initializers.hpp"
#include "../layers/input.hpp"
#include "layer_chain.hpp"
#include "parameter_segment.hpp"

namespace lamina {

template <class Input, class... Layers>
struct sequential {
    static_assert(is_input<Input>::value,
                  "lamina::sequential: the first element must be lamina::input<...> (the shape of one sample)");
    using input_shape = typename Input::shape_type;
    using output_shape =
        std::tuple_element_t<sizeof...(Layers), typename detail::chain_shapes<input_shape, Layers...>::type>;

    template <class Backend = host, class T = float>
    class model;
};

template <class Input, class... Layers>
template <class Backend, class T>
class sequential<Input, Layers...>::model {
public:
    using backend = Backend;
    using value_type = T;
    using context_type = typename Backend::context;
    using chain = layer_chain<typename Input::shape_type, Backend, T, Layers...>;
    using input_shape = typename chain::input_shape;
    using output_shape = typename chain::output_shape;
    static constexpr std::size_t input_size = input_shape::size;
    static constexpr std::size_t output_size = output_shape::size;
    static constexpr std::size_t parameter_count = chain::parameter_count;
    static constexpr double flops_per_sample = chain::flops_per_sample;
    static constexpr std::size_t depth = chain::depth;
    using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

    /// A network with freshly initialised parameters. `threads` bounds the host backend's
    /// worker threads (default: LAMINA_NUM_THREADS or the available cores).
    explicit model(seed s = seed{0}, threads t = threads{}) : ctx_(t) {
        params_.allocate(std::max<std::size_t>(parameter_count, 1));
        grads_.allocate(std::max<std::size_t>(parameter_count, 1));
        chain_.bind_parameters(params_.data(), grads_.data());
        build_segments();
        initialize(s);
    }
    model(const model&) = delete;
    model& operator=(const model&) = delete;

    /// Re-draws every parameter from `s` (counter-based: identical on every backend).
    void initialize(seed s) {
        seed_ = s.value;
        random_stream root{s.value, 0};
        std::vector<T> host(parameter_count);
        std::size_t i = 0;
        for (const auto& seg : segments_) {
            const auto& spec = specs_[i++].second;
            random_stream st = root.child(seg.layer * 1024 + (i - 1));
            for (std::size_t k = 0; k < seg.count; ++k)
                host[seg.offset + k] = static_cast<T>(init::sample(spec.init, st, k, spec.fan_in, spec.fan_out));
        }
        if (parameter_count) Backend::upload(ctx_, params_.data(), host.data(), parameter_count);
        Backend::fill(ctx_, grads_.data(), grads_.size(), T(0));
        restore_seed(s.value);
    }
    std::uint64_t seed_value() const noexcept { return seed_; }
    /// Sets the seed that keys dropout masks without re-drawing parameters (checkpoint resume).
    void restore_seed(std::uint64_t s) {
        seed_ = s;
        chain_.set_stream(random_stream{s, 0}.child(0xD0D0D0D0ull));
    }

    // ---- description ------------------------------------------------------------------------
    static std::string name_of_layers() {
        std::string s;
        ((s += (s.empty() ? "" : ", ") + Layers::name()), ...);
        return s;
    }
    /// A table of layers, output shapes, parameter counts and forward FLOPs per sample.
    std::string summary() const {
        std::ostringstream os;
        char line[160];
        std::snprintf(line, sizeof line, "%-4s %-26s %-16s %12s %14s\n", "#", "layer", "output", "params", "FLOPs/sample");
        os << line;
        std::snprintf(line, sizeof line, "%-4s %-26s %-16s %12s %14s\n", "", "input", input_shape::str().c_str(), "0", "0");
        os << line;
        summary_rows(os, std::index_sequence_for<Layers...>{});
        std::snprintf(line, sizeof line, "total: %zu parameters, %.4g MFLOPs per sample (forward), backend %s\n",
                      parameter_count, flops_per_sample / 1e6, Backend::name);
        os << line;
        return os.str();
    }

    // ---- parameters ---------------------------------------------------------------------------
    T* parameters() noexcept { return params_.data(); }
    const T* parameters() const noexcept { return params_.data(); }
    T* gradients() noexcept { return grads_.data(); }
    const T* gradients() const noexcept { return grads_.data(); }
    const std::vector<parameter_segment>& parameter_segments() const noexcept { return segments_; }
    /// Host copy of all parameters, in the flat layout.
    std::vector<T> get_parameters() const {
        std::vector<T> h(parameter_count);
        if (parameter_count) Backend::download(ctx_, h.data(), params_.data(), parameter_count);
        return h;
    }
    void set_parameters(const std::vector<T>& h) {
        if (h.size() != parameter_count)
            throw shape_error("lamina: set_parameters got " + std::to_string(h.size()) + " values, the network has " +
                              std::to_string(parameter_count) + " parameters");
        if (parameter_count) Backend::upload(ctx_, params_.data(), h.data(), parameter_count);
    }
    std::vector<T> get_gradients() const {
        std::vector<T> h(parameter_count);
        if (parameter_count) Backend::download(ctx_, h.data(), grads_.data(), parameter_count);
        return h;
    }

    // ---- training interface (used by trainer; usable directly) -----------------------------
    /// Sizes the training buffers for up to `batch` samples (done once; calls with a batch
    /// that fits are free, so the last, smaller batch of an epoch allocates nothing).
    void plan(std::size_t batch) {
        if (batch == 0) throw argument_error("lamina: batch size must be positive");
        if (batch <= planned_) return;
        chain_.plan(ctx_, batch);
        output_.allocate(batch * output_size);
        output_grad_.allocate(batch * output_size);
        workspace_.allocate(std::max<std::size_t>(chain_.workspace_size(batch), 1));
        infer_scratch_.allocate(std::max<std::size_t>(chain::inference_scratch_size(batch), 1));
        planned_ = batch;
    }
    /// Inference forward on device memory through the planned buffers (not thread-safe; the
    /// trainer's evaluation uses it). Returns the device pointer of the output.
    const T* forward_infer(const T* x, std::size_t batch) {
        plan(batch);
        chain_.forward(ctx_, x, output_.data(), batch, workspace_.data(), infer_scratch_.data());
        return output_.data();
    }
    std::size_t planned_batch() const noexcept { return planned_; }

    /// Forward pass of a training step on device memory `x` (batch x input_size); returns the
    /// device pointer of the output. `step` keys the dropout masks.
    const T* forward_train(const T* x, std::size_t batch, std::uint64_t step) {
        plan(batch);
        current_batch_ = batch;
        last_input_ = x;
        chain_.forward_train(ctx_, x, output_.data(), batch, workspace_.data(), step);
        return output_.data();
    }
    /// Device buffer the loss writes dLoss/dOutput into (batch x output_size).
    T* output_gradient() noexcept { return output_grad_.data(); }
    const T* output() const noexcept { return output_.data(); }
    /// Backward pass after forward_train: fills gradients() from output_gradient().
    void backward() {
        chain_.backward(ctx_, last_input_, output_.data(), output_grad_.data(), static_cast<T*>(nullptr), current_batch_,
                        workspace_.data());
    }
    /// Backward that also returns dLoss/dInput into `dx` (device, batch x input_size).
    void backward(T* dx) {
        chain_.backward(ctx_, last_input_, output_.data(), output_grad_.data(), dx, current_batch_, workspace_.data());
    }

    context_type& context() noexcept { return ctx_; }
    const context_type& context() const noexcept { return ctx_; }
    chain& layers() noexcept { return chain_; }
    const chain& layers() const noexcept { return chain_; }

    // ---- embedding: inference on the caller's memory ----------------------------------------
    /// out[batch x output_size] = net(in[batch x input_size]), both host pointers. Const and
    /// thread-safe: concurrent callers each take their own planned scratch. At a batch size
    /// seen before, nothing is allocated.
    void predict(const T* in, T* out, std::size_t batch) const {
        if (batch == 0) return;
        if (!in || !out) throw argument_error("lamina: predict got a null input or output pointer");
        auto scratch = acquire_scratch(batch);
        const T* x = in;
        T* y = out;
        if constexpr (!Backend::host_accessible) {
            Backend::upload(ctx_, scratch->input.data(), in, batch * input_size);
            x = scratch->input.data();
            y = scratch->output.data();
        }
        chain_.forward(ctx_, x, y, batch, scratch->workspace.data(), scratch->ping.data());
        if constexpr (!Backend::host_accessible) Backend::download(ctx_, out, y, batch * output_size);
        release_scratch(std::move(scratch));
    }
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

private:
    struct scratch_set {
        std::size_t batch = 0;
        typename Backend::template buffer<T> ping, workspace, input, output;
    };

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
        s->ping.allocate(std::max<std::size_t>(chain::inference_scratch_size(batch), 1));
        s->workspace.allocate(std::max<std::size_t>(chain_.workspace_size(batch), 1));
        if constexpr (!Backend::host_accessible) {
            s->input.allocate(batch * input_size);
            s->output.allocate(batch * output_size);
        }
        return s;
    }
    void release_scratch(std::unique_ptr<scratch_set> s) const {
        std::lock_guard<std::mutex> lk(scratch_mutex_);
        if (scratch_pool_.size() == scratch_pool_.capacity()) scratch_pool_.reserve(scratch_pool_.size() * 2 + 4);
        scratch_pool_.push_back(std::move(s));
    }

    void build_segments() {
        specs_ = chain_.parameter_specs();
        std::size_t off = 0;
        std::vector<std::string> names{Layers::name()...};
        for (auto& [layer, spec] : specs_) {
            segments_.push_back({std::to_string(layer) + ":" + names[layer] + "." + spec.name, layer, off, spec.count,
                                 spec.decay});
            off += spec.count;
        }
        if (off != parameter_count)
            throw error("lamina: internal error: parameter specs cover " + std::to_string(off) + " of " +
                        std::to_string(parameter_count) + " parameters");
    }
    template <std::size_t... I>
    void summary_rows(std::ostringstream& os, std::index_sequence<I...>) const {
        char line[160];
        ((std::snprintf(line, sizeof line, "%-4zu %-26s %-16s %12zu %14.0f\n", I, Layers::name().c_str(),
                        chain::template shape_at<I + 1>::str().c_str(), chain::template impl_at<I>::parameter_count,
                        chain::template impl_at<I>::flops_per_sample),
          os << line),
         ...);
    }

    context_type ctx_;
    chain chain_;
    typename Backend::template buffer<T> params_, grads_;
    std::vector<std::pair<std::size_t, parameter_spec>> specs_;
    std::vector<parameter_segment> segments_;
    std::uint64_t seed_ = 0;
    std::size_t planned_ = 0, current_batch_ = 0;
    const T* last_input_ = nullptr;
    typename Backend::template buffer<T> output_, output_grad_, workspace_, infer_scratch_;
    mutable std::mutex scratch_mutex_;
    mutable std::vector<std::unique_ptr<scratch_set>> scratch_pool_;
};

}  // namespace lamina
