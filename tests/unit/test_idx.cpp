// Tests of the IDX / MNIST reader and gzip_file.hpp on small files written to a temp folder.
#include <catch2/catch.hpp>

#include <lamina/data/idx.hpp>

#include <zlib.h>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using bytes = std::vector<unsigned char>;
using Catch::Matchers::Contains;

namespace {

/// A fresh folder under the system temp folder, removed at the end of the test case.
struct temp_dir {
    fs::path path;
    temp_dir() {
        static int counter = 0;
        path = fs::temp_directory_path() /
               ("lamina_test_idx_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const bytes& b) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    REQUIRE(f.good());
}

bytes gzip_bytes(const bytes& b) {
    z_stream zs;
    std::memset(&zs, 0, sizeof zs);
    REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    bytes out(deflateBound(&zs, static_cast<uLong>(b.size())) + 64);
    zs.next_in = const_cast<Bytef*>(b.data());
    zs.avail_in = static_cast<uInt>(b.size());
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

/// An IDX file: magic 00 00 type ndims, big-endian dims, then `data` as given.
bytes idx_bytes(unsigned char type, const std::vector<std::uint32_t>& dims, const bytes& data) {
    bytes b = {0, 0, type, static_cast<unsigned char>(dims.size())};
    for (std::uint32_t d : dims)
        for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(d >> s));
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

// 3 images of 2x3 pixels and their labels.
const bytes kPixels = {0, 255, 51, 102, 153, 204,  //
                       1, 2, 3, 4, 5, 6,           //
                       255, 255, 255, 0, 0, 0};
const bytes kLabels = {7, 0, 9};

template <class E, class F>
std::string message_of(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    FAIL("no exception of the expected type was thrown");
    return {};
}

}  // namespace

TEST_CASE("read_mnist reads plain ubyte images and labels", "[idx]") {
    temp_dir t;
    const std::string img = t / "x-images-idx3-ubyte", lab = t / "x-labels-idx1-ubyte";
    write_file(img, idx_bytes(0x08, {3, 2, 3}, kPixels));
    write_file(lab, idx_bytes(0x08, {3}, kLabels));

    const auto a = lamina::data::read_idx(img);
    CHECK(a.type == lamina::data::idx_type::u8);
    CHECK(a.dims == std::vector<std::size_t>{3, 2, 3});
    CHECK(a.size() == 18);
    CHECK(a.data == kPixels);
    CHECK(a.source == img);

    const lamina::dataset<float> d = lamina::data::read_mnist(img, lab);
    REQUIRE(d.size() == 3);
    CHECK(d.sample_size() == 6);
    CHECK(d.target_size() == 1);
    for (std::size_t i = 0; i < kPixels.size(); ++i) CHECK(d.inputs()[i] == Approx(kPixels[i] / 255.0f));
    CHECK(d.sample(0)[1] == 1.0f);
    CHECK(d.sample(0)[0] == 0.0f);
    CHECK(d.target(0)[0] == 7.0f);
    CHECK(d.target(1)[0] == 0.0f);
    CHECK(d.target(2)[0] == 9.0f);

    const lamina::dataset<float> raw = lamina::data::read_mnist(img, lab, false);
    for (std::size_t i = 0; i < kPixels.size(); ++i) CHECK(raw.inputs()[i] == float(kPixels[i]));
}

TEST_CASE("gzipped IDX files are detected by their magic bytes and decompressed", "[idx][gzip]") {
    temp_dir t;
    const std::string img = t / "x-images-idx3-ubyte.gz", lab = t / "labels-without-extension";
    write_file(img, gzip_bytes(idx_bytes(0x08, {3, 2, 3}, kPixels)));
    write_file(lab, gzip_bytes(idx_bytes(0x08, {3}, kLabels)));
    const lamina::dataset<float> d = lamina::data::read_mnist(img, lab);
    REQUIRE(d.size() == 3);
    CHECK(d.sample(2)[0] == 1.0f);
    CHECK(d.target(2)[0] == 9.0f);

    // A plain file named .gz is read as it is.
    const std::string plain_gz = t / "plain.gz";
    write_file(plain_gz, idx_bytes(0x08, {3}, kLabels));
    CHECK(lamina::data::read_idx(plain_gz).data == kLabels);

    // Two concatenated gzip members decompress to the concatenation (as gunzip does).
    const bytes whole = idx_bytes(0x08, {3}, kLabels);
    bytes two = gzip_bytes(bytes(whole.begin(), whole.begin() + 5));
    const bytes second = gzip_bytes(bytes(whole.begin() + 5, whole.end()));
    two.insert(two.end(), second.begin(), second.end());
    write_file(t / "two.gz", two);
    CHECK(lamina::data::read_file_bytes(t / "two.gz") == whole);
    CHECK(lamina::data::zlib_available());
}

TEST_CASE("IDX element types decode to their values", "[idx]") {
    temp_dir t;
    SECTION("int8") {
        write_file(t / "a", idx_bytes(0x09, {3}, {0x00, 0x7f, 0xff}));
        const auto a = lamina::data::read_idx(t / "a");
        CHECK(a.type == lamina::data::idx_type::i8);
        CHECK(a.values() == std::vector<double>{0, 127, -1});
    }
    SECTION("int16") {
        write_file(t / "a", idx_bytes(0x0B, {2}, {0x01, 0x02, 0xff, 0xfe}));
        CHECK(lamina::data::read_idx(t / "a").values() == std::vector<double>{258, -2});
    }
    SECTION("int32, 2-D") {
        write_file(t / "a", idx_bytes(0x0C, {1, 2}, {0x00, 0x01, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00}));
        const auto a = lamina::data::read_idx(t / "a");
        CHECK(a.dims == std::vector<std::size_t>{1, 2});
        CHECK(a.values() == std::vector<double>{65536, -2147483648.0});
    }
    SECTION("float32") {
        write_file(t / "a", idx_bytes(0x0D, {2}, {0x3f, 0xc0, 0x00, 0x00, 0xc1, 0x20, 0x00, 0x00}));
        CHECK(lamina::data::read_idx(t / "a").values<float>() == std::vector<float>{1.5f, -10.0f});
    }
    SECTION("float64") {
        write_file(t / "a", idx_bytes(0x0E, {1}, {0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18}));
        CHECK(lamina::data::read_idx(t / "a").value(0) == 3.141592653589793);
    }
}

TEST_CASE("IDX format errors name the file and the problem", "[idx][errors]") {
    temp_dir t;
    const std::string f = t / "bad-idx3-ubyte";
    using lamina::format_error;

    SECTION("wrong magic number shows the bytes found") {
        write_file(f, {'P', 'K', 3, 4, 0, 0, 0, 1, 9});
        const auto m = message_of<format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("wrong magic number") && Contains("found 50 4b 03 04"));
    }
    SECTION("unsupported type code") {
        write_file(f, idx_bytes(0x0A, {1}, {0}));
        const auto m = message_of<format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("unsupported IDX type code 0x0A"));
    }
    SECTION("truncated data: expected vs found byte counts") {
        bytes b = idx_bytes(0x08, {3, 2, 3}, kPixels);
        b.resize(b.size() - 8);
        write_file(f, b);
        const auto m = message_of<format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("truncated data") && Contains("expected 18 bytes of data") &&
                          Contains("found 10") && Contains("3x2x3"));
    }
    SECTION("truncated data of a wider type") {
        write_file(f, idx_bytes(0x0C, {2}, {0, 0, 0, 1, 0, 0}));
        const auto m = message_of<format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains("expected 8 bytes of data") && Contains("found 6") && Contains("int32"));
    }
    SECTION("trailing bytes after the data") {
        write_file(f, idx_bytes(0x08, {2}, {1, 2, 3}));
        const auto m = message_of<format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("1 unexpected trailing byte") && Contains("expected 2 bytes"));
    }
    SECTION("truncated header: dimensions missing") {
        bytes b = idx_bytes(0x08, {3, 2, 3}, {});
        b.resize(9);
        write_file(f, b);
        const auto m = message_of<format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("truncated header") && Contains("16-byte header") &&
                          Contains("only 9 bytes"));
    }
    SECTION("truncated header: shorter than the magic number") {
        write_file(f, {0, 0});
        const auto m = message_of<format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("truncated header") && Contains("2 bytes"));
    }
    SECTION("empty file") {
        write_file(f, {});
        const auto m = message_of<format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("truncated header") && Contains("0 bytes"));
    }
    SECTION("zero dimensions") {
        write_file(f, {0, 0, 8, 0});
        const auto m = message_of<format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("0 dimensions"));
    }
}

