// lamina: batch normalization (Ioffe & Szegedy), PyTorch semantics: per channel for images
// (C, H, W), per feature for vectors; training normalises with the batch's mean and biased
// variance and updates the running mean and the running unbiased variance with momentum
// (running = (1 - m) running + m batch); inference uses the running statistics.
//
//   lm::conv2d<64, 3, 1, 1, lm::init::he_normal, false>, lm::batch_norm, lm::relu
//
// gamma and beta are trainable (no weight decay); running_mean and running_var are running
// state: checkpointed, never optimized. batch_norm_zero_gamma starts gamma at 0 (the last
// BN of a residual block, Goyal et al.). The kernels are batch_norm_kernels<Backend>
// (backends/portable/batch_norm.hpp, specialised by backends that have faster ones).
//
// Synchronised batch norm: while a batch_statistics_scope is active (layers/batch_statistics.hpp;
// the trainer installs one when its communicator is asked to synchronise batch norm), training
// normalises with the mean and variance of the global batch of every process, the running
// statistics follow them (so they stay equal on every process), and backward uses the global
// sums for dx. Without one, each process uses its own batch (the default).
#pragma once

#include <cmath>
#include <cstddef>
#include <ratio>
#include <string>
#include <vector>

#include "../backends/portable/batch_norm.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../network/shape_check.hpp"
#include "batch_statistics.hpp"
#include "layer_concept.hpp"

namespace lamina {

/// Momentum and Eps are std::ratio; GammaInit is how gamma starts (init::kind::ones, or zeros).
template <class Momentum = std::ratio<1, 10>, class Eps = std::ratio<1, 100000>, init::kind GammaInit = init::kind::ones>
struct batch_norm_t : layer_descriptor_base {
    static constexpr double momentum = double(Momentum::num) / double(Momentum::den);
    static constexpr double eps = double(Eps::num) / double(Eps::den);
    static_assert(momentum >= 0.0 && momentum <= 1.0, "lamina::batch_norm: momentum must be in [0, 1]");
    static_assert(eps > 0.0, "lamina::batch_norm: eps must be positive");
    static std::string name() {
        std::string n = "batch_norm";
        if (GammaInit == init::kind::zeros) n += "<gamma=0>";
        return n;
    }
    template <class In>
    static constexpr bool accepts = In::rank == 1 || In::rank == 3;
    template <class In>
    using expected_input = any_shape_of_rank<3>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t channels = chw<In>::c;
        static constexpr std::size_t inner = chw<In>::h * chw<In>::w;  // spatial size per channel
        static constexpr std::size_t parameter_count = 2 * channels;   // gamma, beta
        static constexpr std::size_t state_count = 2 * channels;       // running mean, running variance
        static constexpr double flops_per_sample = 4.0 * In::size;
        static constexpr graph::leaf_traits traits = [] {
            graph::leaf_traits t;
            t.needs_input = true;        // backward recomputes x-hat from x and the saved statistics
            t.in_place_backward = true;  // dx[i] needs dy[i] only, after the per-channel sums
            t.accumulates = true;
            return t;
        }();

        std::vector<tensor_spec> tensor_specs() const {
            return {{"gamma", channels, 0, 0, GammaInit, false, tensor_kind::trainable},
                    {"beta", channels, 0, 0, init::kind::zeros, false, tensor_kind::trainable},
                    {"running_mean", channels, 0, 0, init::kind::zeros, false, tensor_kind::state},
                    {"running_var", channels, 0, 0, init::kind::ones, false, tensor_kind::state}};
        }
        void bind(const tensor_binding<T>& b) {
            p_ = b.parameters;
            g_ = b.gradients;
            s_ = b.state;
        }
        /// The batch mean and 1/sqrt(var + eps) of each channel, kept for backward.
        std::size_t saved_bytes(std::size_t) const { return 2 * channels * sizeof(T); }

