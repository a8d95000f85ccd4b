// lamina: the reparameterisation step of a variational autoencoder (Kingma & Welling).
// Input: one vector per sample holding [mu (Z values), logvar (Z values)], size 2Z; output:
// z (Z values).
//
//   training:   z = mu + exp(0.5 logvar) * eps,  eps ~ N(0, 1)
//   inference:  z = mu  (the posterior mean: deterministic predictions)
//
// eps comes from the counter-based RNG keyed by the model seed, the layer and the training
// step (as dropout's mask), so it is the same on every backend and thread count; it is kept
// in the node's saved block for backward.
//
// In training the node adds Beta * KL(q(z|x) || N(0, I)) to the loss, with the conventions
//   KL per sample  = -0.5 * sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))   (sum over latents)
//   added loss     = Beta * mean over the batch of KL per sample
// (the batch mean matches the losses, which are batch means too). forward_train writes each
// sample's KL into the saved block; added_loss() reduces it with Backend::sum. Backward adds
// the KL's gradient to the sampling path's:
//   d mu     = dz + Beta mu / batch
//   d logvar = dz * 0.5 exp(0.5 logvar) eps + Beta 0.5 (exp(logvar) - 1) / batch
//
//   lm::dense<64>, lm::relu, lm::dense<2 * 8>, lm::vae_sampling<>, lm::dense<64>, ...  // Z = 8
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ratio>
#include <string>

#include "../core/config.hpp"
#include "../core/philox.hpp"
#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

/// What vae_sampling expects, named in its shape diagnostic: a vector [mu, logvar] of even size.
struct mu_logvar_vector_of_even_size {};

/// Beta (the KL term's weight, beta-VAE) is a std::ratio; std::ratio<0> trains without the KL.
template <class Beta = std::ratio<1>>
struct vae_sampling : layer_descriptor_base {
    static constexpr double beta = double(Beta::num) / double(Beta::den);
    static_assert(Beta::num >= 0, "lamina::vae_sampling: Beta must be non-negative");
    static std::string name() {
        return Beta::num == Beta::den ? std::string("vae_sampling")
                                      : "vae_sampling<beta=" + std::to_string(beta).substr(0, 6) + ">";
    }
    template <class In>
    static constexpr bool accepts = In::rank == 1 && In::size % 2 == 0 && In::size > 0;
    template <class In>
    using expected_input = mu_logvar_vector_of_even_size;
    template <class In>
    using output_shape = shape<In::size / 2>;

    template <class In, class Backend, class T>
    class impl : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        static constexpr std::size_t latent = In::size / 2;  // Z
        static constexpr bool adds_loss = true;
        static constexpr double flops_per_sample = double(latent);  // inference: a copy
        static constexpr auto traits = graph::leaf_traits{}.accumulating();  // backward reads mu and logvar
        /// eps (batch x Z), then each sample's KL (batch).
        std::size_t saved_bytes(std::size_t batch) const { return (batch * latent + batch) * sizeof(T); }
        /// Set by the model: distinguishes this layer's stream from every other layer's.
        void set_stream(random_stream s) { stream_ = s; }

        /// Inference: z = mu.
        void forward(const context& c, const node_io<T>& io) const {
            const T* x = io.x[0];
            T* y = io.y;
            constexpr std::size_t Z = latent;
            Backend::for_each_index(c, io.batch * Z, LAMINA_LAMBDA(std::size_t i) {
                y[i] = x[(i / Z) * 2 * Z + i % Z];
            });
        }
        void forward_train(const context& c, const node_io<T>& io, std::uint64_t step) {
            const random_stream s = stream_.child(step);  // element i of the batch's z draws number i
            const T* x = io.x[0];
            T* y = io.y;
            T* eps = io.template saved_as<T>();
            T* kl = eps + io.batch * latent;
            constexpr std::size_t Z = latent;
            Backend::for_each_index(
                c, io.batch * Z,
                LAMINA_LAMBDA(std::size_t i) {
                    const std::size_t b = i / Z, j = i % Z;
                    const T mu = x[b * 2 * Z + j], logvar = x[b * 2 * Z + Z + j];
                    const T e = static_cast<T>(s.gaussian(i));
                    eps[i] = e;
                    y[i] = mu + std::exp(T(0.5) * logvar) * e;
                },
                40);
            Backend::for_each_index(
                c, io.batch,
                LAMINA_LAMBDA(std::size_t b) {
                    double sum = 0;  // in double
                    for (std::size_t j = 0; j < Z; ++j) {
                        const double mu = double(x[b * 2 * Z + j]), logvar = double(x[b * 2 * Z + Z + j]);
                        sum += 1.0 + logvar - mu * mu - std::exp(logvar);
                    }
                    kl[b] = static_cast<T>(-0.5 * sum);
                },
                4 * Z);
        }
        /// Beta times the batch mean of the KL of the last forward_train.
        double added_loss(const context& c, const node_io<T>& io) const {
            if (io.batch == 0) return 0.0;
            const T* kl = io.template saved_as<T>() + io.batch * latent;
            return beta * static_cast<double>(Backend::sum(c, kl, io.batch)) / static_cast<double>(io.batch);
        }
        void backward(const context& c, const node_io<T>& io) {
            T* dx = io.dx[0];
            if (!dx) return;
            const T* x = io.x[0];
            const T* dy = io.dy;
            const T* eps = io.template saved_as<T>();
            const T scale = static_cast<T>(beta / static_cast<double>(io.batch));  // d(added loss)/d(KL of a sample)
            const bool acc = io.accumulate[0];
            constexpr std::size_t Z = latent;
            Backend::for_each_index(c, io.batch * Z, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t b = i / Z, j = i % Z;
                const std::size_t im = b * 2 * Z + j, iv = im + Z;
                const T mu = x[im], logvar = x[iv], g = dy[i];
                const T dmu = g + scale * mu;
                const T dlogvar = g * T(0.5) * std::exp(T(0.5) * logvar) * eps[i] + scale * T(0.5) * (std::exp(logvar) - T(1));
                dx[im] = acc ? dx[im] + dmu : dmu;  // selects: dx may hold garbage when overwritten
                dx[iv] = acc ? dx[iv] + dlogvar : dlogvar;
            });
        }

    private:
        random_stream stream_{};
    };
};

}  // namespace lamina
