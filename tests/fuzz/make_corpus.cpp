// Writes the fuzzers' seed corpus: make_fuzz_corpus <dir> creates <dir>/checkpoint/ and
// <dir>/idx/ with a few small valid and near-valid inputs. The committed copy is
// tests/fuzz/corpus/; the test fuzz.corpus_fresh fails when it differs from what this program
// writes (regenerate: build make_fuzz_corpus, run it with tests/fuzz/corpus). Every byte is
// deterministic: fixed values, no initialiser draws, gzip as hand-made stored blocks (no
// dependence on zlib's compressor version).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>

#include "fuzz_models.hpp"

namespace {
using namespace lamina_fuzz;
using bytes = std::vector<unsigned char>;
namespace io = lamina::io;

std::string out_dir;

void write(const std::string& rel, const bytes& b) {
    const std::string p = out_dir + "/" + rel;
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    if (!f) {
        std::fprintf(stderr, "make_fuzz_corpus: cannot write %s\n", p.c_str());
        std::exit(1);
    }
}
void le(bytes& b, std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}

std::vector<float> values(std::size_t n, int salt) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>((i * 7 + static_cast<std::size_t>(salt)) % 17) * 0.0625f - 0.5f;
    return v;
}

io::record_set weights() {
    io::record_set rs;
    rs.put_string("architecture", io::architecture_of<model>());
    rs.put("parameters", values(model::parameter_count, 0));
    rs.put_u64("seed", 1);
    return rs;
}

io::record_set checkpoint(const std::string& optimizer) {
    io::record_set rs = weights();
    rs.put_string("optimizer", optimizer);
    rs.put_u64("optimizer.steps", 5);
    if (optimizer == "sgd") {
        rs.put("optimizer.velocity", values(model::parameter_count, 1));
    } else {
        rs.put("optimizer.m", values(model::parameter_count, 2));
        rs.put("optimizer.v", values(model::parameter_count, 3));
    }
    rs.put_u64("epoch", 1);
    rs.put_u64("step", 5);
    rs.put_u64("shuffle_seed", 12345);
    return rs;
}

/// An IDX file: 00 00 type ndims, big-endian dimensions, data.
bytes idx(unsigned char type, const std::vector<std::uint32_t>& dims, const bytes& data) {
    bytes b = {0, 0, type, static_cast<unsigned char>(dims.size())};
    for (std::uint32_t d : dims)
        for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(d >> s));
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

/// gzip (RFC 1952) of one stored deflate block (RFC 1951, BTYPE 00): header, block, CRC-32, ISIZE.
bytes gzip_stored(const bytes& data) {
    bytes g = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    g.push_back(1);  // BFINAL, BTYPE 00
    le(g, data.size(), 2);
    le(g, ~data.size() & 0xFFFF, 2);
    g.insert(g.end(), data.begin(), data.end());
    le(g, io::crc32(data.data(), data.size()), 4);
    le(g, data.size(), 4);
    return g;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_fuzz_corpus <dir>\n");
        return 2;
    }
    out_dir = argv[1];
    ::mkdir(out_dir.c_str(), 0755);
    ::mkdir((out_dir + "/checkpoint").c_str(), 0755);
    ::mkdir((out_dir + "/idx").c_str(), 0755);

    // Checkpoints: whole files (start with the magic) and payloads (wrapped by the harness).
    write("checkpoint/weights.lmck", weights().bytes());
    write("checkpoint/sgd.lmck", checkpoint("sgd").bytes());
    write("checkpoint/weights.payload", weights().payload());
    write("checkpoint/sgd.payload", checkpoint("sgd").payload());
    write("checkpoint/adamw.payload", checkpoint("adamw").payload());
    {
        io::record_set bad = checkpoint("adamw");
        bad.put("optimizer.v", values(model::parameter_count - 1, 4));  // one short: a late record wrong
        write("checkpoint/adamw_short_state.payload", bad.payload());
        io::record_set bad_type = checkpoint("sgd");
        bad_type.put<double>("epoch", {1.0});
        write("checkpoint/sgd_epoch_f64.payload", bad_type.payload());
    }
    {
        bytes half = weights().bytes();
        half.resize(half.size() / 2);
        write("checkpoint/truncated.lmck", half);
    }
    {
        // The two reproducers: name length 0xfffffff7 behind a valid CRC (31 bytes),
        // payload size 2^64-1 in a 23-byte file.
        const bytes p = {0xf7, 0xff, 0xff, 0xff, 0xff, 0x37, 0xff};
        bytes f = {'L', 'A', 'M', 'I', 'N', 'A', 'C', 'K'};
        le(f, 1, 4);
        le(f, p.size(), 8);
        f.insert(f.end(), p.begin(), p.end());
        le(f, io::crc32(p.data(), p.size()), 4);
        write("checkpoint/repro_name_length.lmck", f);
        bytes g = {'L', 'A', 'M', 'I', 'N', 'A', 'C', 'K'};
        le(g, 1, 4);
        le(g, ~std::uint64_t(0), 8);
        g.insert(g.end(), {0, 0, 0});
        write("checkpoint/repro_payload_size.lmck", g);
    }

    // IDX: each type, MNIST-shaped images and labels, gzipped, and near-valid ones.
    const bytes pixels = {0, 255, 51, 102, 153, 204, 1, 2, 3, 4, 5, 6};
    const bytes labels = {7, 0, 9};
    write("idx/labels.idx1", idx(0x08, {3}, labels));
    write("idx/images.idx3", idx(0x08, {3, 2, 2}, pixels));
    write("idx/labels.idx1.gz", gzip_stored(idx(0x08, {3}, labels)));
    write("idx/images.idx3.gz", gzip_stored(idx(0x08, {3, 2, 2}, pixels)));
    write("idx/int8.idx", idx(0x09, {3}, {0x00, 0x7f, 0xff}));
    write("idx/int16.idx", idx(0x0B, {2}, {0x01, 0x02, 0xff, 0xfe}));
    write("idx/int32.idx", idx(0x0C, {1, 2}, {0, 1, 0, 0, 0x80, 0, 0, 0}));
    write("idx/float32.idx", idx(0x0D, {2}, {0x3f, 0xc0, 0, 0, 0xc1, 0x20, 0, 0}));
    write("idx/float64.idx", idx(0x0E, {1}, {0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18}));
    write("idx/truncated.idx3", idx(0x08, {3, 2, 2}, bytes(pixels.begin(), pixels.begin() + 7)));
    write("idx/huge_dims.idx", idx(0x08, {65536, 65536, 65536, 65536}, {}));
    {
        bytes gz = gzip_stored(idx(0x08, {3}, labels));
        gz.resize(gz.size() - 5);
        write("idx/truncated.gz", gz);
    }
    return 0;
}
