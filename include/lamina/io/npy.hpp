// lamina: NumPy .npy files (format versions 1.0, 2.0 and 3.0).
//
//   "\x93NUMPY"  magic (6 bytes), then u8 major and u8 minor version
//   header len   u16 little-endian (1.0), u32 (2.0 and 3.0)
//   header       a Python dict literal, ASCII (UTF-8 in 3.0), padded with spaces and a newline:
//                {'descr': '<f4', 'fortran_order': False, 'shape': (4, 3, 32, 32), }
//   data         the elements, row-major
//
//   lamina::io::named_tensor x = lamina::io::read_npy("input.npy");
//   std::vector<double> v = x.to<double>();
//
// Element types: little-endian floats (f2, f4, f8), signed and unsigned integers of 1, 2, 4
// and 8 bytes, and booleans (b1). Refused with a clear error: big-endian data ('>f4': convert
// with a.astype('<f4')), Fortran order when it changes the bytes (at least two dimensions
// larger than 1: save np.ascontiguousarray(a)), structured and object arrays. Reading trusts
// nothing: the header length, every dimension, the shape product and the data length are
// checked (overflow-safe) against the bytes present; every error (format_error; io_error
// when the file cannot be read) names the file and the field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "atomic_file.hpp"
#include "named_tensor.hpp"

namespace lamina::io {

inline constexpr unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

namespace detail {

/// The header dict: a strict reader of the Python literals NumPy writes there.
class npy_header_reader {
public:
    npy_header_reader(const unsigned char* p, std::size_t n, std::string where) : p_(p), end_(p + n), where_(std::move(where)) {}

    std::string descr;
    bool fortran_order = false;
    std::vector<std::size_t> shape;

    void read() {
        bool has_descr = false, has_fortran = false, has_shape = false;
        skip_space();
        expect('{', "the header must be a Python dict starting with '{'");
        skip_space();
        while (!at('}')) {
            const std::string key = read_string("a key");
            skip_space();
            expect(':', "expected ':' after key " + quoted(key));
            skip_space();
            if (key == "descr") {
                if (has_descr) fail("key 'descr' appears twice");
                has_descr = true;
                if (at('[')) fail("'descr' is a list: a structured dtype, which lamina does not read");
                if (!at('\'') && !at('"')) fail("'descr' must be a string such as '<f4'");
                descr = read_string("'descr'");
            } else if (key == "fortran_order") {
                if (has_fortran) fail("key 'fortran_order' appears twice");
                has_fortran = true;
                if (match("True")) fortran_order = true;
                else if (match("False")) fortran_order = false;
                else fail("'fortran_order' must be True or False");
            } else if (key == "shape") {
                if (has_shape) fail("key 'shape' appears twice");
                has_shape = true;
                read_shape();
            } else {
                fail("unexpected key " + quoted(key) + " (a .npy header has exactly 'descr', 'fortran_order' and 'shape')");
            }
            skip_space();
            if (at(',')) {
                ++p_;
                skip_space();
            } else if (!at('}')) {
                fail("expected ',' or '}' after the value of " + quoted(key) + at_what());
            }
        }
        ++p_;
        skip_space();
        if (p_ != end_) fail("unexpected text after the dict's closing '}'" + at_what());
        if (!has_descr) fail("no key 'descr'");
        if (!has_fortran) fail("no key 'fortran_order'");
        if (!has_shape) fail("no key 'shape'");
    }

private:
    [[noreturn]] void fail(const std::string& what) const { throw format_error(where_ + ": header: " + what); }
    std::string at_what() const {
        if (p_ == end_) return " (the header ends there)";
        return " (found " + quoted(std::string(1, static_cast<char>(*p_))) + ")";
    }
    bool at(char c) const { return p_ != end_ && *p_ == static_cast<unsigned char>(c); }
    void expect(char c, const std::string& what) {
        if (!at(c)) fail(what + at_what());
        ++p_;
    }
    bool match(const char* word) {
        const unsigned char* q = p_;
        for (; *word; ++word, ++q)
            if (q == end_ || *q != static_cast<unsigned char>(*word)) return false;
        p_ = q;
        return true;
    }
    void skip_space() {
        while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
    }
    std::string read_string(const std::string& what) {
        if (!at('\'') && !at('"')) fail("expected " + what + " as a quoted string" + at_what());
        const unsigned char q = *p_++;
        std::string s;
        while (p_ != end_ && *p_ != q) {
            unsigned char c = *p_++;
            if (c == '\\') {
                if (p_ == end_) break;
                c = *p_++;
                c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == '0' ? '\0' : c;
            } else if (c == '\n') {
                fail(what + " is a string that runs past the end of the line");
            }
            s += static_cast<char>(c);
        }
        if (p_ == end_) fail(what + " is a string without its closing quote");
        ++p_;
        return s;
    }
    std::size_t read_dimension(std::size_t k) {
        const std::string which = "'shape' dimension " + std::to_string(k);
        if (at('-')) fail(which + " is negative");
        if (p_ == end_ || *p_ < '0' || *p_ > '9') fail(which + " is not a non-negative integer" + at_what());
        std::size_t v = 0;
        while (p_ != end_ && *p_ >= '0' && *p_ <= '9') {
            const std::size_t digit = static_cast<std::size_t>(*p_ - '0');
            if (!checked_mul(v, 10, v) || v > std::numeric_limits<std::size_t>::max() - digit)
                fail(which + " does not fit in size_t");
            v += digit;
            ++p_;
        }
        if (at('L')) ++p_;  // Python 2 long literals ("(3L, 4L)") in files NumPy wrote under Python 2
        return v;
    }
    void read_shape() {
        // A tuple of non-negative integers; NumPy writes (), (n,) and (n, m).
        expect('(', "'shape' must be a tuple such as (4, 3)");
        skip_space();
        while (!at(')')) {
            shape.push_back(read_dimension(shape.size()));
            skip_space();
            if (at(',')) {
                ++p_;
                skip_space();
            } else if (!at(')')) {
                fail("expected ',' or ')' in 'shape'" + at_what());
            }
        }
        ++p_;
    }

