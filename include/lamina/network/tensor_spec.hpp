// lamina: what a node declares about each of its tensors: size, kind, data type, how to
// initialise it and whether weight decay applies.
//
// Kinds decide where a tensor lives and who touches it:
//   trainable  the flat parameter buffer and its twin gradient buffer; optimized; allreduced
//   state      running statistics (batch norm): checkpointed, not optimized, not allreduced
//   frozen     checkpointed and read in forward, never updated (no gradient)
// The model keeps one flat buffer per kind, so an optimizer step is a handful of kernel calls,
// a checkpoint one record per kind and a gradient allreduce one message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "../init/initializers.hpp"

namespace lamina {

enum class tensor_kind : std::uint8_t { trainable, state, frozen };

inline const char* to_string(tensor_kind k) {
    switch (k) {
        case tensor_kind::trainable: return "trainable";
        case tensor_kind::state: return "state";
        case tensor_kind::frozen: return "frozen";
    }
    return "?";
}

/// Element type of a tensor or edge (INT8 inference will add per-tensor scales beside it).
enum class dtype : std::uint8_t { f32, f64, i32, i8, u8 };

inline const char* to_string(dtype d) {
    switch (d) {
        case dtype::f32: return "f32";
        case dtype::f64: return "f64";
        case dtype::i32: return "i32";
        case dtype::i8: return "i8";
        case dtype::u8: return "u8";
    }
    return "?";
}

template <class T>
constexpr dtype dtype_of() {
    if constexpr (std::is_same_v<T, float>) return dtype::f32;
    else if constexpr (std::is_same_v<T, double>) return dtype::f64;
    else if constexpr (std::is_same_v<T, std::int32_t>) return dtype::i32;
    else if constexpr (std::is_same_v<T, std::int8_t>) return dtype::i8;
    else {
        static_assert(std::is_same_v<T, std::uint8_t>, "lamina: no dtype for this element type");
        return dtype::u8;
    }
}

/// One tensor of a node. The first six fields keep the order of the earlier parameter_spec,
/// so `{"weight", count, fan_in, fan_out, init::kind::he_uniform, true}` still reads as before.
struct tensor_spec {
    std::string name;
    std::size_t count = 0;
    std::size_t fan_in = 0, fan_out = 0;
    init::kind init = init::kind::zeros;
    bool decay = true;  // weight decay applies (not to biases and normalisation parameters)
    tensor_kind kind = tensor_kind::trainable;
    dtype type = dtype::f32;  // the model's element type unless a node says otherwise
};

/// The earlier name of tensor_spec (layers written against it keep compiling).
using parameter_spec = tensor_spec;

}  // namespace lamina
