// Writes the seed corpus of the safetensors and .npy harnesses: make_fuzz_corpus_tensors <dir>
// creates <dir>/safetensors/ and <dir>/npy/ with a few small valid and near-valid inputs. The
// committed copy is in tests/fuzz/corpus/ (next to make_corpus.cpp's); the test
// fuzz.corpus_fresh fails when it differs from what the two programs write. Every byte is
// deterministic: fixed values, lamina's writers (io/safetensors.hpp, io/npy.hpp) and
// hand-made bytes.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <lamina/io/npy.hpp>
#include <lamina/io/safetensors.hpp>

namespace {
namespace lio = lamina::io;
using bytes = std::vector<unsigned char>;

std::string out_dir;

void write(const std::string& rel, const bytes& b) {
    const std::string p = out_dir + "/" + rel;
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    if (!f) {
        std::fprintf(stderr, "make_fuzz_corpus_tensors: cannot write %s\n", p.c_str());
        std::exit(1);
    }
}
bytes text(const std::string& s) { return bytes(s.begin(), s.end()); }

std::vector<float> values(std::size_t n, int salt) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>((i * 7 + static_cast<std::size_t>(salt)) % 17) * 0.0625f - 0.5f;
    return v;
}
lio::named_tensor f32(const std::string& name, std::vector<std::size_t> shape, int salt) {
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;
    return lio::named_tensor::from(name, std::move(shape), values(n, salt));
}
lio::named_tensor raw(const std::string& name, lio::tensor_dtype d, std::vector<std::size_t> shape, bytes b) {
    lio::named_tensor t;
    t.name = name;
    t.dtype = d;
    t.shape = std::move(shape);
    t.bytes = std::move(b);
    return t;
}

/// The state_dict of the harness's model (tests/fuzz/fuzz_tensor_models.hpp), as PyTorch names it.
std::vector<lio::named_tensor> state_dict() {
    return {f32("conv.weight", {2, 1, 3, 3}, 0), f32("conv.bias", {2}, 1),      f32("bn.weight", {2}, 2),
            f32("bn.bias", {2}, 3),              f32("bn.running_mean", {2}, 4), f32("bn.running_var", {2}, 5),
            raw("bn.num_batches_tracked", lio::tensor_dtype::i64, {}, {3, 0, 0, 0, 0, 0, 0, 0}),
            f32("fc.weight", {3, 32}, 6),        f32("fc.bias", {3}, 7)};
}

/// A header and its data as the harnesses' short form: JSON, NUL, data.
bytes short_form(const bytes& file) {
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= std::uint64_t(file[static_cast<std::size_t>(i)]) << (8 * i);
    bytes b(file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(n));
    b.push_back(0);
    b.insert(b.end(), file.begin() + 8 + static_cast<std::ptrdiff_t>(n), file.end());
    return b;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_fuzz_corpus_tensors <dir>\n");
        return 2;
    }
    out_dir = argv[1];
    ::mkdir(out_dir.c_str(), 0755);
    ::mkdir((out_dir + "/safetensors").c_str(), 0755);
    ::mkdir((out_dir + "/npy").c_str(), 0755);

    // safetensors: the model's state_dict (whole and short form), every dtype, near-valid files
    const bytes sd = lio::safetensors_bytes(state_dict(), {{"format", "pt"}});
    write("safetensors/state_dict.safetensors", sd);
    write("safetensors/state_dict.short", short_form(sd));
    const bytes kinds = lio::safetensors_bytes(
        {raw("b", lio::tensor_dtype::boolean, {2}, {1, 0}), raw("u8", lio::tensor_dtype::u8, {1}, {200}),
         raw("i16", lio::tensor_dtype::i16, {1}, {0xFF, 0xFF}), raw("h", lio::tensor_dtype::f16, {2}, {0, 0x3C, 1, 0}),
         raw("bf", lio::tensor_dtype::bf16, {1}, {0xC0, 0x3F}), raw("u32", lio::tensor_dtype::u32, {1}, {1, 2, 3, 4}),
         raw("i64", lio::tensor_dtype::i64, {}, {0xF9, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}),
         lio::named_tensor::from("d", {1, 1}, std::vector<double>{2.5}), raw("empty", lio::tensor_dtype::f32, {0, 3}, {})});
    write("safetensors/dtypes.short", short_form(kinds));
    {
        bytes t = sd;
        t.resize(t.size() - 5);
        write("safetensors/truncated_data.safetensors", t);
        bytes h = sd;
        h.resize(20);
        write("safetensors/truncated_header.safetensors", h);
    }
    write("safetensors/overlap.short",
          text(std::string("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}") +
               '\0' + "12345678"));
    write("safetensors/huge_shape.short",
          text(std::string("{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}") + '\0' +
               "12345678"));
    write("safetensors/metadata.short", text(std::string("{\"__metadata__\":{\"k\":\"v\",\"n\":\"\\u00e9\\n\"}}") + '\0'));

    // npy: each version, dtypes, the short form (header dict, NUL, data), near-valid files
    write("npy/f4_2x3_v1.npy", lio::npy_bytes(f32("x", {2, 3}, 0)));
    write("npy/f8_scalar.npy", lio::npy_bytes(lio::named_tensor::from("x", {}, std::vector<double>{-1.25})));
    {
        bytes v3 = lio::npy_bytes(raw("x", lio::tensor_dtype::i64, {1}, {5, 0, 0, 0, 0, 0, 0, 0}));
        v3[6] = 3;  // 3.0: a 4-byte header length
        const std::uint64_t h = std::uint64_t(v3[8]) | std::uint64_t(v3[9]) << 8;
        v3.insert(v3.begin() + 10, {0, 0});
        v3[8] = static_cast<unsigned char>(h);
        v3[9] = static_cast<unsigned char>(h >> 8);
        write("npy/i8_v3.npy", v3);
    }
    write("npy/bool.short", text(std::string("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }\n") + '\0' +
                                 std::string("\x01\x00\x01", 3)));
    write("npy/f2_fortran_1d.short",
          text(std::string("{'descr': '<f2', 'fortran_order': True, 'shape': (1, 2), }") + '\0' + std::string("\0<\0\xbc", 4)));
    write("npy/u2_2d.short", text(std::string("{\"descr\": \"<u2\", \"fortran_order\": False, \"shape\": (2L, 1L)}") + '\0' +
                                  "abcd"));
    write("npy/big_endian.short", text(std::string("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }") + '\0' + "abcd"));
    write("npy/fortran_2d.short",
          text(std::string("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }") + '\0' + std::string(16, 'x')));
    write("npy/structured.short", text(std::string("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }") +
                                       '\0' + "abcd"));
    {
        bytes t = lio::npy_bytes(f32("x", {4}, 1));
        t.resize(t.size() - 3);
        write("npy/truncated.npy", t);
    }
    return 0;
}
