// EXPECT-ERROR: layer_shape_mismatch<lamina::conv2d<8, 3[^>]*>, lamina::shape<6, 8, 8>, lamina::channels_divisible_by<4> ?>
// A convolution with 4 groups on 6 channels (6 does not divide by 4): the diagnostic names the
// conv layer, the given shape (6,8,8) and what it expects, a channel count divisible by 4.
#include <lamina/backends/reference/reference_backend.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/network/sequential.hpp>

using bad = lamina::sequential<lamina::input<3, 8, 8>, lamina::conv2d<6, 3, 1, 1>,
                               lamina::conv2d<8, 3, 1, 1, lamina::init::glorot_uniform, true, 1, 4>>;

int main() {
    bad::model<lamina::reference> net{lamina::seed{1}};
    return static_cast<int>(net.parameter_count);
}
