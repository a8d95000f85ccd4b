// lamina: compile-time shapes of one sample (the batch size is a runtime value).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <type_traits>

namespace lamina {

/// The shape of one sample, e.g. shape<1, 28, 28> for a grey MNIST image (C, H, W) or
/// shape<10> for a vector. Shapes are types so layers deduce their outputs while compiling.
template <std::size_t... Dims>
struct shape {
    static_assert(sizeof...(Dims) >= 1, "lamina::shape needs at least one dimension");
    static constexpr std::size_t rank = sizeof...(Dims);
    static constexpr std::size_t size = (Dims * ...);
    static constexpr std::array<std::size_t, rank> dims{Dims...};

    static std::string str() {
        std::string s = "(";
        std::size_t i = 0;
        ((s += (i++ ? "," : "") + std::to_string(Dims)), ...);
        return s + ")";
    }
};

/// The shapes of several ports (the inputs of concat and add, the outputs of a network with
/// several heads), e.g. shapes<shape<16, 8, 8>, shape<32, 8, 8>>.
template <class... S>
struct shapes {
    static constexpr std::size_t count = sizeof...(S);
    static constexpr std::array<std::size_t, sizeof...(S)> sizes{S::size...};
    static constexpr std::size_t size = (std::size_t(0) + ... + S::size);  // all ports together
    static std::string str() {
        std::string s = "[";
        std::size_t i = 0;
        ((s += (i++ ? ", " : "") + S::str()), ...);
        return s + "]";
    }
};

template <class S>
struct is_shape : std::false_type {};
template <std::size_t... D>
struct is_shape<shape<D...>> : std::true_type {};

/// Channels, height and width of a rank-3 shape (C, H, W); a rank-1 shape is (N, 1, 1).
template <class S>
struct chw;
template <std::size_t C, std::size_t H, std::size_t W>
struct chw<shape<C, H, W>> {
    static constexpr std::size_t c = C, h = H, w = W;
};
template <std::size_t N>
struct chw<shape<N>> {
    static constexpr std::size_t c = N, h = 1, w = 1;
};

}  // namespace lamina
