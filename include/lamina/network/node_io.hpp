// lamina: one call's view of a node's ports, and the gradient-ready sink.
//
// Pointers are device pointers (host pointers on host backends). The model plans them: y may
// alias x[0] (an in-place node), dx[i] may alias dy (an elementwise or pass-through
// gradient), dx[i] is null when that input's gradient is not wanted (the network input).
// accumulate[i] says whether dx[i] already holds another consumer's contribution:
//   accumulate[i] == false   dx[i] = gradient   (the first writer overwrites)
//   accumulate[i] == true    dx[i] += gradient  (input gradients accumulate)
// Parameter gradients are always overwritten.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace lamina {

template <class T, std::size_t Inputs = 1>
struct node_io {
    static constexpr std::size_t inputs = Inputs;
    std::array<const T*, Inputs> x{};
    T* y = nullptr;
    const T* dy = nullptr;
    std::array<T*, Inputs> dx{};
    std::array<bool, Inputs> accumulate{};
    std::size_t batch = 0;
    T* workspace = nullptr;  // workspace_size(batch) elements, valid during this call only
    void* saved = nullptr;   // saved_bytes(batch) bytes, kept from forward_train to backward
    bool in_place = false;   // y aliases x[0]; backward then reads y where it would read x

    // one-input shorthands
    const T* in() const noexcept { return x[0]; }
    T* in_grad() const noexcept { return dx[0]; }
    /// The GEMM-style beta of input i's gradient: 0 overwrites, 1 accumulates.
    T beta(std::size_t i = 0) const noexcept { return accumulate[i] ? T(1) : T(0); }
    template <class U>
    U* saved_as() const noexcept {
        return static_cast<U*>(saved);
    }
};

/// The sink that backward reports each parameter gradient to as soon as it is final, before
/// the node computes its input gradients: the MPI communicator's sink starts an allreduce
/// there. This one does nothing and compiles to nothing.
struct no_gradient_sink {
    template <class T>
    void ready(const T*, std::size_t) noexcept {}
};

}  // namespace lamina
