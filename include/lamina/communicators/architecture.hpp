// lamina: a fingerprint of a model's architecture (its layer types, input shape, scalar type and
// every tensor's name and size), which ranks compare before they exchange anything: ranks that
// built different networks fail with one clear error instead of hanging in a collective whose
// sizes do not match.
#pragma once

#include <cstdint>
#include <string>

namespace lamina::comm {

/// The text the fingerprint is taken of.
template <class Model>
std::string architecture_text(const Model& net) {
    using T = typename Model::value_type;
    std::string s = Model::name_of_layers() + " on " + Model::input_shape::str() + " in " +
                    std::to_string(sizeof(T)) + "-byte scalars;";
    for (const auto& seg : net.parameter_segments()) s += " " + seg.name + "=" + std::to_string(seg.count);
    s += ";";
    for (const auto& seg : net.state_segments()) s += " " + seg.name + "=" + std::to_string(seg.count);
    return s;
}

/// FNV-1a, 64 bits: the same on every rank, compiler and platform.
inline std::uint64_t fingerprint(const std::string& s) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

template <class Model>
std::uint64_t architecture_hash(const Model& net) {
    return fingerprint(architecture_text(net));
}

}  // namespace lamina::comm
