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
// "parameters", "optimizer" (its name), "optimizer.steps", "optimizer.<state>" tensors,
// "epoch", "step", "seed", "shuffle_seed". Loading checks magic, version, size, checksum and
// architecture and says which failed. Saving is atomic (io/atomic_file.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "atomic_file.hpp"
#include "crc32.hpp"

namespace lamina {

namespace io {

inline constexpr char checkpoint_magic[8] = {'L', 'A', 'M', 'I', 'N', 'A', 'C', 'K'};
inline constexpr std::uint32_t checkpoint_version = 1;

enum class record_type : std::uint8_t { f32 = 1, f64 = 2, u64 = 3, bytes = 4 };

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
    template <class T>
    std::vector<T> get(const std::string& name, const std::string& file) const {
        const record& r = find(name, file);
        if (r.type != type_of<T>())
            throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + name + "' has type code " +
                                   std::to_string(int(r.type)) + ", expected " + std::to_string(int(type_of<T>())));
        std::vector<T> v(r.count);
        if (r.count) std::memcpy(v.data(), r.data.data(), r.count * sizeof(T));
        return v;
    }
    std::uint64_t get_u64(const std::string& name, const std::string& file) const {
        auto v = get<std::uint64_t>(name, file);
        if (v.size() != 1) throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + name + "' is not a scalar");
        return v[0];
    }
    std::string get_string(const std::string& name, const std::string& file) const {
        const record& r = find(name, file);
        if (r.type != record_type::bytes)
            throw checkpoint_error("lamina: checkpoint '" + file + "': record '" + name + "' is not text");
        return std::string(r.data.begin(), r.data.end());
    }
    std::vector<std::string> names() const {
        std::vector<std::string> n;
        for (auto& [k, i] : index_) n.push_back(k);
        return n;
    }

    /// Serialises and writes atomically.
    void save(const std::string& path) const {
        std::vector<unsigned char> payload;
        for (auto& [name, i] : order_) {
            const record& r = records_[i];
            append_u32(payload, static_cast<std::uint32_t>(name.size()));
            payload.insert(payload.end(), name.begin(), name.end());
            payload.push_back(static_cast<unsigned char>(r.type));
            append_u64(payload, r.count);
            payload.insert(payload.end(), r.data.begin(), r.data.end());
        }
        std::vector<unsigned char> file(checkpoint_magic, checkpoint_magic + 8);
        append_u32(file, checkpoint_version);
        append_u64(file, payload.size());
        file.insert(file.end(), payload.begin(), payload.end());
        append_u32(file, crc32(payload.data(), payload.size()));
        write_file_atomically(path, file.data(), file.size());
    }

    /// Reads and validates a checkpoint file.
    static record_set load(const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        if (!in) throw io_error("lamina: cannot open checkpoint '" + path + "'");
        std::vector<unsigned char> f((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (f.size() < 8 || std::memcmp(f.data(), checkpoint_magic, 8) != 0)
            throw checkpoint_error("lamina: '" + path + "' is not a lamina checkpoint (bad magic number)");
        if (f.size() < 20)
            throw checkpoint_error("lamina: checkpoint '" + path + "' is truncated: " + std::to_string(f.size()) +
                                   " bytes, the header alone is 20");
        std::uint32_t version = read_u32(f.data() + 8);
        if (version != checkpoint_version)
            throw checkpoint_error("lamina: checkpoint '" + path + "' has format version " + std::to_string(version) +
                                   ", this lamina reads version " + std::to_string(checkpoint_version));
        std::uint64_t psize = read_u64(f.data() + 12);
        if (f.size() != 20 + psize + 4)
            throw checkpoint_error("lamina: checkpoint '" + path + "' is truncated or padded: " + std::to_string(f.size()) +
                                   " bytes, the header announces " + std::to_string(20 + psize + 4));
        const unsigned char* payload = f.data() + 20;
        std::uint32_t stored = read_u32(payload + psize), actual = crc32(payload, psize);
        if (stored != actual)
            throw checkpoint_error("lamina: checkpoint '" + path + "' is corrupt: CRC-32 mismatch (stored " +
                                   std::to_string(stored) + ", computed " + std::to_string(actual) + ")");
        record_set rs;
        std::size_t pos = 0;
        auto need = [&](std::size_t k) {
            if (pos + k > psize)
                throw checkpoint_error("lamina: checkpoint '" + path + "' has a malformed record at byte " +
                                       std::to_string(20 + pos));
        };
        while (pos < psize) {
            need(4);
            std::uint32_t nlen = read_u32(payload + pos);
            pos += 4;
            need(nlen + 9);
            std::string name(payload + pos, payload + pos + nlen);
            pos += nlen;
            auto type = static_cast<record_type>(payload[pos++]);
            std::uint64_t count = read_u64(payload + pos);
            pos += 8;
            std::size_t esize = element_size(type);
            if (esize == 0 || count > psize / esize + 1)
                throw checkpoint_error("lamina: checkpoint '" + path + "': record '" + name + "' has a bad type or size");
            need(count * esize);
            record r{type, count, std::vector<unsigned char>(payload + pos, payload + pos + count * esize)};
            pos += count * esize;
            rs.set(name, std::move(r));
        }
        return rs;
    }

private:
    template <class T>
    static constexpr record_type type_of() {
        if constexpr (std::is_same_v<T, float>) return record_type::f32;
        else if constexpr (std::is_same_v<T, double>) return record_type::f64;
        else {
            static_assert(std::is_same_v<T, std::uint64_t>, "lamina: checkpoint records hold float, double or uint64");
            return record_type::u64;
        }
    }
    static std::size_t element_size(record_type t) {
        switch (t) {
            case record_type::f32: return 4;
            case record_type::f64: return 8;
            case record_type::u64: return 8;
            case record_type::bytes: return 1;
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
        if (it == index_.end()) throw checkpoint_error("lamina: checkpoint '" + file + "' has no record '" + name + "'");
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
        throw checkpoint_error("lamina: checkpoint '" + path + "' is for another architecture:\n  checkpoint: " + stored +
                               "\n  this model: " + mine);
}

}  // namespace io

/// Saves a model's parameters (no training state): for inference and transfer.
template <class Model>
void save_weights(const std::string& path, const Model& net) {
    io::record_set rs;
    rs.put_string("architecture", io::architecture_of<Model>());
    rs.put("parameters", net.get_parameters());
    rs.put_u64("seed", net.seed_value());
    rs.save(path);
}

/// Loads parameters saved by save_weights or save_checkpoint into a model of the same architecture.
template <class Model>
void load_weights(const std::string& path, Model& net) {
    auto rs = io::record_set::load(path);
    io::check_architecture<Model>(rs, path);
    net.set_parameters(rs.get<typename Model::value_type>("parameters", path));
}

/// Saves the whole training state: parameters, optimizer state, RNG seeds, epoch and step,
/// so that a resumed run continues bit-identically.
template <class Trainer>
void save_checkpoint(const std::string& path, Trainer& t) {
    using Model = std::decay_t<decltype(t.model())>;
    auto& net = t.model();
    io::record_set rs;
    rs.put_string("architecture", io::architecture_of<Model>());
    rs.put("parameters", net.get_parameters());
    rs.put_string("optimizer", t.optimizer().name());
    rs.put_u64("optimizer.steps", t.optimizer_state_ref().steps());
    for (auto& [name, values] : t.optimizer_state_ref().save(net.context())) rs.put("optimizer." + name, values);
    rs.put_u64("epoch", t.epoch());
    rs.put_u64("step", t.global_step());
    rs.put_u64("seed", net.seed_value());
    rs.put_u64("shuffle_seed", t.shuffle_seed());
    rs.save(path);
}

/// Restores what save_checkpoint saved into a trainer of the same architecture and optimizer.
template <class Trainer>
void load_checkpoint(const std::string& path, Trainer& t) {
    using Model = std::decay_t<decltype(t.model())>;
    using T = typename Model::value_type;
    auto rs = io::record_set::load(path);
    io::check_architecture<Model>(rs, path);
    std::string opt = rs.get_string("optimizer", path);
    if (opt != t.optimizer().name())
        throw checkpoint_error("lamina: checkpoint '" + path + "' holds optimizer state of '" + opt +
                               "', the trainer uses '" + t.optimizer().name() + "'");
    std::vector<std::pair<std::string, std::vector<T>>> state;
    std::string prefix = "optimizer.";
    for (auto& name : rs.names())
        if (name.rfind(prefix, 0) == 0 && name != "optimizer.steps")
            state.emplace_back(name.substr(prefix.size()), rs.get<T>(name, path));
    // Keep the optimizer's own order of state tensors (save() order).
    auto expected = t.optimizer_state_ref().save(t.model().context());
    std::vector<std::pair<std::string, std::vector<T>>> ordered;
    for (auto& entry : expected) {
        const std::string& name = entry.first;  // (a named reference: clang 14 cannot capture bindings)
        auto it = std::find_if(state.begin(), state.end(), [&](auto& s) { return s.first == name; });
        if (it == state.end())
            throw checkpoint_error("lamina: checkpoint '" + path + "' lacks optimizer state '" + name + "'");
        ordered.push_back(std::move(*it));
    }
    auto& net = t.model();
    net.set_parameters(rs.get<T>("parameters", path));
    net.restore_seed(rs.get_u64("seed", path));
    t.optimizer_state_ref().load(net.context(), ordered, rs.get_u64("optimizer.steps", path));
    t.set_position(rs.get_u64("epoch", path), rs.get_u64("step", path));
    t.set_shuffle_seed(rs.get_u64("shuffle_seed", path));
}

/// Callback: saves `<prefix>.lmck` every `every` epochs (atomically replacing the last one).
struct checkpoint_every {
    std::string prefix;
    std::size_t every = 1;
    checkpoint_every(std::string p, std::size_t n = 1) : prefix(std::move(p)), every(n ? n : 1) {}
    std::string path() const { return prefix + ".lmck"; }
    template <class Trainer, class Info>
    void on_epoch_end(Trainer& t, const Info&) {
        if (!prefix.empty() && t.epoch() % every == 0) save_checkpoint(path(), t);  // empty prefix: disabled
    }
};

}  // namespace lamina
