// lamina: safetensors files (Hugging Face's format for PyTorch state_dicts and other tensors).
//
//   u64 little-endian   N, the header length
//   N bytes             a JSON object: {"name": {"dtype": "F32", "shape": [16, 3, 3, 3],
//                       "data_offsets": [begin, end]}, ..., "__metadata__": {"key": "text"}}
//                       (may be padded with trailing spaces)
//   the data            each tensor's bytes at [begin, end) of it, little-endian, row-major
//
//   auto f = lamina::io::read_safetensors("resnet20.safetensors");
//   const auto& w = f.at("conv1.weight");               // named_tensor: dtype, shape, bytes
//   std::vector<float> v = w.to<float>();
//   lamina::io::tensor_map sd = f.map();                // for io/pytorch_names.hpp
//
// Reading trusts nothing: the header length is compared with the bytes present, the header
// must be a JSON object of well-formed entries (known dtype, shape of non-negative integers
// whose product, times the element size, does not overflow, data_offsets inside the data and
// exactly as long as the shape needs), and, as the format requires, the tensors must cover the
// data without holes or overlaps. Every error (format_error; io_error when the file cannot be
// read) names the file and the field.
//
// The reader needs nlohmann-json (Debian: nlohmann-json3-dev), found with __has_include;
// without it this header still compiles and only a call to the reader fails to compile, with a
// message saying so. Define LAMINA_NO_NLOHMANN_JSON to act as if it were absent. The writer
// (save_safetensors, safetensors_bytes) needs nothing.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "atomic_file.hpp"
#include "named_tensor.hpp"

#if !defined(LAMINA_NO_NLOHMANN_JSON) && defined(__has_include)
#if __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>
#define LAMINA_HAS_NLOHMANN_JSON 1
#endif
#endif
#ifndef LAMINA_HAS_NLOHMANN_JSON
#define LAMINA_HAS_NLOHMANN_JSON 0
#endif

namespace lamina::io {

/// The safetensors format's limit on the header (the reference implementation's).
inline constexpr std::size_t safetensors_max_header = 100'000'000;

/// A parsed safetensors file: its tensors in the order of their data (empty ones at the same
/// offset by name), and its metadata.
struct safetensors_file {
    std::string source;  // the file name (or the name given to parse_safetensors)
    std::vector<named_tensor> tensors;
    std::map<std::string, std::string> metadata;

    /// The tensor `name`, or nullptr.
    const named_tensor* find(const std::string& name) const noexcept {
        for (const auto& t : tensors)
            if (t.name == name) return &t;
        return nullptr;
    }
    /// The tensor `name`; format_error naming the file when it has none.
    const named_tensor& at(const std::string& name) const {
        if (const named_tensor* t = find(name)) return *t;
        throw format_error("lamina: safetensors file '" + source + "' has no tensor " + detail::quoted(name));
    }
    /// The tensors by name (a copy; from a temporary, read_safetensors(p).map(), a move).
    tensor_map map() const& {
        tensor_map m;
        for (const auto& t : tensors) m.emplace(t.name, t);
        return m;
    }
    tensor_map map() && {
        tensor_map m;
        for (auto& t : tensors) {
            std::string name = t.name;
            m.emplace(std::move(name), std::move(t));
        }
        tensors.clear();
        return m;
    }
};

namespace detail {

/// Safetensors' dtype names; false when `s` is none that lamina reads.
inline bool safetensors_dtype(const std::string& s, tensor_dtype& d) {
    static const std::pair<const char*, tensor_dtype> table[] = {
        {"BOOL", tensor_dtype::boolean}, {"U8", tensor_dtype::u8},   {"I8", tensor_dtype::i8},
        {"U16", tensor_dtype::u16},      {"I16", tensor_dtype::i16}, {"U32", tensor_dtype::u32},
        {"I32", tensor_dtype::i32},      {"U64", tensor_dtype::u64}, {"I64", tensor_dtype::i64},
        {"F16", tensor_dtype::f16},      {"BF16", tensor_dtype::bf16}, {"F32", tensor_dtype::f32},
        {"F64", tensor_dtype::f64}};
    for (const auto& [name, dt] : table)
        if (s == name) {
            d = dt;
            return true;
        }
    return false;
}

/// A string as a JSON string literal. Bytes >= 0x80 pass through (names are UTF-8).
inline std::string json_string(const std::string& s) {
    static const char hex[] = "0123456789abcdef";
    std::string o = "\"";
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            o += '\\';
            o += static_cast<char>(c);
        } else if (c < 0x20) {
            o += "\\u00";
            o += hex[c >> 4];
            o += hex[c & 0xF];
        } else {
            o += static_cast<char>(c);
        }
    }
    return o + "\"";
}

