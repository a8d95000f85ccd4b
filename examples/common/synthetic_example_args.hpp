// Command-line handling of the examples that generate their own data (examples/mcnn,
// examples/hep_cnn): sizes of the generated sets, batch, epochs, seed, threads.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

struct synthetic_example_args {
    unsigned long seed = 1;
    std::size_t epochs = 0;  // 0: the example's default
    std::size_t batch = 0;   // 0: the example's default
    std::size_t train = 0;   // training images; 0: the example's default
    std::size_t test = 0;    // held-out images; 0: the example's default
    unsigned threads = 0;    // 0: LAMINA_NUM_THREADS or all cores
    bool full = false;       // the paper's image size (a few steps only)
    std::string out;         // folder for the pictures; empty: the example's default
};

inline synthetic_example_args parse_synthetic_example_args(int argc, char** argv, const char* usage) {
    synthetic_example_args a;
    for (int i = 1; i < argc; ++i) {
        const std::string s = argv[i];
        auto number = [&]() -> unsigned long {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s: %s needs a value\n", argv[0], s.c_str());
                std::exit(2);
            }
            const char* v = argv[++i];
            char* end = nullptr;
            const unsigned long n = std::strtoul(v, &end, 10);
            if (!*v || *end || *v == '-' || n > 100000000ul) {
                std::fprintf(stderr, "%s: %s expects a whole number (at most 1e8), got '%s'\n", argv[0], s.c_str(), v);
                std::exit(2);
            }
            return n;
        };
        if (s == "--seed") a.seed = number();
        else if (s == "--epochs") a.epochs = number();
        else if (s == "--batch") a.batch = number();
        else if (s == "--train") a.train = number();
        else if (s == "--test") a.test = number();
        else if (s == "--threads") a.threads = static_cast<unsigned>(number());
        else if (s == "--full") a.full = true;
        else if (s == "--out") {
            if (i + 1 >= argc || !*argv[i + 1]) {
                std::fprintf(stderr, "%s: --out needs a folder\n", argv[0]);
                std::exit(2);
            }
            a.out = argv[++i];
        }
        else {
            std::fprintf(stderr, "usage: %s %s\n", argv[0], usage);
            std::exit(s == "-h" || s == "--help" ? 0 : 2);
        }
    }
    return a;
}