TEST_CASE("MNIST pair errors name the files and the problem", "[idx][errors]") {
    temp_dir t;
    const std::string img = t / "images", lab = t / "labels";
    using lamina::format_error;

    SECTION("image count != label count") {
        write_file(img, idx_bytes(0x08, {3, 2, 3}, kPixels));
        write_file(lab, idx_bytes(0x08, {2}, {1, 2}));
        const auto m = message_of<format_error>([&] { lamina::data::read_mnist(img, lab); });
        CHECK_THAT(m, Contains(img) && Contains(lab) && Contains("3 images") && Contains("2 labels") &&
                          Contains("does not match"));
    }
    SECTION("label out of range") {
        write_file(img, idx_bytes(0x08, {3, 2, 3}, kPixels));
        write_file(lab, idx_bytes(0x08, {3}, {1, 10, 2}));
        const auto m = message_of<format_error>([&] { lamina::data::read_mnist(img, lab); });
        CHECK_THAT(m, Contains(lab) && Contains("label 10 of sample 1 is out of range") && Contains("0..9"));
    }
    SECTION("images of the wrong element type") {
        write_file(img, idx_bytes(0x0D, {1, 1, 1}, {0, 0, 0, 0}));
        write_file(lab, idx_bytes(0x08, {1}, {1}));
        const auto m = message_of<format_error>([&] { lamina::data::read_mnist(img, lab); });
        CHECK_THAT(m, Contains(img) && Contains("wrong element type") && Contains("0x08") && Contains("float32"));
    }
    SECTION("images with the wrong number of dimensions") {
        write_file(img, idx_bytes(0x08, {3, 6}, kPixels));
        write_file(lab, idx_bytes(0x08, {3}, kLabels));
        const auto m = message_of<format_error>([&] { lamina::data::read_mnist(img, lab); });
        CHECK_THAT(m, Contains(img) && Contains("expected 3") && Contains("found 2 (3x6)"));
    }
    SECTION("labels with the wrong number of dimensions") {
        write_file(img, idx_bytes(0x08, {3, 2, 3}, kPixels));
        write_file(lab, idx_bytes(0x08, {3, 1}, kLabels));
        const auto m = message_of<format_error>([&] { lamina::data::read_mnist(img, lab); });
        CHECK_THAT(m, Contains(lab) && Contains("expected 1") && Contains("found 2"));
    }
}