struct no_json {};
#if LAMINA_HAS_NLOHMANN_JSON
using json_type = nlohmann::json;
#else
using json_type = no_json;
#endif
template <class>
inline constexpr bool needs_nlohmann_json = false;

/// Deepest JSON nesting a header may have: tensor entries need 3 (object, entry, shape).
inline constexpr std::size_t safetensors_max_depth = 16;

}  // namespace detail

/// The bytes of a safetensors file holding `tensors` (in this order) and `metadata`. The
/// header is padded with spaces to a multiple of 8 bytes, so the data is 8-byte aligned.
/// Throws argument_error for a duplicate name or a tensor whose bytes do not match its shape.
inline std::vector<unsigned char> safetensors_bytes(const std::vector<named_tensor>& tensors,
                                                    const std::map<std::string, std::string>& metadata = {}) {
    std::string h = "{";
    bool first = true;
    if (!metadata.empty()) {
        h += "\"__metadata__\":{";
        for (const auto& [k, v] : metadata) {
            if (!first) h += ",";
            first = false;
            h += detail::json_string(k) + ":" + detail::json_string(v);
        }
        h += "}";
        first = false;
    }
    std::map<std::string, int> seen;
    std::size_t offset = 0;
    for (const auto& t : tensors) {
        if (t.name == "__metadata__" || !seen.emplace(t.name, 0).second)
            throw argument_error("lamina: safetensors_bytes: tensor name " + detail::quoted(t.name) +
                                 (t.name == "__metadata__" ? " is reserved" : " appears twice"));
        std::size_t need = 0;
        if (!detail::checked_mul(t.numel(), element_size(t.dtype), need) || need != t.bytes.size())
            throw argument_error("lamina: safetensors_bytes: tensor " + detail::quoted(t.name) + " holds " +
                                 std::to_string(t.bytes.size()) + " bytes, its shape " + t.shape_string() + " of " +
                                 to_string(t.dtype) + " needs " + std::to_string(need));
        if (!first) h += ",";
        first = false;
        h += detail::json_string(t.name) + ":{\"dtype\":\"" + to_string(t.dtype) + "\",\"shape\":[";
        for (std::size_t i = 0; i < t.shape.size(); ++i) h += (i ? "," : "") + std::to_string(t.shape[i]);
        h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + need) + "]}";
        offset += need;
    }
    h += "}";
    while (h.size() % 8) h += ' ';
    std::vector<unsigned char> f;
    f.reserve(8 + h.size() + offset);
    for (int i = 0; i < 8; ++i) f.push_back(static_cast<unsigned char>(std::uint64_t(h.size()) >> (8 * i)));
    f.insert(f.end(), h.begin(), h.end());
    for (const auto& t : tensors) f.insert(f.end(), t.bytes.begin(), t.bytes.end());
    return f;
}

/// Writes a safetensors file atomically (io/atomic_file.hpp): an existing file is replaced
/// only once the new one is complete.
inline void save_safetensors(const std::string& path, const std::vector<named_tensor>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
    const std::vector<unsigned char> f = safetensors_bytes(tensors, metadata);
    write_file_atomically(path, f.data(), f.size());
}

