// Catch2's main for the Kokkos backend tests: the application (here the test runner)
// initialises Kokkos; lamina never does.
#define CATCH_CONFIG_RUNNER
#include <Kokkos_Core.hpp>
#include <catch2/catch.hpp>

int main(int argc, char* argv[]) {
    Kokkos::ScopeGuard guard(argc, argv);
    return Catch::Session().run(argc, argv);
}
