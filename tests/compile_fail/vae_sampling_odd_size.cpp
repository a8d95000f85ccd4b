// EXPECT-ERROR: layer_shape_mismatch<lamina::vae_sampling<.*>, lamina::shape<7>, lamina::mu_logvar_vector_of_even_size ?>
// vae_sampling takes one vector [mu, logvar] of even size 2Z: an odd-sized input (here 7) must
// stop compilation with a diagnostic naming the layer, the given shape and what it expects.
#include <lamina/backends/reference/reference_backend.hpp>
#include <lamina/layers/dense.hpp>
#include <lamina/layers/vae_sampling.hpp>
#include <lamina/network/sequential.hpp>

using bad = lamina::sequential<lamina::input<4>, lamina::dense<7>, lamina::vae_sampling<>>;

int main() {
    bad::model<lamina::reference> net{lamina::seed{1}};
    return static_cast<int>(net.parameter_count);
}