TEST_CASE("I/O and gzip errors", "[idx][errors][gzip]") {
    temp_dir t;
    SECTION("missing file -> io_error naming it and the reason") {
        const std::string f = t / "no-such-file.gz";
        const auto m = message_of<lamina::io_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("cannot open") && Contains("No such file"));
    }
    SECTION("a directory -> io_error") {
        const auto m = message_of<lamina::io_error>([&] { lamina::data::read_idx(t.path.string()); });
        CHECK_THAT(m, Contains(t.path.string()));
    }
    SECTION("corrupt gzip -> format_error") {
        const std::string f = t / "corrupt.gz";
        bytes gz = gzip_bytes(idx_bytes(0x08, {3, 2, 3}, kPixels));
        for (std::size_t i = 10; i + 8 < gz.size(); ++i) gz[i] = static_cast<unsigned char>(gz[i] ^ 0x5a);
        write_file(f, gz);
        const auto m = message_of<lamina::format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("corrupt gzip"));
    }
    SECTION("gzip with a wrong CRC -> format_error") {
        const std::string f = t / "badcrc.gz";
        bytes gz = gzip_bytes(idx_bytes(0x08, {3, 2, 3}, kPixels));
        gz[gz.size() - 8] ^= 0xff;  // first CRC32 byte
        write_file(f, gz);
        const auto m = message_of<lamina::format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("corrupt gzip"));
    }
    SECTION("truncated gzip -> format_error") {
        const std::string f = t / "truncated-images-idx3-ubyte.gz";
        bytes gz = gzip_bytes(idx_bytes(0x08, {3, 2, 3}, kPixels));
        gz.resize(gz.size() / 2);
        write_file(f, gz);
        const auto m = message_of<lamina::format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("truncated gzip"));
    }
    SECTION("only the gzip magic bytes -> truncated") {
        const std::string f = t / "magic-only.gz";
        write_file(f, {0x1f, 0x8b});
        const auto m = message_of<lamina::format_error>([&] { lamina::data::read_file_bytes(f); });
        CHECK_THAT(m, Contains(f) && Contains("truncated gzip"));
    }
    SECTION("trailing garbage after the gzip stream -> format_error") {
        const std::string f = t / "garbage.gz";
        bytes gz = gzip_bytes(idx_bytes(0x08, {3}, kLabels));
        gz.push_back('x');
        write_file(f, gz);
        const auto m = message_of<lamina::format_error>([&] { lamina::data::read_file_bytes(f); });
        CHECK_THAT(m, Contains(f) && Contains("trailing garbage"));
    }
    SECTION("a gzip file whose content is not IDX -> wrong magic") {
        const std::string f = t / "text.gz";
        write_file(f, gzip_bytes({'h', 'e', 'l', 'l', 'o'}));
        const auto m = message_of<lamina::format_error>([&] { lamina::data::read_idx(f); });
        CHECK_THAT(m, Contains(f) && Contains("wrong magic number") && Contains("68 65 6c 6c"));
    }
}

