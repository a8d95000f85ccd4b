// EXPECT-ERROR: layer_shape_mismatch<lamina::conv2d<16, 5[^>]*>, lamina::shape<6, 4, 4>, lamina::spatial_at_least<5, 5> ?>
// A 5x5 convolution on a 4x4 map (one pooling too many): the diagnostic names the conv
// layer, the given shape (6,4,4) and the minimum spatial extent 5x5.
#include <lamina/layers/conv2d.hpp>
#include <lamina/layers/pooling.hpp>
#include <lamina/backends/reference/reference_backend.hpp>
#include <lamina/network/sequential.hpp>

using bad = lamina::sequential<lamina::input<1, 16, 16>, lamina::max_pool<2>, lamina::conv2d<6, 3, 1, 1>,
                               lamina::max_pool<2>, lamina::conv2d<16, 5>>;

int main() {
    bad::model<lamina::reference> net{lamina::seed{1}};
    return static_cast<int>(net.parameter_count);
}
