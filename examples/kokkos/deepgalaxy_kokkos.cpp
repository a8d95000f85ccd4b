// examples/deepgalaxy on the Kokkos backend (Kokkos' default execution space): the same
// simulation, HDF5 file, networks, recipe and output (examples/deepgalaxy/deepgalaxy_recipe.hpp).
// The N-body code and the pictures run on the host threads either way.
//
//   ./deepgalaxy_kokkos [--seed 1] [--threads 2] [--out deepgalaxy_kokkos_out] [--staged] [--help]
#include <lamina/kokkos.hpp>  // Kokkos first, then lamina

#include <cstdio>

#include "../deepgalaxy/deepgalaxy_recipe.hpp"

using backend = lamina::kokkos_backend<Kokkos::DefaultExecutionSpace>;

int main(int argc, char** argv) {
    Kokkos::ScopeGuard kokkos(argc, argv);  // the application initialises Kokkos, not lamina
    try {
        auto options = deepgalaxy_example::parse_options(argc, argv);
        if (options.out == "deepgalaxy_out") options.out = "deepgalaxy_kokkos_out";
        std::printf("kokkos: %s, concurrency %d\n", backend::execution_space::name(),
                    static_cast<int>(backend::execution_space().concurrency()));
        deepgalaxy_example::run<backend>(options);  // every Kokkos buffer is released before the guard finalises
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
