// lamina: tensors read from other frameworks' files (io/safetensors.hpp, io/npy.hpp): a name,
// an element type, a shape and the raw little-endian bytes in row-major (C) order, with
// conversion to float or double. Also the overflow-safe arithmetic and the file reading that
// those readers share.
//
//   lamina::io::named_tensor t = lamina::io::read_npy("x.npy");
//   std::vector<float> v = t.to<float>();          // any element type, converted
//   t.shape_string();                               // "[4, 3, 32, 32]"
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/error.hpp"

namespace lamina::io {

/// Element types of tensors in files. Names follow safetensors ("F32", "I64", "BOOL").
enum class tensor_dtype : std::uint8_t { boolean, u8, i8, u16, i16, u32, i32, u64, i64, f16, bf16, f32, f64 };

inline const char* to_string(tensor_dtype d) {
    switch (d) {
        case tensor_dtype::boolean: return "BOOL";
        case tensor_dtype::u8: return "U8";
        case tensor_dtype::i8: return "I8";
        case tensor_dtype::u16: return "U16";
        case tensor_dtype::i16: return "I16";
        case tensor_dtype::u32: return "U32";
        case tensor_dtype::i32: return "I32";
        case tensor_dtype::u64: return "U64";
        case tensor_dtype::i64: return "I64";
        case tensor_dtype::f16: return "F16";
        case tensor_dtype::bf16: return "BF16";
        case tensor_dtype::f32: return "F32";
        case tensor_dtype::f64: return "F64";
    }
    return "?";
}

/// Bytes per element.
inline std::size_t element_size(tensor_dtype d) {
    switch (d) {
        case tensor_dtype::boolean:
        case tensor_dtype::u8:
        case tensor_dtype::i8: return 1;
        case tensor_dtype::u16:
        case tensor_dtype::i16:
        case tensor_dtype::f16:
        case tensor_dtype::bf16: return 2;
        case tensor_dtype::u32:
        case tensor_dtype::i32:
        case tensor_dtype::f32: return 4;
        case tensor_dtype::u64:
        case tensor_dtype::i64:
        case tensor_dtype::f64: return 8;
    }
    return 0;
}

inline bool is_floating_point(tensor_dtype d) {
    return d == tensor_dtype::f16 || d == tensor_dtype::bf16 || d == tensor_dtype::f32 || d == tensor_dtype::f64;
}

namespace detail {

/// a * b into `out`; false (and out untouched) when the product does not fit in size_t.
inline bool checked_mul(std::size_t a, std::size_t b, std::size_t& out) noexcept {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return false;
    out = a * b;
    return true;
}

/// "[4, 3, 32, 32]" ("[]" for a scalar).
template <class Int>
std::string shape_string(const std::vector<Int>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

/// Text from a file as it appears in a message: at most `limit` characters, unprintable bytes
/// as \xNN (names and header fields come from files, which may hold anything).
inline std::string quoted(const std::string& s, std::size_t limit = 80) {
    static const char hex[] = "0123456789abcdef";
    std::string out = "'";
    for (std::size_t i = 0; i < s.size() && i < limit; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xF];
        }
    }
    out += "'";
    if (s.size() > limit) out += "...(" + std::to_string(s.size()) + " bytes)";
    return out;
}

/// The whole file. `what` says what kind of file it is, for the message ("safetensors file").
inline std::vector<unsigned char> read_tensor_file(const std::string& path, const char* what) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw io_error("lamina: cannot open " + std::string(what) + " '" + path + "': " + std::strerror(errno));
    std::vector<unsigned char> bytes;
    struct stat st;
    // The size is only a hint (the file may change while it is read); reading decides.
    if (::fstat(fd, &st) == 0 && st.st_size > 0) bytes.reserve(static_cast<std::size_t>(st.st_size));
    unsigned char chunk[1 << 16];
    for (;;) {
        const ssize_t k = ::read(fd, chunk, sizeof chunk);
        if (k < 0) {
            if (errno == EINTR) continue;
            const int e = errno;
            ::close(fd);
            throw io_error("lamina: cannot read " + std::string(what) + " '" + path + "': " + std::strerror(e));
        }
        if (k == 0) break;
        bytes.insert(bytes.end(), chunk, chunk + k);
    }
    ::close(fd);
    return bytes;
}

inline std::uint64_t load_le(const unsigned char* p, std::size_t n) noexcept {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t(p[i]) << (8 * i);
    return v;
}

