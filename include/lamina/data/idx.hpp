// lamina: the IDX file format (LeCun's MNIST format) and MNIST loading.
//
// An IDX file is: two zero bytes, a type code, the number of dimensions n, then n big-endian
// uint32 dimension sizes, then the elements in row-major order, big-endian. Files may be
// gzip-compressed (detected by their magic bytes; see gzip_file.hpp, which needs zlib).
//
//   idx_array a = lamina::data::read_idx("t10k-labels-idx1-ubyte.gz");   // any IDX file
//   lamina::dataset<float> test = lamina::data::read_mnist_dir(dir);        // t10k, scaled to [0,1]
//   auto split = lamina::data::mnist_train_test(dir);                      // the agreed split
//
// Errors: io_error when a file cannot be found, opened or read; format_error when its
// contents are malformed (wrong magic number, unsupported type, truncated header or data,
// image/label count mismatch, label out of range). Every message names the file and what
// is wrong (the field, what was expected and what was found).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "dataset.hpp"
#include "gzip_file.hpp"

namespace lamina {
namespace data {

/// IDX element type codes (the third byte of the magic number).
enum class idx_type : unsigned char {
    u8 = 0x08,   ///< unsigned byte
    i8 = 0x09,   ///< signed byte
    i16 = 0x0B,  ///< short (2 bytes, big-endian)
    i32 = 0x0C,  ///< int (4 bytes, big-endian)
    f32 = 0x0D,  ///< float (4 bytes, big-endian IEEE 754)
    f64 = 0x0E,  ///< double (8 bytes, big-endian IEEE 754)
};

/// Size in bytes of one element of `t` (0 for an unknown code).
constexpr std::size_t idx_element_size(idx_type t) noexcept {
    switch (t) {
        case idx_type::u8:
        case idx_type::i8: return 1;
        case idx_type::i16: return 2;
        case idx_type::i32:
        case idx_type::f32: return 4;
        case idx_type::f64: return 8;
    }
    return 0;
}

/// Name of an IDX type code, e.g. "0x08 (unsigned byte)"; unknown codes are named "unknown".
inline std::string idx_type_name(unsigned code) {
    static const char hex[] = "0123456789ABCDEF";
    std::string s = "0x";
    s += hex[(code >> 4) & 0xF];
    s += hex[code & 0xF];
    switch (code) {
        case 0x08: return s + " (unsigned byte)";
        case 0x09: return s + " (signed byte)";
        case 0x0B: return s + " (int16)";
        case 0x0C: return s + " (int32)";
        case 0x0D: return s + " (float32)";
        case 0x0E: return s + " (float64)";
        default: return s + " (unknown)";
    }
}

/// The contents of one IDX file.
///
/// `data` holds the element bytes exactly as stored in the file: row-major, big-endian for
/// multi-byte types (for ubyte files it is simply the values). Use `value(i)` or `values<T>()`
/// for decoded numbers: every IDX type converts to double exactly.
struct idx_array {
    idx_type type = idx_type::u8;
    std::vector<std::size_t> dims;   ///< dimension sizes, outermost first
    std::vector<unsigned char> data; ///< size() * idx_element_size(type) bytes
    std::string source;              ///< the file it was read from (for messages)

    /// Number of elements (the product of the dimensions).
    std::size_t size() const noexcept {
        std::size_t n = 1;
        for (std::size_t d : dims) n *= d;
        return n;
    }
    std::size_t element_size() const noexcept { return idx_element_size(type); }

    /// Element i (row-major), decoded to double (exact for all IDX types). No bounds check.
    double value(std::size_t i) const noexcept {
        const unsigned char* p = data.data() + i * element_size();
        auto be = [p](int n) {
            std::uint64_t v = 0;
            for (int k = 0; k < n; ++k) v = (v << 8) | p[k];
            return v;
        };
        switch (type) {
            case idx_type::u8: return p[0];
            case idx_type::i8: return static_cast<std::int8_t>(p[0]);
            case idx_type::i16: return static_cast<std::int16_t>(static_cast<std::uint16_t>(be(2)));
            case idx_type::i32: return static_cast<std::int32_t>(static_cast<std::uint32_t>(be(4)));
            case idx_type::f32: {
                const std::uint32_t bits = static_cast<std::uint32_t>(be(4));
                float f;
                std::memcpy(&f, &bits, sizeof f);
                return f;
            }
            case idx_type::f64: {
                const std::uint64_t bits = be(8);
                double d;
                std::memcpy(&d, &bits, sizeof d);
                return d;
            }
        }
        return 0.0;
    }

