// EXPECT-ERROR: layer_shape_mismatch<lamina::dense<10[^>]*>, lamina::shape<1, 28, 28>, lamina::any_shape_of_rank<1> ?>
// A dense layer directly on an image (the flatten is missing): the diagnostic must name
// the layer, the given shape (1,28,28) and the expected rank-1 shape.
#include <lamina/layers/activations.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/layers/dense.hpp>
#include <lamina/backends/reference/reference_backend.hpp>
#include <lamina/network/sequential.hpp>

using bad = lamina::sequential<lamina::input<1, 28, 28>, lamina::relu, lamina::dense<10>>;

int main() {
    bad::model<lamina::reference> net{lamina::seed{1}};
    return static_cast<int>(net.parameter_count);
}
