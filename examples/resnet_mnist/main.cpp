// ResNet-20 on MNIST padded to 32x32 (examples/common/resnet_mnist_recipe.hpp has the recipe):
// a residual network with batch norm, trained on the host backend.
//
//   ./resnet_mnist ../shared/data/mnist --seed 1 [--epochs 12] [--threads 2]
#include <cstdio>

#include <lamina/lamina.hpp>

#include "resnet_mnist_recipe.hpp"

int main(int argc, char** argv) try {
    auto args = parse_example_args(argc, argv);
    resnet_mnist::network::model<lamina::host> net{lamina::seed{args.seed}, lamina::threads{args.threads}};
    resnet_mnist::train<lamina::host>(args, net);
    return 0;
} catch (const lamina::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