TEST_CASE("read_mnist_dir finds plain or gzipped files and lists what it looked for", "[idx][mnist]") {
    temp_dir t;
    const std::string dir = t.path.string();
    SECTION("absent files") {
        const auto m = message_of<lamina::io_error>([&] { lamina::data::read_mnist_dir(dir); });
        CHECK_THAT(m, Contains(dir) && Contains("t10k-images-idx3-ubyte.gz") && Contains("t10k-labels-idx1-ubyte") &&
                          Contains("not found"));
    }
    SECTION("only the labels absent") {
        write_file(t / "t10k-images-idx3-ubyte", idx_bytes(0x08, {3, 2, 3}, kPixels));
        const auto m = message_of<lamina::io_error>([&] { lamina::data::read_mnist_dir(dir); });
        CHECK_THAT(m, Contains("no labels file") && Contains("t10k-labels-idx1-ubyte.gz"));
        CHECK_THAT(m, !Contains("no images file"));
    }
    SECTION("gzipped images, plain labels, another prefix") {
        write_file(t / "train-images-idx3-ubyte.gz", gzip_bytes(idx_bytes(0x08, {3, 2, 3}, kPixels)));
        write_file(t / "train-labels-idx1-ubyte", idx_bytes(0x08, {3}, kLabels));
        const auto d = lamina::data::read_mnist_dir(dir + "/", "train");
        CHECK(d.size() == 3);
        CHECK(d.target(0)[0] == 7.0f);
    }
    SECTION("empty directory name") {
        CHECK_THROWS_AS(lamina::data::read_mnist_dir(""), lamina::io_error);
    }
}

