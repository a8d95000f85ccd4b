// lamina: checkpoints. A checkpoint is one binary file:
//
//   "LAMINACK"  magic (8 bytes)
//   u32         format version (1)
//   u64         payload size in bytes
//   payload     records: u32 name length, name, u8 type (1 f32, 2 f64, 3 u64, 4 bytes),
//               u64 element count, elements (little-endian)
//   u32         CRC-32 of the payload
//
// Records: "architecture" (the layer list, input shape and scalar type, as text),
// "parameters", "state" (running statistics such as batch norm's, when the model has any),
// "optimizer" (its name), "optimizer.steps", "optimizer.<state>" tensors, "epoch", "step",
// "seed", "shuffle_seed".
//
// Loading trusts nothing in the file: every length, count and offset is checked against the
// bytes that are actually there before it is used (no arithmetic that can wrap), then the
// CRC, then every record a load needs (presence, type, element count) before anything is
// changed, so a failed load leaves the model and trainer as they were. Every message names
// the file and the field or record that is wrong. Saving is atomic (io/atomic_file.hpp) and
// refuses a model holding NaN or infinity (numeric_error), so a good checkpoint is never
// replaced by a diverged one.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/error.hpp"
#include "atomic_file.hpp"
#include "crc32.hpp"

namespace lamina {

namespace io {

inline constexpr char checkpoint_magic[8] = {'L', 'A', 'M', 'I', 'N', 'A', 'C', 'K'};
inline constexpr std::uint32_t checkpoint_version = 1;
/// Magic, version and payload size.
inline constexpr std::size_t checkpoint_header_size = 20;
/// The CRC-32 after the payload.
inline constexpr std::size_t checkpoint_trailer_size = 4;

enum class record_type : std::uint8_t { f32 = 1, f64 = 2, u64 = 3, bytes = 4 };

/// Name of a record type code for messages, e.g. "1 (f32)"; unknown codes are named "unknown".
inline std::string record_type_name(unsigned code) {
    const char* n = code == 1 ? "f32" : code == 2 ? "f64" : code == 3 ? "u64" : code == 4 ? "bytes" : "unknown";
    return std::to_string(code) + " (" + n + ")";
}

namespace detail {
/// Text from a file as it appears in a message: at most `limit` characters, unprintable bytes
/// as \xNN (names come from files, which may hold anything).
inline std::string printable(const std::string& s, std::size_t limit = 64) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < s.size() && i < limit; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xF];
        }
    }
    if (s.size() > limit) out += "...(" + std::to_string(s.size()) + " bytes)";
    return out;
}

/// The whole file. Throws io_error naming the file when it cannot be opened or read.
inline std::vector<unsigned char> read_whole_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw io_error("lamina: cannot open checkpoint '" + path + "': " + std::strerror(errno));
    std::vector<unsigned char> bytes;
    struct stat st;
    // The size is only a hint (the file may change while it is read); reading decides.
    if (::fstat(fd, &st) == 0 && st.st_size > 0) bytes.reserve(static_cast<std::size_t>(st.st_size));
    unsigned char chunk[1 << 16];
    for (;;) {
        ssize_t k = ::read(fd, chunk, sizeof chunk);
        if (k < 0) {
            if (errno == EINTR) continue;
            const int e = errno;
            ::close(fd);
            throw io_error("lamina: cannot read checkpoint '" + path + "': " + std::strerror(e));
        }
        if (k == 0) break;
        bytes.insert(bytes.end(), chunk, chunk + k);
    }
    ::close(fd);
    return bytes;
}
}  // namespace detail

/// An in-memory checkpoint: named records.
class record_set {
public:
    struct record {
        record_type type;
        std::uint64_t count;
        std::vector<unsigned char> data;
    };