/// IEEE half to float, exactly (subnormals, infinities and NaN included).
inline float half_to_float(std::uint16_t h) noexcept {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    std::uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {  // subnormal: normalise
        exp = 113;
        while (!(man & 0x400u)) {
            man <<= 1;
            --exp;
        }
        bits = sign | (exp << 23) | ((man & 0x3FFu) << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

template <class T>
T decode(tensor_dtype d, const unsigned char* p) noexcept {
    switch (d) {
        case tensor_dtype::boolean: return p[0] ? T(1) : T(0);
        case tensor_dtype::u8: return static_cast<T>(p[0]);
        case tensor_dtype::i8: return static_cast<T>(static_cast<std::int8_t>(p[0]));
        case tensor_dtype::u16: return static_cast<T>(static_cast<std::uint16_t>(load_le(p, 2)));
        case tensor_dtype::i16: return static_cast<T>(static_cast<std::int16_t>(static_cast<std::uint16_t>(load_le(p, 2))));
        case tensor_dtype::u32: return static_cast<T>(static_cast<std::uint32_t>(load_le(p, 4)));
        case tensor_dtype::i32: return static_cast<T>(static_cast<std::int32_t>(static_cast<std::uint32_t>(load_le(p, 4))));
        case tensor_dtype::u64: return static_cast<T>(load_le(p, 8));
        case tensor_dtype::i64: return static_cast<T>(static_cast<std::int64_t>(load_le(p, 8)));
        case tensor_dtype::f16: return static_cast<T>(half_to_float(static_cast<std::uint16_t>(load_le(p, 2))));
        case tensor_dtype::bf16: {
            const std::uint32_t bits = static_cast<std::uint32_t>(load_le(p, 2)) << 16;
            float f;
            std::memcpy(&f, &bits, 4);
            return static_cast<T>(f);
        }
        case tensor_dtype::f32: {
            const auto bits = static_cast<std::uint32_t>(load_le(p, 4));
            float f;
            std::memcpy(&f, &bits, 4);
            return static_cast<T>(f);
        }
        case tensor_dtype::f64: {
            const std::uint64_t bits = load_le(p, 8);
            double f;
            std::memcpy(&f, &bits, 8);
            return static_cast<T>(f);
        }
    }
    return T(0);
}

}  // namespace detail

/// A tensor read from a file: name, element type, shape (empty for a scalar) and its bytes,
/// little-endian, row-major. The readers guarantee bytes.size() == numel() * element_size(dtype).
struct named_tensor {
    std::string name;
    tensor_dtype dtype = tensor_dtype::f32;
    std::vector<std::size_t> shape;
    std::vector<unsigned char> bytes;

    /// Elements: the product of the shape (1 for a scalar). The readers checked it fits.
    std::size_t numel() const noexcept {
        std::size_t n = 1;
        for (std::size_t d : shape) n *= d;
        return n;
    }
    std::string shape_string() const { return detail::shape_string(shape); }

    /// The elements converted to T (float or double), whatever the stored type. Throws
    /// format_error when the byte count does not match the shape (a hand-built tensor).
    template <class T>
    std::vector<T> to() const {
        static_assert(std::is_floating_point_v<T>, "lamina: named_tensor converts to float or double");
        const std::size_t es = element_size(dtype);
        if (bytes.size() % es != 0 || bytes.size() / es != numel())
            throw format_error("lamina: tensor " + detail::quoted(name) + " holds " + std::to_string(bytes.size()) +
                               " bytes, its shape " + shape_string() + " of " + to_string(dtype) + " needs " +
                               std::to_string(numel()) + " elements of " + std::to_string(es) + " bytes");
        std::vector<T> v(bytes.size() / es);
        const unsigned char* p = bytes.data();
        for (std::size_t i = 0; i < v.size(); ++i, p += es) v[i] = detail::decode<T>(dtype, p);
        return v;
    }
    std::vector<float> to_float() const { return to<float>(); }
    std::vector<double> to_double() const { return to<double>(); }

    /// A tensor holding `values` (float or double, stored as F32 or F64) with `shape`.
    template <class T>
    static named_tensor from(std::string name, std::vector<std::size_t> shape, const std::vector<T>& values) {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "lamina: named_tensor::from takes float or double");
        named_tensor t;
        t.name = std::move(name);
        t.dtype = std::is_same_v<T, float> ? tensor_dtype::f32 : tensor_dtype::f64;
        t.shape = std::move(shape);
        if (t.numel() != values.size())
            throw shape_error("lamina: named_tensor::from: " + std::to_string(values.size()) + " values for shape " +
                              t.shape_string());
        t.bytes.resize(values.size() * sizeof(T));
        if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), t.bytes.size());  // little-endian hosts
        return t;
    }
};

/// Tensors by name (a PyTorch state_dict read from a file).
using tensor_map = std::map<std::string, named_tensor>;

}  // namespace lamina::io