    const unsigned char* p_;
    const unsigned char* end_;
    std::string where_;
};

}  // namespace detail

/// Parses the `n` bytes of a .npy file at `f` into a tensor named `name` (also used in
/// messages). Never reads outside [f, f + n) and allocates at most the data's bytes.
inline named_tensor parse_npy(const unsigned char* f, std::size_t n, const std::string& name) {
    const std::string where = "lamina: .npy file '" + name + "'";
    if (n < 6 || std::memcmp(f, npy_magic, 6) != 0)
        throw format_error("lamina: '" + name + "' is not a .npy file (it does not start with \\x93NUMPY)");
    if (n < 8) throw format_error(where + " is truncated: " + std::to_string(n) + " bytes, the magic and version need 8");
    const unsigned major = f[6], minor = f[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0)
        throw format_error(where + " has format version " + std::to_string(major) + "." + std::to_string(minor) +
                           ", lamina reads 1.0, 2.0 and 3.0");
    const std::size_t len_size = major == 1 ? 2 : 4, prefix = 8 + len_size;
    if (n < prefix)
        throw format_error(where + " is truncated: " + std::to_string(n) + " bytes, the magic, version and " +
                           std::to_string(len_size) + "-byte header length field need " + std::to_string(prefix));
    const std::uint64_t hlen = detail::load_le(f + 8, len_size);
    if (hlen > n - prefix)
        throw format_error(where + " is truncated: its header length field says " + std::to_string(hlen) +
                           " bytes, only " + std::to_string(n - prefix) + " follow it");
    const auto header_size = static_cast<std::size_t>(hlen);
    detail::npy_header_reader h(f + prefix, header_size, where);
    h.read();

    named_tensor t;
    t.name = name;
    t.shape = h.shape;
    const std::string& d = h.descr;
    const std::string dq = detail::quoted(d);
    if (d.size() < 3 || (d[0] != '<' && d[0] != '>' && d[0] != '|' && d[0] != '='))
        throw format_error(where + ": header: 'descr' " + dq +
                           " is not a dtype lamina reads (expected a byte order, a kind and a size, such as '<f4')");
    const std::string ks = d.substr(1);
    static const std::pair<const char*, tensor_dtype> kinds[] = {
        {"b1", tensor_dtype::boolean}, {"u1", tensor_dtype::u8},   {"i1", tensor_dtype::i8},  {"u2", tensor_dtype::u16},
        {"i2", tensor_dtype::i16},     {"u4", tensor_dtype::u32},  {"i4", tensor_dtype::i32}, {"u8", tensor_dtype::u64},
        {"i8", tensor_dtype::i64},     {"f2", tensor_dtype::f16},  {"f4", tensor_dtype::f32}, {"f8", tensor_dtype::f64}};
    bool known = false;
    for (const auto& [k, dt] : kinds)
        if (ks == k) {
            t.dtype = dt;
            known = true;
        }
    if (!known)
        throw format_error(where + ": header: 'descr' " + dq +
                           " is not a dtype lamina reads (floats f2, f4, f8; integers i1..i8, u1..u8; b1)");
    const std::size_t es = element_size(t.dtype);
    if (es > 1 && d[0] == '>')
        throw format_error(where + ": header: 'descr' " + dq +
                           " is big-endian: lamina reads little-endian data (convert with a.astype('<" + ks + "'))");
    if (es > 1 && d[0] == '|')
        throw format_error(where + ": header: 'descr' " + dq + " gives no byte order for a " + std::to_string(es) +
                           "-byte type");
    std::size_t numel = 1, larger_than_one = 0;
    for (std::size_t k = 0; k < t.shape.size(); ++k) {
        if (t.shape[k] > 1) ++larger_than_one;
        if (!detail::checked_mul(numel, t.shape[k], numel))
            throw format_error(where + ": header: the product of 'shape' " + t.shape_string() + " overflows size_t");
    }
    if (h.fortran_order && larger_than_one > 1)
        throw format_error(where + ": header: 'fortran_order' is True for shape " + t.shape_string() +
                           ": lamina reads C-order (row-major) arrays; save np.ascontiguousarray(a) instead");
    std::size_t bytes = 0;
    if (!detail::checked_mul(numel, es, bytes))
        throw format_error(where + ": header: shape " + t.shape_string() + " of " + dq +
                           " is more bytes than size_t counts");
    const std::size_t start = prefix + header_size, have = n - start;
    if (have < bytes)
        throw format_error(where + " is truncated: shape " + t.shape_string() + " of " + dq + " needs " +
                           std::to_string(bytes) + " bytes of data, only " + std::to_string(have) +
                           " follow the header");
    if (have > bytes)
        throw format_error(where + " has " + std::to_string(have - bytes) + " unexpected bytes after its data (shape " +
                           t.shape_string() + " of " + dq + " is " + std::to_string(bytes) + " bytes)");
    t.bytes.assign(f + start, f + n);
    return t;
}

inline named_tensor parse_npy(const std::vector<unsigned char>& f, const std::string& name) {
    return parse_npy(f.data(), f.size(), name);
}

/// Reads a .npy file into a tensor named after the path (see parse_npy).
inline named_tensor read_npy(const std::string& path) {
    const std::vector<unsigned char> f = detail::read_tensor_file(path, ".npy file");
    return parse_npy(f.data(), f.size(), path);
}

/// The bytes of a .npy file (version 1.0, or 2.0 when the header needs more than 65535 bytes)
/// holding `t`, in C order, the header padded so that the data starts at a multiple of 64.
inline std::vector<unsigned char> npy_bytes(const named_tensor& t) {
    static const char* const descr[] = {"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", nullptr, "<f4", "<f8"};
    const char* dsc = descr[static_cast<std::size_t>(t.dtype)];
    if (!dsc) throw argument_error("lamina: npy_bytes: .npy has no " + std::string(to_string(t.dtype)) + " type");
    std::size_t need = 0;
    if (!detail::checked_mul(t.numel(), element_size(t.dtype), need) || need != t.bytes.size())
        throw argument_error("lamina: npy_bytes: tensor " + detail::quoted(t.name) + " holds " +
                             std::to_string(t.bytes.size()) + " bytes, its shape " + t.shape_string() + " needs " +
                             std::to_string(need));
    std::string h = std::string("{'descr': '") + dsc + "', 'fortran_order': False, 'shape': (";
    for (std::size_t i = 0; i < t.shape.size(); ++i) h += std::to_string(t.shape[i]) + (t.shape.size() == 1 ? "," : i + 1 < t.shape.size() ? ", " : "");
    h += "), }";
    const bool v2 = h.size() + 1 + 10 > 65535;
    const std::size_t prefix = v2 ? 12 : 10;
    while ((prefix + h.size() + 1) % 64) h += ' ';
    h += '\n';
    std::vector<unsigned char> f(npy_magic, npy_magic + 6);
    f.push_back(v2 ? 2 : 1);
    f.push_back(0);
    for (std::size_t i = 0; i < prefix - 8; ++i) f.push_back(static_cast<unsigned char>(std::uint64_t(h.size()) >> (8 * i)));
    f.insert(f.end(), h.begin(), h.end());
    f.insert(f.end(), t.bytes.begin(), t.bytes.end());
    return f;
}

/// Writes a .npy file atomically (io/atomic_file.hpp).
inline void save_npy(const std::string& path, const named_tensor& t) {
    const std::vector<unsigned char> f = npy_bytes(t);
    write_file_atomically(path, f.data(), f.size());
}

}  // namespace lamina::io