    template <class T>
    void put(const std::string& name, const std::vector<T>& v) {
        record r{type_of<T>(), v.size(), {}};
        r.data.resize(v.size() * sizeof(T));
        if (!v.empty()) std::memcpy(r.data.data(), v.data(), r.data.size());
        set(name, std::move(r));
    }
    void put_u64(const std::string& name, std::uint64_t v) { put<std::uint64_t>(name, {v}); }
    void put_string(const std::string& name, const std::string& s) {
        record r{record_type::bytes, s.size(), std::vector<unsigned char>(s.begin(), s.end())};
        set(name, std::move(r));
    }

    bool has(const std::string& name) const { return index_.count(name) != 0; }
    /// The record `name`, or nullptr when there is none.
    const record* lookup(const std::string& name) const noexcept {
        auto it = index_.find(name);
        return it == index_.end() ? nullptr : &records_[it->second];
    }
    template <class T>
    std::vector<T> get(const std::string& name, const std::string& file) const {
        const record& r = find(name, file);
        if (r.type != type_of<T>())
            throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + detail::printable(name) +
                                   "' has type code " + record_type_name(unsigned(r.type)) + ", expected " +
                                   record_type_name(unsigned(type_of<T>())));
        std::vector<T> v(r.data.size() / sizeof(T));
        if (!v.empty()) std::memcpy(v.data(), r.data.data(), v.size() * sizeof(T));
        return v;
    }
    std::uint64_t get_u64(const std::string& name, const std::string& file) const {
        auto v = get<std::uint64_t>(name, file);
        if (v.size() != 1)
            throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + detail::printable(name) + "' holds " +
                                   std::to_string(v.size()) + " elements, expected 1 (a scalar)");
        return v[0];
    }
    std::string get_string(const std::string& name, const std::string& file) const {
        const record& r = find(name, file);
        if (r.type != record_type::bytes)
            throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + detail::printable(name) +
                                   "' has type code " + record_type_name(unsigned(r.type)) + ", expected " +
                                   record_type_name(unsigned(record_type::bytes)) + " (text)");
        return std::string(r.data.begin(), r.data.end());
    }
    std::vector<std::string> names() const {
        std::vector<std::string> n;
        for (auto& [k, i] : index_) n.push_back(k);
        return n;
    }

    /// The payload: every record, in the order they were put.
    std::vector<unsigned char> payload() const {
        std::vector<unsigned char> p;
        for (auto& [name, i] : order_) {
            const record& r = records_[i];
            append_u32(p, static_cast<std::uint32_t>(name.size()));
            p.insert(p.end(), name.begin(), name.end());
            p.push_back(static_cast<unsigned char>(r.type));
            append_u64(p, r.count);
            p.insert(p.end(), r.data.begin(), r.data.end());
        }
        return p;
    }
    /// The whole file: header, payload, CRC-32.
    std::vector<unsigned char> bytes() const {
        std::vector<unsigned char> p = payload();
        std::vector<unsigned char> file(checkpoint_magic, checkpoint_magic + 8);
        append_u32(file, checkpoint_version);
        append_u64(file, p.size());
        file.insert(file.end(), p.begin(), p.end());
        append_u32(file, crc32(p.data(), p.size()));
        return file;
    }

    /// Serialises and writes atomically.
    void save(const std::string& path) const {
        for (auto& [name, i] : order_)
            if (name.size() > std::numeric_limits<std::uint32_t>::max())
                throw argument_error("lamina: checkpoint record name of " + std::to_string(name.size()) +
                                     " bytes is longer than the format's 32-bit name length");
        const std::vector<unsigned char> file = bytes();
        write_file_atomically(path, file.data(), file.size());
    }

    /// Reads and validates a checkpoint file (see parse).
    static record_set load(const std::string& path) {
        const std::vector<unsigned char> f = detail::read_whole_file(path);
        return parse(f.data(), f.size(), path);
    }

    /// Parses the `n` bytes of a checkpoint file at `f`; `name` names it in messages. Checks
    /// magic, version, payload size, CRC and every record's name length, type and element
    /// count against the bytes present; throws checkpoint_error saying which field is wrong.
    /// Never reads outside [f, f + n) and never allocates more than n bytes per record.
    static record_set parse(const unsigned char* f, std::size_t n, const std::string& name) {
        const std::string where = "lamina: checkpoint '" + name + "'";
        if (n < 8 || std::memcmp(f, checkpoint_magic, 8) != 0)
            throw checkpoint_error("lamina: '" + name + "' is not a lamina checkpoint (bad magic number)");
        if (n < checkpoint_header_size)
            throw checkpoint_error(where + " is truncated: " + std::to_string(n) +
                                   " bytes, the header alone is 20 (magic, version, payload size)");
        const std::uint32_t version = read_u32(f + 8);
        if (version != checkpoint_version)
            throw checkpoint_error(where + " has format version " + std::to_string(version) +
                                   ", this lamina reads version " + std::to_string(checkpoint_version));
        // The payload size field is compared with what the file holds, never added to
        // anything: a huge value must not wrap into a plausible one.
        const std::uint64_t announced = read_u64(f + 12);
        const std::size_t body = n - checkpoint_header_size;  // payload + CRC actually present
        const bool room = body >= checkpoint_trailer_size;
        const std::size_t payload_room = room ? body - checkpoint_trailer_size : 0;
        if (!room || announced > payload_room)
            throw checkpoint_error(where + " is truncated: the file holds " + std::to_string(n) +
                                   " bytes, its header's payload size field announces " + std::to_string(announced) +
                                   " payload bytes (plus the 20-byte header and the 4-byte CRC-32), only " +
                                   std::to_string(payload_room) + " payload bytes are there");
        if (announced < payload_room)
            throw checkpoint_error(where + " is padded: the file holds " + std::to_string(n) +
                                   " bytes, its header's payload size field announces " + std::to_string(announced) +
                                   " payload bytes (plus the 20-byte header and the 4-byte CRC-32): " +
                                   std::to_string(payload_room - static_cast<std::size_t>(announced)) +
                                   (payload_room - announced == 1 ? " unexpected byte" : " unexpected bytes"));
        const std::size_t psize = payload_room;
        const unsigned char* payload = f + checkpoint_header_size;
        const std::uint32_t stored = read_u32(payload + psize), actual = crc32(payload, psize);
        if (stored != actual)
            throw checkpoint_error(where + " is corrupt: CRC-32 mismatch (stored " + std::to_string(stored) +
                                   ", computed " + std::to_string(actual) + ")");
        record_set rs;
        std::size_t pos = 0, index = 0;
        while (pos < psize) {
            const std::size_t start = pos;
            std::size_t left = psize - pos;
            auto malformed = [&](const std::string& what) {
                return checkpoint_error(where + " has a malformed record #" + std::to_string(index) + " at byte " +
                                        std::to_string(checkpoint_header_size + start) + ": " + what);
            };
            if (left < 4)
                throw malformed("its name length field needs 4 bytes, only " + std::to_string(left) +
                                " remain in the payload");
            const std::uint32_t nlen = read_u32(payload + pos);
            pos += 4;
            left -= 4;
            if (nlen > left)
                throw malformed("its name length field says " + std::to_string(nlen) + " bytes, only " +
                                std::to_string(left) + " remain in the payload");
            std::string rname(payload + pos, payload + pos + nlen);
            pos += nlen;
            left -= nlen;
            const std::string rec = "record '" + detail::printable(rname) + "'";
            if (left < 9)
                throw malformed(rec + ": its type and element count fields need 9 bytes, only " + std::to_string(left) +
                                " remain in the payload");
            const unsigned code = payload[pos];
            const std::uint64_t count = read_u64(payload + pos + 1);
            pos += 9;
            left -= 9;
            const std::size_t esize = element_size(code);
            if (esize == 0)
                throw malformed(rec + " has unknown type code " + std::to_string(code) +
                                " (expected 1 f32, 2 f64, 3 u64 or 4 bytes)");
            if (count > left / esize)  // count * esize > left, without the product
                throw malformed(rec + ": its element count field says " + std::to_string(count) + " elements of " +
                                std::to_string(esize) + " bytes, only " + std::to_string(left) +
                                " bytes remain in the payload");
            const std::size_t len = static_cast<std::size_t>(count) * esize;
            if (rs.has(rname)) throw malformed(rec + " appears twice");
            record r{static_cast<record_type>(code), count, std::vector<unsigned char>(payload + pos, payload + pos + len)};
            pos += len;
            rs.set(rname, std::move(r));
            ++index;
        }
        return rs;
    }
    static record_set parse(const std::vector<unsigned char>& f, const std::string& name) {
        return parse(f.data(), f.size(), name);
    }

    template <class T>
    static constexpr record_type type_of() {
        if constexpr (std::is_same_v<T, float>) return record_type::f32;
        else if constexpr (std::is_same_v<T, double>) return record_type::f64;
        else {
            static_assert(std::is_same_v<T, std::uint64_t>, "lamina: checkpoint records hold float, double or uint64");
            return record_type::u64;
        }
    }

