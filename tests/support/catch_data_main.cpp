// Catch2 main for tests that need the MNIST files: skip (exit code LAMINA_SKIP_CODE, shown
// as "Skipped" by ctest) with a clear message when LAMINA_DATA_DIR holds no MNIST test set.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

int main(int argc, char** argv) {
    const char* dir = std::getenv("LAMINA_DATA_DIR");
    std::string d = dir ? dir : "";
    bool found = false;
    for (const char* f : {"/t10k-images-idx3-ubyte.gz", "/t10k-images-idx3-ubyte"})
        if (!d.empty() && std::ifstream(d + f).good()) found = true;
    if (!found) {
        std::printf("SKIPPED: MNIST test files not found in LAMINA_DATA_DIR='%s'\n", d.c_str());
        return LAMINA_SKIP_CODE;
    }
    return Catch::Session().run(argc, argv);
}