TEST_CASE("mnist_train_test: the agreed split", "[idx][mnist]") {
    temp_dir t;
    const std::string dir = t.path.string();
    // A fake t10k set of 8005 1x1 images: pixel i % 256, label i % 10.
    const std::uint32_t n = 8005;
    bytes px(n), lb(n);
    for (std::uint32_t i = 0; i < n; ++i) {
        px[i] = static_cast<unsigned char>(i % 256);
        lb[i] = static_cast<unsigned char>(i % 10);
    }
    write_file(t / "t10k-images-idx3-ubyte.gz", gzip_bytes(idx_bytes(0x08, {n, 1, 1}, px)));
    write_file(t / "t10k-labels-idx1-ubyte.gz", gzip_bytes(idx_bytes(0x08, {n}, lb)));

    SECTION("without the training files: t10k 0..7999 / 8000..") {
        const auto s = lamina::data::mnist_train_test(dir);
        CHECK_FALSE(s.full_training_set);
        REQUIRE(s.train.size() == 8000);
        REQUIRE(s.test.size() == 5);
        CHECK(s.train.sample_size() == 1);
        CHECK(s.test.target(0)[0] == float(8000 % 10));
        CHECK(s.test.sample(4)[0] == Approx((8004 % 256) / 255.0f));
        CHECK(s.train.target(7999)[0] == float(7999 % 10));
        CHECK_THAT(s.description, Contains("t10k") && Contains("0..7999") && Contains("8000..8004") && Contains(dir));
    }
    SECTION("with the training files: all train / all t10k") {
        write_file(t / "train-images-idx3-ubyte", idx_bytes(0x08, {3, 1, 1}, {1, 2, 3}));
        write_file(t / "train-labels-idx1-ubyte.gz", gzip_bytes(idx_bytes(0x08, {3}, {4, 5, 6})));
        const auto s = lamina::data::mnist_train_test(dir, false);
        CHECK(s.full_training_set);
        CHECK(s.train.size() == 3);
        CHECK(s.test.size() == n);
        CHECK(s.train.sample(2)[0] == 3.0f);
        CHECK_THAT(s.description, Contains("standard") && Contains("3 training images"));
    }
    SECTION("only one training file: io_error") {
        write_file(t / "train-images-idx3-ubyte", idx_bytes(0x08, {3, 1, 1}, {1, 2, 3}));
        const auto m = message_of<lamina::io_error>([&] { lamina::data::mnist_train_test(dir); });
        CHECK_THAT(m, Contains(dir) && Contains("train-labels-idx1-ubyte"));
    }
    SECTION("too few t10k images for the split: format_error") {
        write_file(t / "t10k-images-idx3-ubyte.gz", gzip_bytes(idx_bytes(0x08, {3, 2, 3}, kPixels)));
        write_file(t / "t10k-labels-idx1-ubyte.gz", gzip_bytes(idx_bytes(0x08, {3}, kLabels)));
        const auto m = message_of<lamina::format_error>([&] { lamina::data::mnist_train_test(dir); });
        CHECK_THAT(m, Contains("3 images") && Contains("8000"));
    }
}

TEST_CASE("find_data_dir: argument, then LAMINA_DATA_DIR, then ../shared/data/mnist", "[idx][mnist]") {
    const char* old = std::getenv("LAMINA_DATA_DIR");
    const std::string saved = old ? old : "";
    CHECK(lamina::data::find_data_dir("/some/where") == "/some/where");
    ::setenv("LAMINA_DATA_DIR", "/from/env", 1);
    CHECK(lamina::data::find_data_dir(nullptr) == "/from/env");
    CHECK(lamina::data::find_data_dir("") == "/from/env");
    CHECK(lamina::data::find_data_dir("/arg") == "/arg");
    ::unsetenv("LAMINA_DATA_DIR");
    const std::string fallback = lamina::data::find_data_dir(nullptr);
    std::error_code ec;
    if (fs::is_directory("../shared/data/mnist", ec))
        CHECK(fallback == "../shared/data/mnist");
    else
        CHECK(fallback.empty());
    if (old) ::setenv("LAMINA_DATA_DIR", saved.c_str(), 1);
}