private:
    static std::size_t element_size(unsigned code) {
        switch (code) {
            case unsigned(record_type::f32): return 4;
            case unsigned(record_type::f64): return 8;
            case unsigned(record_type::u64): return 8;
            case unsigned(record_type::bytes): return 1;
        }
        return 0;
    }
    void set(const std::string& name, record r) {
        auto it = index_.find(name);
        if (it != index_.end()) {
            records_[it->second] = std::move(r);
            return;
        }
        index_[name] = records_.size();
        order_.emplace_back(name, records_.size());
        records_.push_back(std::move(r));
    }
    const record& find(const std::string& name, const std::string& file) const {
        auto it = index_.find(name);
        if (it == index_.end())
            throw checkpoint_error("lamina: checkpoint '" + file + "' has no record '" + detail::printable(name) + "'");
        return records_[it->second];
    }
    static void append_u32(std::vector<unsigned char>& b, std::uint32_t v) {
        for (int i = 0; i < 4; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
    }
    static void append_u64(std::vector<unsigned char>& b, std::uint64_t v) {
        for (int i = 0; i < 8; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
    }
    static std::uint32_t read_u32(const unsigned char* p) {
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= std::uint32_t(p[i]) << (8 * i);
        return v;
    }
    static std::uint64_t read_u64(const unsigned char* p) {
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v |= std::uint64_t(p[i]) << (8 * i);
        return v;
    }

    std::vector<record> records_;
    std::map<std::string, std::size_t> index_;
    std::vector<std::pair<std::string, std::size_t>> order_;
};

/// The architecture fingerprint stored in and checked against checkpoints.
template <class Model>
std::string architecture_of() {
    return "input" + Model::input_shape::str() + " -> " + Model::name_of_layers() + " | scalar " +
           (std::is_same_v<typename Model::value_type, float> ? "f32" : "f64") + " | parameters " +
           std::to_string(Model::parameter_count);
}

template <class Model>
void check_architecture(const record_set& rs, const std::string& path) {
    std::string stored = rs.get_string("architecture", path), mine = architecture_of<Model>();
    if (stored != mine)
        throw checkpoint_error("lamina: checkpoint '" + path + "' is for another architecture:\n  checkpoint: " +
                               detail::printable(stored, 4096) + "\n  this model: " + mine);
}

/// Checks that record `name` exists, has type `type` and holds `count` elements; `what`
/// says what the count is (for the message). Throws checkpoint_error naming file and record.
inline void expect_record(const record_set& rs, const std::string& file, const std::string& name, record_type type,
                          std::uint64_t count, const std::string& what) {
    const record_set::record* r = rs.lookup(name);
    if (!r) throw checkpoint_error("lamina: checkpoint '" + file + "' has no record '" + name + "'");
    if (r->type != type)
        throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + name + "' has type code " +
                               record_type_name(unsigned(r->type)) + ", expected " + record_type_name(unsigned(type)));
    if (r->count != count)
        throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + name + "' holds " +
                               std::to_string(r->count) + " elements, expected " + std::to_string(count) + " (" + what +
                               ")");
}

