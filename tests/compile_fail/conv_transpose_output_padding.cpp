// EXPECT-ERROR: lamina::conv_transpose2d: the output padding must be smaller than the stride
// A transposed convolution with output padding 2 at stride 2 (PyTorch rejects it too: the
// extra rows would lie beyond every input's scatter): stopped by the layer's static_assert.
#include <lamina/backends/reference/reference_backend.hpp>
#include <lamina/layers/conv_transpose2d.hpp>
#include <lamina/network/sequential.hpp>

using bad = lamina::sequential<lamina::input<4, 8, 8>, lamina::conv_transpose2d<2, 3, 2, 1, 2>>;

int main() {
    bad::model<lamina::reference> net{lamina::seed{1}};
    return static_cast<int>(net.parameter_count);
}
