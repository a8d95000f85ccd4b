// lamina: the nodes that join several inputs: `add` (elementwise sum, a residual's join) and
// `concat` (channels of images, features of vectors; the multi-scale CNN's join). They take
// shapes<S...> and node_io<T, N>; branches<Merge, Paths...> and residual<...> use them.
//
// add:    y = x0 + x1 + ...; may run in place over x0; every dx[i] is dy, so the model gives
//         each input gradient the output gradient's storage when add is its only writer
//         (a residual's backward then copies nothing on its main path).
// concat: y[n] = [x0[n], x1[n], ...] per sample; backward copies (or adds) each slice.
#pragma once

#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>

#include "../core/config.hpp"
#include "../network/shape_check.hpp"
#include "layer_concept.hpp"

namespace lamina {

namespace detail {
template <class S, class... Ss>
struct all_same : std::bool_constant<(std::is_same_v<S, Ss> && ...)> {};

template <class A, class B>
struct same_spatial : std::false_type {};
template <std::size_t C1, std::size_t C2, std::size_t H, std::size_t W>
struct same_spatial<shape<C1, H, W>, shape<C2, H, W>> : std::true_type {};
template <std::size_t N1, std::size_t N2>
struct same_spatial<shape<N1>, shape<N2>> : std::true_type {};

template <class A, class B>
struct concat2;
template <std::size_t C1, std::size_t C2, std::size_t H, std::size_t W>
struct concat2<shape<C1, H, W>, shape<C2, H, W>> {
    using type = shape<C1 + C2, H, W>;
};
template <std::size_t N1, std::size_t N2>
struct concat2<shape<N1>, shape<N2>> {
    using type = shape<N1 + N2>;
};
template <class S, class... Ss>
struct concat_shape {
    using type = S;
};
template <class S1, class S2, class... Ss>
struct concat_shape<S1, S2, Ss...> {
    using type = typename concat_shape<typename concat2<S1, S2>::type, Ss...>::type;
};
template <class Ins>
struct concat_output;
template <class... S>
struct concat_output<shapes<S...>> {
    using type = typename concat_shape<S...>::type;
};
template <class Ins>
struct add_output;
template <class S, class... Ss>
struct add_output<shapes<S, Ss...>> {
    using type = S;
};
}  // namespace detail

/// Elementwise sum of inputs of one shape.
struct add : layer_descriptor_base {
    static std::string name() { return "add"; }
    template <class Ins>
    using output_shape = typename detail::add_output<Ins>::type;

    template <class Ins, class Backend, class T>
    class impl;
    template <class S, class... Ss, class Backend, class T>
    class impl<shapes<S, Ss...>, Backend, T> : public node_base<Backend, T> {
        static_assert(detail::all_same<S, Ss...>::value, "lamina::add: every input must have the same shape");

    public:
        using context = typename Backend::context;
        static constexpr std::size_t inputs = 1 + sizeof...(Ss);
        static constexpr double flops_per_sample = double(inputs - 1) * S::size;
        static constexpr auto traits = graph::leaf_traits{}.in_place().passthrough().no_input().accumulating();
        void forward(const context& c, const node_io<T, inputs>& io) const {
            const std::size_t n = io.batch * S::size;
            Backend::copy(c, io.y, io.x[0], n);  // a no-op in place
            for (std::size_t i = 1; i < inputs; ++i) Backend::axpy(c, n, T(1), io.x[i], io.y);
        }
        void backward(const context& c, const node_io<T, inputs>& io) {
            const std::size_t n = io.batch * S::size;
            for (std::size_t i = 0; i < inputs; ++i) {
                if (!io.dx[i] || io.dx[i] == io.dy) continue;  // aliased by the model: nothing to do
                if (io.accumulate[i]) Backend::axpy(c, n, T(1), io.dy, io.dx[i]);
                else Backend::copy(c, io.dx[i], io.dy, n);
            }
        }
    };
};

/// Concatenation along channels (C, H, W inputs of equal H and W) or features (vectors).
struct concat : layer_descriptor_base {
    static std::string name() { return "concat"; }
    template <class Ins>
    using output_shape = typename detail::concat_output<Ins>::type;

    template <class Ins, class Backend, class T>
    class impl;
    template <class... S, class Backend, class T>
    class impl<shapes<S...>, Backend, T> : public node_base<Backend, T> {
    public:
        using context = typename Backend::context;
        using out_shape = typename detail::concat_shape<S...>::type;
        static constexpr std::size_t inputs = sizeof...(S);
        static constexpr double flops_per_sample = 0;
        static constexpr auto traits = graph::leaf_traits{}.no_input().accumulating();
        static constexpr std::size_t sizes[inputs] = {S::size...};

        void forward(const context& c, const node_io<T, inputs>& io) const {
            std::size_t offset = 0;
            for (std::size_t k = 0; k < inputs; ++k) {
                copy_slice(c, io.x[k], io.y, io.batch, sizes[k], offset, false, true);
                offset += sizes[k];
            }
        }
        void backward(const context& c, const node_io<T, inputs>& io) {
            std::size_t offset = 0;
            for (std::size_t k = 0; k < inputs; ++k) {
                if (io.dx[k]) copy_slice(c, io.dy, io.dx[k], io.batch, sizes[k], offset, io.accumulate[k], false);
                offset += sizes[k];
            }
        }

        // Public, not private: nvcc rejects an extended __host__ __device__ lambda (LAMINA_LAMBDA)
        // whose enclosing function is private or protected within its class.
        /// Per sample n: the `size` values at `offset` of the concatenated row and the whole row of
        /// input k. to_whole: input -> concatenated; else concatenated -> input (maybe adding).
        static void copy_slice(const context& c, const T* from, T* to, std::size_t batch, std::size_t size,
                               std::size_t offset, bool accumulate, bool to_whole) {
            constexpr std::size_t total = out_shape::size;
            Backend::for_each_index(c, batch * size, LAMINA_LAMBDA(std::size_t i) {
                const std::size_t n = i / size, j = i % size;
                const std::size_t whole = n * total + offset + j;
                if (to_whole) to[whole] = from[i];
                else to[i] = accumulate ? to[i] + from[whole] : from[whole];
            });
        }
    };
};

}  // namespace lamina