namespace detail {

/// "parameter segment '<name>' holds NaN at element k of n" for the first segment (in
/// parameter_segments() order) with a NaN or infinity, or "" when every parameter is finite.
template <class Model, class T>
std::string first_non_finite(const Model& net, const std::vector<T>& params) {
    for (const auto& seg : net.parameter_segments())
        for (std::size_t k = 0; k < seg.count && seg.offset + k < params.size(); ++k) {
            const T v = params[seg.offset + k];
            if (std::isfinite(v)) continue;
            return "parameter segment '" + seg.name + "' holds " + (std::isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf") +
                   " at element " + std::to_string(k) + " of " + std::to_string(seg.count);
        }
    return {};
}

/// Throws numeric_error when `params` (the model's) hold a NaN or infinity: such a model is
/// never written over a checkpoint (which may be the last good one).
template <class Model, class T>
void refuse_non_finite(const Model& net, const std::vector<T>& params, const std::string& path) {
    const std::string bad = first_non_finite(net, params);
    if (!bad.empty())
        throw numeric_error("lamina: not saving '" + path + "': " + bad + " (a checkpoint never stores a non-finite "
                            "model); the existing file is untouched");
}

/// Adds the model's running state (batch norm statistics) as record "state", refusing NaN or
/// infinity there too.
template <class Model>
void put_state(record_set& rs, const Model& net, const std::string& path) {
    using T = typename Model::value_type;
    if constexpr (Model::state_count > 0) {
        std::vector<T> st = net.get_state();
        for (const auto& seg : net.state_segments())
            for (std::size_t k = 0; k < seg.count; ++k)
                if (!std::isfinite(st[seg.offset + k]))
                    throw numeric_error("lamina: not saving '" + path + "': running-state segment '" + seg.name +
                                        "' holds a non-finite value at element " + std::to_string(k) + " of " +
                                        std::to_string(seg.count) + "; the existing file is untouched");
        rs.put("state", st);
    } else {
        (void)rs, (void)net, (void)path;
    }
}

/// Names and sizes of an optimizer state's tensors: its layout() when it has one (no copies),
/// else what save() returns.
template <class S, class = void>
struct has_layout : std::false_type {};
template <class S>
struct has_layout<S, std::void_t<decltype(std::declval<const S&>().layout())>> : std::true_type {};

template <class State, class Context>
std::vector<std::pair<std::string, std::size_t>> optimizer_layout(const State& s, const Context& c) {
    if constexpr (has_layout<State>::value) {
        return s.layout();
    } else {
        std::vector<std::pair<std::string, std::size_t>> l;
        for (auto& [name, values] : s.save(c)) l.emplace_back(name, values.size());
        return l;
    }
}

}  // namespace detail

}  // namespace io

