// examples/deepgalaxy on the Kokkos backend (Kokkos' default execution space): the same
// simulation, HDF5 file, networks, recipe and output (examples/deepgalaxy/deepgalaxy_recipe.hpp).
// The N-body code and the pictures run on the host threads either way.
//
//   ./deepgalaxy_kokkos [--seed 1] [--threads 2] [--out deepgalaxy_kokkos_out] [--staged] [--help]
//                       [--kokkos-...]
//
// Only the --kokkos-* arguments go to Kokkos: Kokkos 3 also claims --threads (as --threads=N),
// which here is the example's own (the simulation's host threads).
#include <lamina/kokkos.hpp>  // Kokkos first, then lamina

#include <cstdio>
#include <string>
#include <vector>

#include "../deepgalaxy/deepgalaxy_recipe.hpp"

using backend = lamina::kokkos_backend<Kokkos::DefaultExecutionSpace>;

int main(int argc, char** argv) {
    std::vector<char*> kokkos_args{argv[0]}, own_args{argv[0]};
    for (int i = 1; i < argc; ++i) (std::string(argv[i]).rfind("--kokkos-", 0) == 0 ? kokkos_args : own_args).push_back(argv[i]);
    int kokkos_argc = static_cast<int>(kokkos_args.size());
    Kokkos::ScopeGuard kokkos(kokkos_argc, kokkos_args.data());  // the application initialises Kokkos, not lamina
    try {
        auto options = deepgalaxy_example::parse_options(static_cast<int>(own_args.size()), own_args.data());
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