        /// Inference: the running statistics.
        void forward(const context& c, const node_io<T>& io) const {
            batch_norm_kernels<Backend>::forward(c, io.x[0], io.y, s_, s_ + channels, p_, p_ + channels, io.batch,
                                                 channels, inner, eps);
        }
        /// Training: batch statistics (of the global batch under a batch_statistics_scope);
        /// updates the running statistics.
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t) {
            T* mean = io.template saved_as<T>();
            synced_ = false;
            if (batch_statistics_reducer* r = batch_statistics_scope::current()) {
                prepare_sync(r);
                batch_norm_kernels<Backend>::forward_train_synced(c, io.x[0], io.y, mean, mean + channels, s_,
                                                                  s_ + channels, p_, p_ + channels, io.batch, channels,
                                                                  inner, eps, momentum, sync_);
                synced_ = true;
                return;
            }
            batch_norm_kernels<Backend>::forward_train(c, io.x[0], io.y, mean, mean + channels, s_, s_ + channels, p_,
                                                       p_ + channels, io.batch, channels, inner, eps, momentum);
        }
        /// Reports the parameter gradients to the sink. A named type, not a lambda: nvcc rejects
        /// a device lambda inside a function template instantiated with a function-local type.
        template <class Sink>
        struct report_gradients {
            Sink* sink;
            const T* gradients;
            void operator()() const { sink->ready(gradients, parameter_count); }
        };
        template <class Sink>
        void backward(const context& c, const node_io<T>& io, Sink& sink) {
            const T* mean = io.template saved_as<T>();
            report_gradients<Sink> ready{&sink, g_};
            if (synced_) {
                sync_.reducer = batch_statistics_scope::current();
                if (!sync_.reducer)
                    throw error("lamina: batch_norm: forward_train normalised with synchronised statistics, but backward "
                                "runs without a batch_statistics_scope (install the same reducer for both passes)");
                batch_norm_kernels<Backend>::backward_synced(c, io.x[0], io.dy, mean, mean + channels, p_, g_,
                                                             g_ + channels, io.dx[0], io.accumulate[0], io.batch,
                                                             channels, inner, sync_, ready);
                return;
            }
            batch_norm_kernels<Backend>::backward(c, io.x[0], io.dy, mean, mean + channels, p_, g_, g_ + channels,
                                                  io.dx[0], io.accumulate[0], io.batch, channels, inner, ready);
        }

        /// "eps" and "momentum" (fold_batch_norm reads eps).
        double constant(const std::string& what) const {
            if (what == "eps") return eps;
            if (what == "momentum") return momentum;
            throw error("lamina: batch_norm has no constant '" + what + "'");
        }
        const T* running_mean() const noexcept { return s_; }
        const T* running_var() const noexcept { return s_ + channels; }

    private:
        /// The 2C + 1 doubles of synchronisation scratch, allocated at the first synchronised
        /// step (later steps allocate nothing).
        void prepare_sync(batch_statistics_reducer* r) {
            if (sync_host_.empty()) {
                sync_host_.assign(2 * channels + 1, 0.0);
                sync_device_.allocate(2 * channels + 1);
            }
            sync_.reducer = r;
            sync_.host = sync_host_.data();
            sync_.device = sync_device_.data();
        }

        T* p_ = nullptr;  // gamma, beta
        T* g_ = nullptr;  // their gradients
        T* s_ = nullptr;  // running mean, running variance
        bool synced_ = false;  // the last forward_train used global statistics
        batch_statistics_sync sync_;
        std::vector<double> sync_host_;
        typename Backend::template buffer<double> sync_device_;
    };
};

using batch_norm = batch_norm_t<>;
/// Batch norm whose gamma starts at 0: a residual block then starts as its shortcut.
using batch_norm_zero_gamma = batch_norm_t<std::ratio<1, 10>, std::ratio<1, 100000>, init::kind::zeros>;

}  // namespace lamina
