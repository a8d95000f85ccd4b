// DeepGalaxy in miniature (examples/deepgalaxy/deepgalaxy_recipe.hpp has the recipe): simulate
// galaxy mergers, store them in DeepGalaxy's HDF5 layout, train the FCAE with a classifier
// head and the VAE on the host backend, report and draw what they learned.
//
//   ./deepgalaxy [--seed 1] [--threads 2] [--out deepgalaxy_out] [--staged] [--help]
#include <cstdio>

#include <lamina/lamina.hpp>

#include "deepgalaxy_recipe.hpp"

int main(int argc, char** argv) try {
    const auto options = deepgalaxy_example::parse_options(argc, argv);
    deepgalaxy_example::run<lamina::host>(options);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
