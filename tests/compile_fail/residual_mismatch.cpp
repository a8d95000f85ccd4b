// EXPECT-ERROR: composite_shape_mismatch<lamina::residual<.*>, lamina::identity, lamina::shape<16, 8, 8>, lamina::shape<32, 8, 8> ?>
// A residual block whose main path changes the channels (16 -> 32) with an identity
// shortcut: the diagnostic must name the residual, the shortcut node and both shapes.
#include <lamina/backends/reference/reference_backend.hpp>
#include <lamina/layers/batch_norm.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/network/composites.hpp>
#include <lamina/network/sequential.hpp>

using bad = lamina::sequential<lamina::input<16, 8, 8>,
                               lamina::residual<lamina::sequential<lamina::conv2d<32, 3, 1, 1>, lamina::batch_norm>>>;

int main() {
    bad::model<lamina::reference> net{lamina::seed{1}};
    return static_cast<int>(net.parameter_count);
}
