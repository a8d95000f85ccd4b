// EXPECT-ERROR: composite_shape_mismatch<lamina::branches<lamina::concat, .*>, lamina::conv2d<4, 5[^>]*>, lamina::shape<4, 4, 4>, lamina::shape<8, 8, 8> ?>
// Two branches joined by concat whose outputs differ in height and width (a 5x5 conv without
// padding next to a padded 3x3): the diagnostic names the branches, the path and both shapes.
#include <lamina/backends/reference/reference_backend.hpp>
#include <lamina/layers/conv2d.hpp>
#include <lamina/network/composites.hpp>
#include <lamina/network/sequential.hpp>

using bad = lamina::sequential<lamina::input<3, 10, 10>, lamina::conv2d<8, 3>,
                               lamina::branches<lamina::concat, lamina::conv2d<8, 3, 1, 1>, lamina::conv2d<4, 5>>>;

int main() {
    bad::model<lamina::reference> net{lamina::seed{1}};
    return static_cast<int>(net.parameter_count);
}