TEST_CASE("IDX length fields are checked without overflow", "[idx][errors]") {
    using lamina::format_error;
    SECTION("dimensions whose byte size overflows size_t") {
        // 0xffffffff^2 * 8 bytes of float64 > 2^64: the product must not wrap to a small size.
        const bytes b = idx_bytes(0x0E, {0xffffffffu, 0xffffffffu, 0xffffffffu}, {1, 2, 3, 4, 5, 6, 7, 8});
        const auto m = message_of<format_error>([&] { lamina::data::parse_idx(b.data(), b.size(), "mem"); });
        CHECK_THAT(m, Contains("'mem'") && Contains("4294967295x4294967295x4294967295") && Contains("too large"));
    }
    SECTION("dimensions whose product wraps to exactly the data present") {
        // 65536^4 bytes = 2^64, which an unchecked product wraps to 0: an "empty" file.
        const bytes b = idx_bytes(0x08, {65536, 65536, 65536, 65536}, {});
        const auto m = message_of<format_error>([&] { lamina::data::parse_idx(b, "mem"); });
        CHECK_THAT(m, Contains("65536x65536x65536x65536") && Contains("too large"));
    }
    SECTION("a zero dimension beside huge ones is an empty array") {
        const bytes b = idx_bytes(0x0E, {0, 0xffffffffu, 0xffffffffu}, {});
        const auto a = lamina::data::parse_idx(b.data(), b.size(), "mem");
        CHECK(a.data.empty());
        CHECK(a.size() == 0);
        CHECK(a.dims == std::vector<std::size_t>{0, 0xffffffffu, 0xffffffffu});
    }
    SECTION("parse_idx reads only the bytes it is given") {
        const bytes whole = idx_bytes(0x08, {3}, kLabels);
        // The first 6 bytes of a valid file, in a buffer whose tail is valid data: still truncated.
        const auto m = message_of<format_error>([&] { lamina::data::parse_idx(whole.data(), 6, "mem"); });
        CHECK_THAT(m, Contains("truncated header") && Contains("8-byte header") && Contains("only 6 bytes"));
        CHECK(lamina::data::parse_idx(whole.data(), whole.size(), "mem").data == kLabels);
    }
    SECTION("a gzip trailer whose length field is wrong") {
        temp_dir t;
        bytes gz = gzip_bytes(idx_bytes(0x08, {3}, kLabels));
        gz[gz.size() - 1] = 0xff;  // ISIZE, the uncompressed length mod 2^32, now about 4 GiB
        write_file(t / "isize.gz", gz);
        const auto m = message_of<format_error>([&] { lamina::data::read_idx(t / "isize.gz"); });
        CHECK_THAT(m, Contains("isize.gz") && Contains("corrupt gzip"));
    }
}

TEST_CASE("mnist_from_idx refuses arrays whose data disagrees with their dimensions", "[idx][errors]") {
    using lamina::format_error;
    lamina::data::idx_array images, labels;
    images.source = "img";
    labels.source = "lab";
    images.dims = {3, 2, 3};
    images.data = kPixels;
    labels.dims = {3};
    labels.data = kLabels;
    CHECK(lamina::data::mnist_from_idx(images, labels).size() == 3);  // the control
    SECTION("labels shorter than their dimension") {
        labels.data.resize(1);
        const auto m = message_of<format_error>([&] { lamina::data::mnist_from_idx(images, labels); });
        CHECK_THAT(m, Contains("'lab'") && Contains("1 data byte") && Contains("need 3"));
    }
    SECTION("images shorter than their dimensions") {
        images.data.resize(17);
        const auto m = message_of<format_error>([&] { lamina::data::mnist_from_idx(images, labels); });
        CHECK_THAT(m, Contains("'img'") && Contains("17 data bytes") && Contains("need 18"));
    }
    SECTION("image dimensions whose product overflows") {
        images.dims = {3, std::size_t(1) << 40, std::size_t(1) << 40};
        const auto m = message_of<format_error>([&] { lamina::data::mnist_from_idx(images, labels); });
        CHECK_THAT(m, Contains("'img'") && Contains("more than size_t can count"));
    }
}
