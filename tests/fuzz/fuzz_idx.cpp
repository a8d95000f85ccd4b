// libFuzzer harness for the IDX reader (include/lamina/data/idx.hpp) and gunzip
// (include/lamina/data/gzip_file.hpp). An input that starts with the gzip magic bytes 1f 8b is
// gunzipped first, as read_file_bytes does, then parsed with parse_idx; every array that parses
// is decoded, checked against its dimensions and fed to mnist_from_idx.
//
// Expected failures are lamina::error; anything else escaping, a crash, a sanitizer report or
// a leak is a finding. A parsed array whose data size disagrees with its dimensions aborts.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <lamina/data/idx.hpp>

namespace {
void fail(const char* what) {
    std::fprintf(stderr, "fuzz_idx: property broken: %s\n", what);
    std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace ld = lamina::data;
    try {
        std::vector<unsigned char> bytes(data, data + size);
        if (ld::is_gzip(bytes)) bytes = ld::gunzip(bytes, "fuzz.gz");
        const ld::idx_array a = ld::parse_idx(bytes.data(), bytes.size(), "fuzz");
        std::size_t n = a.element_size();
        for (std::size_t d : a.dims) n *= d;  // no overflow: parse_idx checked it
        if (a.data.size() != n) fail("an IDX array's data size disagrees with its dimensions");
        const std::vector<double> v = a.values<double>();
        if (v.size() != a.size()) fail("values() has the wrong size");

        // As MNIST images or labels, with a consistent partner.
        if (a.type == ld::idx_type::u8 && a.dims.size() == 3 && a.dims[0] <= a.data.size()) {
            ld::idx_array labels;
            labels.dims = {a.dims[0]};
            labels.data.assign(a.dims[0], 1);
            (void)ld::mnist_from_idx(a, labels);
        } else if (a.dims.size() == 1) {
            ld::idx_array images;
            images.dims = {a.dims[0], 1, 1};
            images.data.assign(a.dims[0], 7);
            (void)ld::mnist_from_idx(images, a);
        }
    } catch (const lamina::error&) {
    }
    return 0;
}