/// Saves a model's parameters (no training state): for inference and transfer. Throws
/// numeric_error (and leaves an existing file untouched) when a parameter is NaN or infinite.
template <class Model>
void save_weights(const std::string& path, const Model& net) {
    auto params = net.get_parameters();
    io::detail::refuse_non_finite(net, params, path);
    io::record_set rs;
    rs.put_string("architecture", io::architecture_of<Model>());
    rs.put("parameters", params);
    io::detail::put_state(rs, net, path);
    rs.put_u64("seed", net.seed_value());
    rs.save(path);
}

/// Loads parameters from an in-memory checkpoint (record_set::parse); `source` names it in
/// messages. Checks the architecture and the parameters record before changing the model.
template <class Model>
void load_weights(const io::record_set& rs, Model& net, const std::string& source) {
    using T = typename Model::value_type;
    io::check_architecture<Model>(rs, source);
    io::expect_record(rs, source, "parameters", io::record_set::type_of<T>(), Model::parameter_count,
                      "the model's parameter count");
    if (Model::state_count)
        io::expect_record(rs, source, "state", io::record_set::type_of<T>(), Model::state_count,
                          "the model's running-state count");
    net.set_parameters(rs.get<T>("parameters", source));
    if (Model::state_count) net.set_state(rs.get<T>("state", source));
}

