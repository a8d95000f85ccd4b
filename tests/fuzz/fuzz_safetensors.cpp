// libFuzzer harness for the safetensors reader (include/lamina/io/safetensors.hpp) and the
// state_dict loader (include/lamina/io/pytorch_names.hpp).
//
// An input that starts with '{' is a header and data: the bytes up to the first NUL are the
// JSON header, the rest the data, and the 8-byte length is put in front here, so that
// mutations of the JSON are not wasted on a wrong length. Any other input is a whole file.
// Every file that parses is converted to float and double, written back with
// safetensors_bytes and parsed again, and loaded into a small real model (conv, batch norm,
// dense; tests/fuzz/fuzz_tensor_models.hpp).
//
// Expected failures are lamina::error; anything else escaping (std::bad_alloc, a crash, a
// sanitizer report, a leak) is a finding. Checked properties, abort() when broken:
//  * a parsed tensor holds exactly numel x element size bytes, and converts to numel values;
//  * writing a parsed file and parsing it again gives the same tensors and metadata;
//  * a load that throws leaves the model's parameters and running state as they were.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fuzz_tensor_models.hpp"

namespace {
using namespace lamina_fuzz;
namespace lio = lamina::io;
using bytes = std::vector<unsigned char>;

void fail(const char* what) {
    std::fprintf(stderr, "fuzz_safetensors: property broken: %s\n", what);
    std::abort();
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static tensor_model net{lamina::seed{1}, lamina::threads{1}};
    bytes file;
    if (size > 0 && data[0] == '{') {
        const auto* nul = static_cast<const std::uint8_t*>(std::memchr(data, 0, size));
        const std::size_t h = nul ? static_cast<std::size_t>(nul - data) : size;
        for (int i = 0; i < 8; ++i) file.push_back(static_cast<unsigned char>(std::uint64_t(h) >> (8 * i)));
        file.insert(file.end(), data, data + h);
        if (nul) file.insert(file.end(), nul + 1, data + size);
    } else {
        file.assign(data, data + size);
    }
    lio::safetensors_file f;
    try {
        f = lio::parse_safetensors(file, "fuzz.safetensors");
    } catch (const lamina::error&) {
        return 0;
    }
    for (const auto& t : f.tensors) {
        std::size_t n = 1;
        for (std::size_t d : t.shape) n *= d;  // no overflow: the reader checked it
        if (t.bytes.size() != n * lio::element_size(t.dtype)) fail("a tensor's bytes disagree with its shape");
        if (t.to<float>().size() != n || t.to<double>().size() != n) fail("a tensor converts to the wrong count");
    }

    const bytes again = lio::safetensors_bytes(f.tensors, f.metadata);
    lio::safetensors_file g;
    try {
        g = lio::parse_safetensors(again, "rewritten.safetensors");
    } catch (const lamina::error&) {
        fail("lamina's writer wrote a file its reader refuses");
    }
    if (g.metadata != f.metadata || g.tensors.size() != f.tensors.size()) fail("a rewritten file differs");
    for (std::size_t i = 0; i < f.tensors.size(); ++i) {
        const auto &a = f.tensors[i], &b = g.tensors[i];
        if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape || a.bytes != b.bytes)
            fail("a rewritten tensor differs");
    }

    const std::vector<float> p = net.get_parameters(), s = net.get_state();
    for (bool allow_unused : {false, true}) {
        lio::pytorch_load_options o;
        o.allow_unused = allow_unused;
        try {
            (void)lio::load_pytorch_state_dict(net, f.map(), tensor_model_names(), o, "fuzz.safetensors");
        } catch (const lamina::error&) {
            if (!same_bits(net.get_parameters(), p) || !same_bits(net.get_state(), s))
                fail("a failed load changed the model");
        }
    }
    net.set_parameters(p);
    net.set_state(s);
    return 0;
}
