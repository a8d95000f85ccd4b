// libFuzzer harness for the .npy reader (include/lamina/io/npy.hpp).
//
// An input that starts with '{' is a header dict and data: the bytes up to the first NUL are
// the header, the rest the data, and a version 1.0 prefix (magic, version, length) is put in
// front here, so that mutations of the dict are not wasted on a wrong length. Any other input
// is a whole file. Every array that parses is converted to float and double, written back with
// npy_bytes and parsed again.
//
// Expected failures are lamina::error; anything else escaping, a crash, a sanitizer report or
// a leak is a finding. Checked properties, abort() when broken: a parsed array holds exactly
// numel x element size bytes and converts to numel values; writing it and parsing it again
// gives the same dtype, shape and bytes.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <lamina/io/npy.hpp>

namespace {
namespace lio = lamina::io;
using bytes = std::vector<unsigned char>;

void fail(const char* what) {
    std::fprintf(stderr, "fuzz_npy: property broken: %s\n", what);
    std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    bytes file;
    if (size > 0 && data[0] == '{') {
        const auto* nul = static_cast<const std::uint8_t*>(std::memchr(data, 0, size));
        const std::size_t h = nul ? static_cast<std::size_t>(nul - data) : size;
        if (h > 0xFFFF) return 0;
        file = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(h), static_cast<unsigned char>(h >> 8)};
        file.insert(file.end(), data, data + h);
        if (nul) file.insert(file.end(), nul + 1, data + size);
    } else {
        file.assign(data, data + size);
    }
    lio::named_tensor t;
    try {
        t = lio::parse_npy(file, "fuzz.npy");
    } catch (const lamina::error&) {
        return 0;
    }
    std::size_t n = 1;
    for (std::size_t d : t.shape) n *= d;  // no overflow: the reader checked it
    if (t.bytes.size() != n * lio::element_size(t.dtype)) fail("an array's bytes disagree with its shape");
    if (t.to<float>().size() != n || t.to<double>().size() != n) fail("an array converts to the wrong count");
    lio::named_tensor u;
    try {
        u = lio::parse_npy(lio::npy_bytes(t), "rewritten.npy");
    } catch (const lamina::error&) {
        fail("lamina's writer wrote a file its reader refuses");
    }
    if (u.dtype != t.dtype || u.shape != t.shape || u.bytes != t.bytes) fail("a rewritten array differs");
    return 0;
}