/// Parses the `n` bytes of a safetensors file at `f`; `source` names it in messages. Never
/// reads outside [f, f + n) and allocates at most about n bytes plus the parsed header.
/// Needs nlohmann-json (see the top of this file).
template <class Json = detail::json_type>
safetensors_file parse_safetensors(const unsigned char* f, std::size_t n, const std::string& source) {
    if constexpr (std::is_same_v<Json, detail::no_json>) {
        static_assert(detail::needs_nlohmann_json<Json>,
                      "lamina: reading safetensors files needs nlohmann-json: install it (Debian: apt-get install "
                      "nlohmann-json3-dev; scripts/setup.sh does) or put <nlohmann/json.hpp> on the include path "
                      "(and do not define LAMINA_NO_NLOHMANN_JSON)");
        return {};
    } else {
        const std::string where = "lamina: safetensors file '" + source + "'";
        if (n < 8)
            throw format_error(where + " is truncated: " + std::to_string(n) +
                               " bytes, its header length field alone needs 8");
        const std::uint64_t hlen = detail::load_le(f, 8);
        const std::size_t rest = n - 8;
        if (hlen > rest)
            throw format_error(where + " is truncated: its header length field says " + std::to_string(hlen) +
                               " bytes, only " + std::to_string(rest) + " follow it");
        if (hlen > safetensors_max_header)
            throw format_error(where + ": its header length field says " + std::to_string(hlen) +
                               " bytes, more than the format's limit of " + std::to_string(safetensors_max_header));
        const auto header_size = static_cast<std::size_t>(hlen);
        const unsigned char* data = f + 8 + header_size;
        const std::size_t data_size = rest - header_size;

        // Duplicate tensor names would silently shadow one another in a JSON object: refuse
        // them, and refuse deep nesting (no valid header needs it) before it is built.
        std::string duplicate;
        std::set<std::string> keys;
        typename Json::parser_callback_t cb = [&](int depth, typename Json::parse_event_t ev, Json& parsed) {
            if (depth > static_cast<int>(detail::safetensors_max_depth))
                throw format_error(where + ": the header's JSON nests deeper than " +
                                   std::to_string(detail::safetensors_max_depth) + " levels");
            if (ev == Json::parse_event_t::key && depth == 1 && duplicate.empty() && parsed.is_string()) {
                const std::string& k = parsed.template get_ref<const std::string&>();
                if (!keys.insert(k).second) duplicate = k;
            }
            return true;
        };
        Json header;
        try {
            header = Json::parse(reinterpret_cast<const char*>(f + 8), reinterpret_cast<const char*>(f + 8) + header_size,
                                 cb, true, false);
        } catch (const typename Json::exception& e) {
            throw format_error(where + ": the header (" + std::to_string(header_size) + " bytes) is not valid JSON: " +
                               e.what());
        }
        if (!duplicate.empty()) throw format_error(where + ": the header names " + detail::quoted(duplicate) + " twice");
        if (!header.is_object())
            throw format_error(where + ": the header is a JSON " + header.type_name() + ", expected an object");

        safetensors_file out;
        out.source = source;
        struct span {
            std::size_t begin, end, index;
        };
        std::vector<span> spans;
        for (auto it = header.begin(); it != header.end(); ++it) {
            const std::string& name = it.key();
            const Json& entry = it.value();
            if (name == "__metadata__") {
                if (!entry.is_object())
                    throw format_error(where + ": the header's __metadata__ is a JSON " + entry.type_name() +
                                       ", expected an object of strings");
                for (auto m = entry.begin(); m != entry.end(); ++m) {
                    if (!m.value().is_string())
                        throw format_error(where + ": __metadata__ entry " + detail::quoted(m.key()) + " is a JSON " +
                                           m.value().type_name() + ", expected a string");
                    out.metadata[m.key()] = m.value().template get<std::string>();
                }
                continue;
            }
            const std::string tn = "tensor " + detail::quoted(name);
            if (!entry.is_object())
                throw format_error(where + ": " + tn + " is a JSON " + entry.type_name() +
                                   ", expected an object with dtype, shape and data_offsets");
            auto field = [&](const char* key) -> const Json& {
                auto p = entry.find(key);
                if (p == entry.end()) throw format_error(where + ": " + tn + " has no field '" + key + "'");
                return *p;
            };
            auto index_of = [&](const Json& v, const std::string& what) -> std::size_t {
                if (!v.is_number_unsigned() && !(v.is_number_integer() && v.template get<std::int64_t>() >= 0))
                    throw format_error(where + ": " + tn + ": " + what + " is " +
                                       (v.is_number_integer() ? "negative" : std::string("a JSON ") + v.type_name()) +
                                       ", expected a non-negative integer");
                const std::uint64_t u = v.template get<std::uint64_t>();
                if (u > std::numeric_limits<std::size_t>::max())
                    throw format_error(where + ": " + tn + ": " + what + " " + std::to_string(u) + " does not fit in size_t");
                return static_cast<std::size_t>(u);
            };

            named_tensor t;
            t.name = name;
            const Json& dt = field("dtype");
            if (!dt.is_string())
                throw format_error(where + ": " + tn + ": dtype is a JSON " + dt.type_name() + ", expected a string");
            const std::string& dts = dt.template get_ref<const std::string&>();
            if (!detail::safetensors_dtype(dts, t.dtype))
                throw format_error(where + ": " + tn + " has unknown or unsupported dtype " + detail::quoted(dts) +
                                   " (lamina reads BOOL, U8, I8, U16, I16, U32, I32, U64, I64, F16, BF16, F32, F64)");
            const Json& sh = field("shape");
            if (!sh.is_array())
                throw format_error(where + ": " + tn + ": shape is a JSON " + sh.type_name() + ", expected an array");
            std::size_t numel = 1;
            for (std::size_t k = 0; k < sh.size(); ++k) {
                const std::size_t d = index_of(sh[k], "shape[" + std::to_string(k) + "]");
                t.shape.push_back(d);
                if (!detail::checked_mul(numel, d, numel))
                    throw format_error(where + ": " + tn + ": the product of its shape " + t.shape_string() +
                                       (k + 1 < sh.size() ? "..." : "") + " overflows size_t");
            }
            std::size_t bytes = 0;
            if (!detail::checked_mul(numel, element_size(t.dtype), bytes))
                throw format_error(where + ": " + tn + ": shape " + t.shape_string() + " of " + dts + " is " +
                                   std::to_string(numel) + " elements, whose byte count overflows size_t");
            const Json& off = field("data_offsets");
            if (!off.is_array() || off.size() != 2)
                throw format_error(where + ": " + tn + ": data_offsets is " +
                                   (off.is_array() ? "an array of " + std::to_string(off.size()) + " values"
                                                   : std::string("a JSON ") + off.type_name()) +
                                   ", expected [begin, end]");
            const std::size_t b = index_of(off[0], "data_offsets[0]"), e = index_of(off[1], "data_offsets[1]");
            const std::string range = "data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "]";
            if (b > e) throw format_error(where + ": " + tn + ": " + range + " ends before it begins");
            if (e > data_size)
                throw format_error(where + ": " + tn + ": " + range + " lies outside the data, which holds " +
                                   std::to_string(data_size) + " bytes after the header");
            if (e - b != bytes)
                throw format_error(where + ": " + tn + ": " + range + " spans " + std::to_string(e - b) +
                                   " bytes, its shape " + t.shape_string() + " of " + dts + " needs " +
                                   std::to_string(bytes));
            spans.push_back({b, e, out.tensors.size()});
            out.tensors.push_back(std::move(t));
        }
        // The format requires the tensors to tile the data exactly (no holes, no overlaps).
        std::sort(spans.begin(), spans.end(), [&](const span& x, const span& y) {
            if (x.begin != y.begin) return x.begin < y.begin;
            if (x.end != y.end) return x.end < y.end;
            return out.tensors[x.index].name < out.tensors[y.index].name;  // empty tensors at one offset
        });
        std::size_t at = 0;
        for (std::size_t i = 0; i < spans.size(); ++i) {
            const span& s = spans[i];
            const std::string tn = "tensor " + detail::quoted(out.tensors[s.index].name);
            if (s.begin > at)
                throw format_error(where + ": bytes [" + std::to_string(at) + ", " + std::to_string(s.begin) +
                                   ") of the data belong to no tensor (a hole before " + tn + ")");
            if (s.begin < at)
                throw format_error(where + ": " + tn + " (data_offsets [" + std::to_string(s.begin) + ", " +
                                   std::to_string(s.end) + "]) overlaps tensor " +
                                   detail::quoted(out.tensors[spans[i - 1].index].name));
            at = s.end;
        }
        if (at != data_size)
            throw format_error(where + ": bytes [" + std::to_string(at) + ", " + std::to_string(data_size) +
                               ") of the data belong to no tensor (" + std::to_string(data_size - at) +
                               " bytes after the last one)");
        std::vector<named_tensor> ordered;
        ordered.reserve(spans.size());
        for (const span& s : spans) {
            named_tensor& t = out.tensors[s.index];
            t.bytes.assign(data + s.begin, data + s.end);
            ordered.push_back(std::move(t));
        }
        out.tensors = std::move(ordered);
        return out;
    }
}

template <class Json = detail::json_type>
safetensors_file parse_safetensors(const std::vector<unsigned char>& f, const std::string& source) {
    return parse_safetensors<Json>(f.data(), f.size(), source);
}

/// Reads and validates a safetensors file (see parse_safetensors).
template <class Json = detail::json_type>
safetensors_file read_safetensors(const std::string& path) {
    const std::vector<unsigned char> f = detail::read_tensor_file(path, "safetensors file");
    return parse_safetensors<Json>(f.data(), f.size(), path);
}

}  // namespace lamina::io