/// Loads parameters saved by save_weights or save_checkpoint into a model of the same architecture.
template <class Model>
void load_weights(const std::string& path, Model& net) {
    load_weights(io::record_set::load(path), net, path);
}

namespace io::detail {
template <class Trainer, class = void>
struct optimizer_on_servers : std::false_type {};
template <class Trainer>
struct optimizer_on_servers<Trainer, std::enable_if_t<Trainer::optimizer_on_servers>> : std::true_type {};
}  // namespace io::detail

/// Saves the whole training state: parameters, optimizer state, RNG seeds, epoch and step,
/// so that a resumed run continues bit-identically. Throws numeric_error (and leaves an
/// existing file untouched) when a parameter is NaN or infinite.
template <class Trainer>
void save_checkpoint(const std::string& path, Trainer& t) {
    if constexpr (io::detail::optimizer_on_servers<Trainer>::value)
        if (!t.optimizer_state_current())
            throw error("lamina: save_checkpoint('" + path + "'): a comm::hybrid trainer's optimizer state lives sharded "
                        "on its parameter servers: call gather_optimizer_state() on every rank after run() first "
                        "(communicators/hybrid.hpp); nothing was written");
    using Model = std::decay_t<decltype(t.model())>;
    auto& net = t.model();
    auto params = net.get_parameters();
    io::detail::refuse_non_finite(net, params, path);
    io::record_set rs;
    rs.put_string("architecture", io::architecture_of<Model>());
    rs.put("parameters", params);
    io::detail::put_state(rs, net, path);
    rs.put_string("optimizer", t.optimizer().name());
    rs.put_u64("optimizer.steps", t.optimizer_state_ref().steps());
    for (auto& [name, values] : t.optimizer_state_ref().save(net.context())) rs.put("optimizer." + name, values);
    rs.put_u64("epoch", t.epoch());
    rs.put_u64("step", t.global_step());
    rs.put_u64("seed", net.seed_value());
    rs.put_u64("shuffle_seed", t.shuffle_seed());
    rs.save(path);
}