    /// All elements decoded and converted to T, row-major.
    template <class T = double>
    std::vector<T> values() const {
        std::vector<T> out(size());
        if (type == idx_type::u8) {
            for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(data[i]);
        } else {
            for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(value(i));
        }
        return out;
    }
};

namespace detail {

inline std::string hex_bytes(const unsigned char* p, std::size_t n) {
    static const char hex[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        if (i) s += ' ';
        s += hex[p[i] >> 4];
        s += hex[p[i] & 0xF];
    }
    return s;
}

inline std::string dims_string(const std::vector<std::size_t>& dims) {
    std::string s;
    for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? "x" : "") + std::to_string(dims[i]);
    return s.empty() ? "(scalar)" : s;
}

inline std::string plural(std::size_t n, const char* word) {
    return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

/// a * b, or SIZE_MAX when that overflows (no size that large can be in memory).
inline std::size_t checked_product(std::size_t a, std::size_t b) noexcept {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return std::numeric_limits<std::size_t>::max();
    return a * b;
}

}  // namespace detail

/// Parses the `n` bytes at `bytes` of an IDX file (already decompressed). `name` names the
/// file in messages. Throws format_error: file shorter than the 4-byte magic number, wrong
/// magic number (the bytes found are shown), unsupported type code, 0 dimensions, truncated
/// header, dimensions whose byte size overflows, data size different from what the
/// dimensions need (truncated, or trailing bytes). Never reads outside [bytes, bytes + n).
inline idx_array parse_idx(const unsigned char* bytes, std::size_t n, const std::string& name) {
    const std::string where = "lamina: IDX file '" + name + "'";
    if (n < 4)
        throw format_error(where + ": truncated header: the file holds " + detail::plural(n, "byte") +
                           ", fewer than the 4-byte magic number" +
                           (n == 0 ? std::string() : " (found " + detail::hex_bytes(bytes, n) + ")"));
    if (bytes[0] != 0 || bytes[1] != 0)
        throw format_error(where + ": wrong magic number: expected 00 00 <type> <ndims>, found " +
                           detail::hex_bytes(bytes, 4) +
                           (is_gzip(bytes, n) ? " (gzip data: the file is compressed but was not decompressed)" : ""));
    const unsigned code = bytes[2];
    const idx_type type = static_cast<idx_type>(code);
    if (idx_element_size(type) == 0)
        throw format_error(where + ": unsupported IDX type code " + idx_type_name(code) + " in magic number " +
                           detail::hex_bytes(bytes, 4) +
                           "; supported: 0x08 ubyte, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64");
    const std::size_t ndims = bytes[3];  // at most 255: the header size below cannot overflow
    if (ndims == 0)
        throw format_error(where + ": the magic number " + detail::hex_bytes(bytes, 4) +
                           " declares 0 dimensions (expected at least 1)");
    const std::size_t header = 4 + 4 * ndims;
    if (n < header)
        throw format_error(where + ": truncated header: " + detail::plural(ndims, "dimension") + " need a " +
                           std::to_string(header) + "-byte header, but the file holds only " + detail::plural(n, "byte"));

    idx_array a;
    a.type = type;
    a.source = name;
    a.dims.resize(ndims);
    const std::size_t esize = idx_element_size(type);
    // Byte size of the data, esize * product of dims, checked against overflow at every factor.
    std::size_t expected = esize;
    bool overflow = false;
    for (std::size_t d = 0; d < ndims; ++d) {
        const unsigned char* p = bytes + 4 + 4 * d;
        a.dims[d] = (std::size_t(p[0]) << 24) | (std::size_t(p[1]) << 16) | (std::size_t(p[2]) << 8) | std::size_t(p[3]);
        if (a.dims[d] != 0 && expected > std::numeric_limits<std::size_t>::max() / a.dims[d]) overflow = true;
        else expected *= a.dims[d];
    }
    // A zero dimension makes the data empty whatever the other dimensions say.
    if (std::find(a.dims.begin(), a.dims.end(), std::size_t(0)) != a.dims.end()) {
        overflow = false;
        expected = 0;
    }
    const std::size_t found = n - header;
    if (overflow)
        throw format_error(where + ": dimensions " + detail::dims_string(a.dims) + " of " + idx_type_name(code) +
                           " are too large (their byte size overflows; the file holds " +
                           detail::plural(found, "data byte") + ")");
    if (found != expected) {
        const std::string what = "expected " + detail::plural(expected, "byte") + " of data (dimensions " +
                                 detail::dims_string(a.dims) + " of " + idx_type_name(code) + "), found " +
                                 std::to_string(found);
        if (found < expected) throw format_error(where + ": truncated data: " + what);
        throw format_error(where + ": " + detail::plural(found - expected, "unexpected trailing byte") +
                           " after the data: " + what);
    }
    a.data.assign(bytes + header, bytes + n);
    return a;
}

/// Parses the bytes of an IDX file (already decompressed); see the overload above.
inline idx_array parse_idx(const std::vector<unsigned char>& bytes, const std::string& name) {
    return parse_idx(bytes.data(), bytes.size(), name);
}

/// Reads an IDX file, gunzipping it first when it is gzip-compressed.
/// Throws io_error (missing/unreadable file, gzip without zlib) or format_error (see parse_idx;
/// corrupt gzip).
inline idx_array read_idx(const std::string& path) { return parse_idx(read_file_bytes(path), path); }

/// Number of MNIST classes (digits 0..9).
constexpr std::size_t mnist_classes = 10;

/// Builds a classification dataset from an IDX image array (ubyte, count x rows x cols) and
/// an IDX label array (ubyte, count), checking types, dimensions, counts and label range.
/// Pixels become p / 255 (in [0,1]) when `scale_to_unit`, else their raw value 0..255.
/// sample_size = rows * cols (784 for MNIST), target_size = 1 (the label as float).
inline dataset<float> mnist_from_idx(const idx_array& images, const idx_array& labels, bool scale_to_unit = true) {
    const std::string wi = "lamina: MNIST images file '" + images.source + "'";
    const std::string wl = "lamina: MNIST labels file '" + labels.source + "'";
    if (images.type != idx_type::u8)
        throw format_error(wi + ": wrong element type: expected " + idx_type_name(0x08) + ", found " +
                           idx_type_name(static_cast<unsigned>(images.type)));
    if (images.dims.size() != 3)
        throw format_error(wi + ": wrong number of dimensions: expected 3 (count x rows x columns), found " +
                           std::to_string(images.dims.size()) + " (" + detail::dims_string(images.dims) + ")");
    if (labels.type != idx_type::u8)
        throw format_error(wl + ": wrong element type: expected " + idx_type_name(0x08) + ", found " +
                           idx_type_name(static_cast<unsigned>(labels.type)));
    if (labels.dims.size() != 1)
        throw format_error(wl + ": wrong number of dimensions: expected 1 (count), found " +
                           std::to_string(labels.dims.size()) + " (" + detail::dims_string(labels.dims) + ")");
    const std::size_t n = images.dims[0];
    const std::size_t pixels = detail::checked_product(images.dims[1], images.dims[2]);
    if (pixels == 0)
        throw format_error(wi + ": empty images: " + detail::dims_string(images.dims));
    // idx_array is a plain struct: one built by hand may disagree with its own dimensions.
    const std::size_t need = detail::checked_product(n, pixels);
    const bool too_big = pixels == std::numeric_limits<std::size_t>::max() || need == std::numeric_limits<std::size_t>::max();
    if (too_big || need != images.data.size())
        throw format_error(wi + ": holds " + detail::plural(images.data.size(), "data byte") + ", its dimensions " +
                           detail::dims_string(images.dims) + " need " +
                           (too_big ? std::string("more than size_t can count") : std::to_string(need)));
    if (labels.dims[0] != labels.data.size())
        throw format_error(wl + ": holds " + detail::plural(labels.data.size(), "data byte") + ", its dimensions " +
                           detail::dims_string(labels.dims) + " need " + std::to_string(labels.dims[0]));
    if (labels.dims[0] != n)
        throw format_error("lamina: MNIST image count does not match the label count: '" + images.source + "' holds " +
                           detail::plural(n, "image") + ", '" + labels.source + "' holds " +
                           detail::plural(labels.dims[0], "label"));
    std::vector<float> targets(n);
    for (std::size_t i = 0; i < n; ++i) {
        const unsigned label = labels.data[i];
        if (label >= mnist_classes)
            throw format_error(wl + ": label " + std::to_string(label) + " of sample " + std::to_string(i) +
                               " is out of range (expected 0.." + std::to_string(mnist_classes - 1) + ")");
        targets[i] = static_cast<float>(label);
    }
    std::vector<float> inputs(n * pixels);
    const float k = scale_to_unit ? 1.0f / 255.0f : 1.0f;
    for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = static_cast<float>(images.data[i]) * k;
    return dataset<float>(std::move(inputs), std::move(targets), pixels, 1);
}

/// Reads an MNIST image file and its label file (IDX, plain or gzipped) into a dataset:
/// one sample of rows*cols pixels (784 for MNIST) per image, pixels scaled to [0,1] (p / 255)
/// by default or kept as 0..255 when `scale_to_unit` is false; target_size 1, the label
/// 0..9 as float. Throws io_error / format_error naming the file (see mnist_from_idx).
inline dataset<float> read_mnist(const std::string& images_path, const std::string& labels_path,
                                 bool scale_to_unit = true) {
    const idx_array images = read_idx(images_path);
    const idx_array labels = read_idx(labels_path);
    return mnist_from_idx(images, labels, scale_to_unit);
}

namespace detail {

inline std::string join_path(const std::string& dir, const std::string& file) {
    if (dir.empty()) return file;
    return (dir.back() == '/') ? dir + file : dir + "/" + file;
}

inline bool is_file(const std::string& path) {
    std::error_code ec;
    return std::filesystem::is_regular_file(path, ec);
}

/// `<dir>/<base>` or `<dir>/<base>.gz`, whichever exists (the uncompressed one first);
/// empty when neither does. `looked` receives the candidates, for messages.
inline std::string find_idx_file(const std::string& dir, const std::string& base, std::string* looked = nullptr) {
    const std::string plain = join_path(dir, base), gz = plain + ".gz";
    if (looked) *looked = "'" + gz + "' and '" + plain + "'";
    if (is_file(plain)) return plain;
    if (is_file(gz)) return gz;
    return {};
}

}  // namespace detail

/// Reads the MNIST set `which` ("t10k" or "train") from `dir`: the files
/// `<which>-images-idx3-ubyte[.gz]` and `<which>-labels-idx1-ubyte[.gz]` (uncompressed
/// preferred when both exist). Throws io_error listing the paths looked for when a file is
/// absent; otherwise as read_mnist.
inline dataset<float> read_mnist_dir(const std::string& dir, const std::string& which = "t10k",
                                     bool scale_to_unit = true) {
    if (dir.empty())
        throw io_error("lamina: no MNIST data directory given (pass a path, or set LAMINA_DATA_DIR)");
    std::string looked_i, looked_l;
    const std::string images = detail::find_idx_file(dir, which + "-images-idx3-ubyte", &looked_i);
    const std::string labels = detail::find_idx_file(dir, which + "-labels-idx1-ubyte", &looked_l);
    if (images.empty() || labels.empty()) {
        std::string msg = "lamina: MNIST '" + which + "' files not found in '" + dir + "':";
        if (images.empty()) msg += " no images file (looked for " + looked_i + ")";
        if (images.empty() && labels.empty()) msg += ";";
        if (labels.empty()) msg += " no labels file (looked for " + looked_l + ")";
        throw io_error(msg);
    }
    return read_mnist(images, labels, scale_to_unit);
}

/// The MNIST data directory: `argv_path_or_null` when given and non-empty, else the
/// environment variable LAMINA_DATA_DIR when set and non-empty (both returned as given,
/// unchecked, so that a wrong path gives a clear error when read), else
/// "../shared/data/mnist" when that directory exists relative to the current directory,
/// else the empty string.
inline std::string find_data_dir(const char* argv_path_or_null = nullptr) {
    if (argv_path_or_null && *argv_path_or_null) return argv_path_or_null;
    if (const char* env = std::getenv("LAMINA_DATA_DIR"); env && *env) return env;
    const std::string fallback = "../shared/data/mnist";
    std::error_code ec;
    if (std::filesystem::is_directory(fallback, ec)) return fallback;
    return {};
}

/// Number of t10k images used for training when the 60,000-image training set is absent;
/// the remaining t10k images (8000..9999) are held out.
constexpr std::size_t mnist_t10k_train_count = 8000;

/// The train / test datasets of the project's agreed MNIST split (both owning).
struct mnist_split {
    dataset<float> train;
    dataset<float> test;       ///< the held-out set
    bool full_training_set = false;  ///< true: 60k train + 10k t10k; false: t10k 0..7999 / 8000..9999
    std::string description;   ///< human-readable: which split, from which folder
};

namespace detail {
inline dataset<float> copy_slice(const dataset<float>& d, std::size_t begin, std::size_t end) {
    const dataset_view<float> v = d.slice(begin, end);
    std::vector<float> in(v.inputs, v.inputs + v.count * v.sample_size);
    std::vector<float> tg(v.targets, v.targets + v.count * v.target_size);
    return dataset<float>(std::move(in), std::move(tg), v.sample_size, v.target_size);
}
}  // namespace detail

/// The project's agreed MNIST split from the files in `dir`: when the 60,000-image training
/// files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]) are present, train =
/// all of them and test = all 10,000 t10k images; otherwise train = t10k images 0..7999 and
/// test (held out) = t10k images 8000..9999. Pixels as in read_mnist. Throws io_error when
/// the t10k files are absent or only one of the two training files is present, format_error
/// when a file is malformed or the t10k set holds fewer than 8001 images (no split possible).
inline mnist_split mnist_train_test(const std::string& dir, bool scale_to_unit = true) {
    if (dir.empty())
        throw io_error("lamina: no MNIST data directory given (pass a path, or set LAMINA_DATA_DIR)");
    mnist_split s;
    const bool has_ti = !detail::find_idx_file(dir, "train-images-idx3-ubyte").empty();
    const bool has_tl = !detail::find_idx_file(dir, "train-labels-idx1-ubyte").empty();
    if (has_ti != has_tl)
        throw io_error("lamina: incomplete MNIST training set in '" + dir + "': found the training " +
                       (has_ti ? "images" : "labels") + " but not the training " + (has_ti ? "labels" : "images") +
                       " (train-" + (has_ti ? "labels-idx1" : "images-idx3") + "-ubyte[.gz])");
    if (has_ti) {
        s.train = read_mnist_dir(dir, "train", scale_to_unit);
        s.test = read_mnist_dir(dir, "t10k", scale_to_unit);
        s.full_training_set = true;
        s.description = "MNIST standard split from '" + dir + "': train = " + std::to_string(s.train.size()) +
                        " training images, test = " + std::to_string(s.test.size()) + " t10k images";
        return s;
    }
    dataset<float> all = read_mnist_dir(dir, "t10k", scale_to_unit);
    const std::size_t n = all.size();
    if (n <= mnist_t10k_train_count)
        throw format_error("lamina: the MNIST t10k set in '" + dir + "' holds " + detail::plural(n, "image") +
                           ", too few for the " + std::to_string(mnist_t10k_train_count) +
                           "-image training part of the t10k split (expected 10000)");
    s.train = detail::copy_slice(all, 0, mnist_t10k_train_count);
    s.test = detail::copy_slice(all, mnist_t10k_train_count, n);
    s.full_training_set = false;
    s.description = "MNIST t10k split from '" + dir + "' (60,000-image training files not found): train = t10k images 0.." +
                    std::to_string(mnist_t10k_train_count - 1) + " (" + std::to_string(s.train.size()) +
                    "), held out = t10k images " + std::to_string(mnist_t10k_train_count) + ".." +
                    std::to_string(n - 1) + " (" + std::to_string(s.test.size()) + ")";
    return s;
}

}  // namespace data
}  // namespace lamina
