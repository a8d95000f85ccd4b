// DeepGalaxy in miniature, data-parallel over MPI (examples/deepgalaxy/deepgalaxy_recipe.hpp has
// the recipe; examples/deepgalaxy/main.cpp is the one-process program):
//
//   mpirun -np 4 ./deepgalaxy_mpi [--data-mode fixed|reshuffle|all] [--reshuffle-every M]
//                                 [--scale-lr] [--batch N (per rank)] [deepgalaxy's options]
//
// Rank 0 simulates the mergers and writes them in DeepGalaxy's HDF5 layout; every rank reads
// the file. Each training run (FCAE + classifier, VAE, classifier) averages gradients over the
// ranks; --data-mode picks DeepGalaxy's three ways of spreading the data: a fixed shard per
// rank, shards redrawn every M epochs, or every rank seeing all the data. Rank 0 prints and
// writes the pictures; the other ranks' standard output is discarded.
#include <mpi.h>

#include <cstdio>

#include <lamina/communicators/mpi.hpp>
#include <lamina/lamina.hpp>

#include "deepgalaxy_recipe.hpp"

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, ranks = 1, status = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    if (rank != 0 && !std::freopen("/dev/null", "w", stdout)) status = 1;
    try {
        const auto options = deepgalaxy_example::parse_options(argc, argv);
        std::printf("%d ranks, %zu images per rank per step (global batch %zu)%s\n", ranks, options.batch,
                    options.batch * static_cast<std::size_t>(ranks),
                    options.scale_lr ? ", linear scaling rule with one warm-up epoch" : "");
        deepgalaxy_example::run<lamina::host>(options, lamina::comm::mpi{MPI_COMM_WORLD},
                                              [] { MPI_Barrier(MPI_COMM_WORLD); });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: error: %s\n", rank, e.what());
        status = 1;
    }
    // A rank that failed alone would leave the others waiting in a collective.
    if (status) MPI_Abort(MPI_COMM_WORLD, status);
    MPI_Finalize();
    return status;
}