/// Restores an in-memory checkpoint (record_set::parse) into a trainer; `source` names it in
/// messages. Transactional: every record is checked (architecture, parameters, optimizer name,
/// each optimizer state tensor's name, type and size, and the scalars optimizer.steps, epoch,
/// step, seed, shuffle_seed) before the model, optimizer or trainer is changed.
template <class Trainer>
void load_checkpoint(const io::record_set& rs, Trainer& t, const std::string& source) {
    using Model = std::decay_t<decltype(t.model())>;
    using T = typename Model::value_type;
    auto& net = t.model();
    auto& opt_state = t.optimizer_state_ref();
    const auto u64 = io::record_type::u64;
    const auto scalar = [&](const std::string& name) { io::expect_record(rs, source, name, u64, 1, "a scalar"); };

    // 1. Validate everything.
    io::check_architecture<Model>(rs, source);
    io::expect_record(rs, source, "parameters", io::record_set::type_of<T>(), Model::parameter_count,
                      "the model's parameter count");
    if (Model::state_count)
        io::expect_record(rs, source, "state", io::record_set::type_of<T>(), Model::state_count,
                          "the model's running-state count");
    const std::string opt = rs.get_string("optimizer", source);
    if (opt != t.optimizer().name())
        throw checkpoint_error("lamina: checkpoint '" + source + "' holds optimizer state of '" + io::detail::printable(opt) +
                               "', the trainer uses '" + t.optimizer().name() + "'");
    const auto layout = io::detail::optimizer_layout(opt_state, net.context());
    const std::string prefix = "optimizer.";
    for (const auto& [name, size] : layout)
        io::expect_record(rs, source, prefix + name, io::record_set::type_of<T>(), size,
                          "the size of " + t.optimizer().name() + "'s state '" + name + "'");
    for (const auto& name : rs.names()) {
        if (name.rfind(prefix, 0) != 0 || name == "optimizer.steps") continue;
        const std::string state = name.substr(prefix.size());
        if (std::none_of(layout.begin(), layout.end(), [&](const auto& l) { return l.first == state; }))
            throw checkpoint_error("lamina: checkpoint '" + source + "' has a record '" + io::detail::printable(name) +
                                   "', a state that optimizer '" + t.optimizer().name() + "' does not keep");
    }
    for (const char* name : {"optimizer.steps", "epoch", "step", "seed", "shuffle_seed"}) scalar(name);
    const std::uint64_t epoch = rs.get_u64("epoch", source);
    if (sizeof(std::size_t) < sizeof(std::uint64_t) && epoch > std::numeric_limits<std::size_t>::max())
        throw checkpoint_error("lamina: checkpoint '" + source + "': record 'epoch' holds " + std::to_string(epoch) +
                               ", more than this platform's size_t");

    // 2. Read everything into host memory (may allocate, so may throw: still nothing changed).
    std::vector<T> params = rs.get<T>("parameters", source);
    std::vector<T> running = Model::state_count ? rs.get<T>("state", source) : std::vector<T>{};
    std::vector<std::pair<std::string, std::vector<T>>> state;
    for (const auto& entry : layout) state.emplace_back(entry.first, rs.get<T>(prefix + entry.first, source));
    const std::uint64_t steps = rs.get_u64("optimizer.steps", source), step = rs.get_u64("step", source),
                        seed = rs.get_u64("seed", source), shuffle_seed = rs.get_u64("shuffle_seed", source);

    // 3. Apply. The optimizer's own load re-checks its state first (so it is the step that
    // may still refuse); the rest cannot fail on validated sizes.
    opt_state.load(net.context(), state, steps);
    net.set_parameters(params);
    if (Model::state_count) net.set_state(running);
    net.restore_seed(seed);
    t.set_position(static_cast<std::size_t>(epoch), step);
    t.set_shuffle_seed(shuffle_seed);
}

/// Restores what save_checkpoint saved into a trainer of the same architecture and optimizer.
/// Nothing is changed when the file or any record in it is wrong.
template <class Trainer>
void load_checkpoint(const std::string& path, Trainer& t) {
    load_checkpoint(io::record_set::load(path), t, path);
}

/// Callback: saves `<prefix>.lmck` every `every` epochs (atomically replacing the last one).
/// A model holding NaN or infinity is not saved (the last good checkpoint stays): the save is
/// skipped with one line on stderr naming the epoch and the parameter segment.
struct checkpoint_every {
    static constexpr bool root_only = true;  // a distributed trainer's checkpoints are written by rank 0
    static constexpr bool writes_checkpoints = true;  // comm::hybrid refuses it (train/trainer.hpp)
    std::string prefix;
    std::size_t every = 1;
    checkpoint_every(std::string p, std::size_t n = 1) : prefix(std::move(p)), every(n ? n : 1) {}
    std::string path() const { return prefix + ".lmck"; }
    bool enabled() const noexcept { return !prefix.empty(); }
    template <class Trainer, class Info>
    void on_epoch_end(Trainer& t, const Info&) {
        if (prefix.empty() || t.epoch() % every != 0) return;  // empty prefix: disabled
        try {
            save_checkpoint(path(), t);
        } catch (const numeric_error& e) {
            std::string why = e.what();
            if (why.rfind("lamina: ", 0) == 0) why.erase(0, 8);
            std::cerr << "lamina: checkpoint_every: after epoch " << t.epoch() << ", skipped the save: " << why << "\n";
        }
    }
};

}  // namespace lamina
