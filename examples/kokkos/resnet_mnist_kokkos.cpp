// examples/resnet_mnist on the Kokkos backend (Kokkos' default execution space): the same
// network, recipe and output (examples/common/resnet_mnist_recipe.hpp).
//
//   ./resnet_mnist_kokkos ../shared/data/mnist --seed 1 [--epochs 12]
#include <lamina/kokkos.hpp>  // Kokkos first, then lamina

#include <cstdio>

#include "resnet_mnist_recipe.hpp"

using backend = lamina::kokkos_backend<Kokkos::DefaultExecutionSpace>;

int main(int argc, char** argv) {
    Kokkos::ScopeGuard kokkos(argc, argv);  // the application initialises Kokkos, not lamina
    try {
        auto args = parse_example_args(argc, argv);
        std::printf("kokkos: %s, concurrency %d\n", backend::execution_space::name(),
                    static_cast<int>(backend::execution_space().concurrency()));
        resnet_mnist::network::model<backend> net{lamina::seed{args.seed}};
        resnet_mnist::train<backend>(args, net);  // every Kokkos buffer is released before the guard finalises
        return 0;
    } catch (const lamina::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
