// Command-line handling shared by the examples: a data folder, --seed, --epochs, --threads.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include <lamina/data/idx.hpp>

struct example_args {
    std::string data_dir;
    unsigned long seed = 1;
    std::size_t epochs = 0;  // 0: the example's default
    unsigned threads = 0;    // 0: LAMINA_NUM_THREADS or all cores
    std::string checkpoint;  // prefix; empty: none
    std::string csv;         // metrics file; empty: none
};

inline void example_usage(const char* prog) {
    std::fprintf(stderr,
                 "usage: %s [DATA_DIR] [--seed N] [--epochs N] [--threads N] [--csv FILE] [--checkpoint PREFIX]\n"
                 "DATA_DIR holds the MNIST IDX files (t10k-*, optionally train-*), .gz or not;\n"
                 "default: $LAMINA_DATA_DIR, else ../shared/data/mnist.\n",
                 prog);
}

inline example_args parse_example_args(int argc, char** argv) {
    example_args a;
    const char* dir = nullptr;
    for (int i = 1; i < argc; ++i) {
        std::string s = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s: %s needs a value\n", argv[0], s.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        auto number = [&](const std::string& v) -> unsigned long {
            char* end = nullptr;
            unsigned long n = std::strtoul(v.c_str(), &end, 10);
            if (v.empty() || *end) {
                std::fprintf(stderr, "%s: %s expects a non-negative integer, got '%s'\n", argv[0], s.c_str(), v.c_str());
                std::exit(2);
            }
            return n;
        };
        if (s == "--seed") a.seed = number(value());
        else if (s == "--epochs") a.epochs = number(value());
        else if (s == "--threads") a.threads = static_cast<unsigned>(number(value()));
        else if (s == "--csv") a.csv = value();
        else if (s == "--checkpoint") a.checkpoint = value();
        else if (s == "-h" || s == "--help") {
            example_usage(argv[0]);
            std::exit(0);
        } else if (!s.empty() && s[0] == '-') {
            std::fprintf(stderr, "%s: unknown option %s\n", argv[0], s.c_str());
            example_usage(argv[0]);
            std::exit(2);
        } else
            dir = argv[i];
    }
    a.data_dir = lamina::data::find_data_dir(dir);
    if (a.data_dir.empty()) {
        std::fprintf(stderr,
                     "%s: no MNIST data folder found: pass one, set LAMINA_DATA_DIR, or run scripts/fetch_mnist.sh\n",
                     argv[0]);
        std::exit(2);
    }
    return a;
}
