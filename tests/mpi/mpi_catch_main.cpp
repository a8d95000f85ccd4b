// Catch2's main for the MPI tests: the application (here the test runner) initialises MPI (with
// MPI_THREAD_MULTIPLE, for the communication-thread tests) and, for the Kokkos twin, Kokkos;
// lamina does neither. Every rank runs every test case in the same order; a rank's failure makes
// its exit code non-zero, which mpirun passes on. Ranks other than 0 report only failures.
#define CATCH_CONFIG_RUNNER
#if defined(LAMINA_TEST_KOKKOS)
#include <Kokkos_Core.hpp>
#endif
#include <catch2/catch.hpp>
#include <mpi.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char* argv[]) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int status = 0;
    {
#if defined(LAMINA_TEST_KOKKOS)
        Kokkos::ScopeGuard guard(argc, argv);
#endif
        std::vector<char*> args(argv, argv + argc);
        std::string quiet = "--reporter=compact";
        Catch::Session session;
        if (rank != 0) args.push_back(&quiet[0]);  // rank 0 prints the usual summary
        status = session.run(static_cast<int>(args.size()), args.data());
    }
    if (status) std::fprintf(stderr, "rank %d: %d test failure(s)\n", rank, status);
    MPI_Finalize();
    return status;
}
