// lamina: what a layer is. Read this to write your own layer (tests/unit/test_network.cpp
// defines two outside the lamina namespace and trains through them).
//
// A layer is a *descriptor* type, the thing users list in a network:
//
//   struct my_layer {
//       static std::string name();                               // for summaries
//       template <class In> static constexpr bool accepts = ...; // may it take shape In?
//       template <class In> using expected_input = ...;          // shown when it may not
//       template <class In> using output_shape = ...;            // compile-time shape rule
//       template <class In, class Backend, class T> class impl;  // the runtime node
//   };
//
// `impl<In, Backend, T>` is written once for every backend: it calls only Backend's kernels
// and never dereferences device pointers. It derives from node_base (defaults below) and has:
//
//   static constexpr std::size_t parameter_count;   // trainable scalars (compile-time counts)
//   static constexpr std::size_t state_count;       // running-state scalars (batch norm)
//   static constexpr double flops_per_sample;       // forward FLOPs of one sample
//   static constexpr graph::leaf_traits traits;     // in place? needs x or y in backward? e.g.
//                                                   // graph::leaf_traits{}.no_input().accumulating()
//   std::vector<tensor_spec> tensor_specs() const;  // name, count, kind, init, fans, decay
//   void bind(const tensor_binding<T>&);            // its slices of the model's flat buffers
//   std::size_t workspace_size(std::size_t batch) const;  // T elements of scratch per call
//   std::size_t saved_bytes(std::size_t batch) const;     // kept from forward_train to backward
//   void forward(const context&, const node_io<T>&) const;             // inference
//   void forward_train(const context&, const node_io<T>&, std::uint64_t step);
//   template <class Sink> void backward(const context&, const node_io<T>&, Sink&);
//
// The contract (network/node_io.hpp): input gradients accumulate when io.accumulate says so
// (dx += ...), parameter gradients are overwritten; backward calls sink.ready(grad, count)
// for its parameter gradients before it computes input gradients. A node with several inputs
// (concat, add) has `static constexpr std::size_t inputs = N` and takes node_io<T, N>. A node
// that adds a term to the loss (a VAE's KL) has `static constexpr bool adds_loss = true` and
// `double added_loss(const context&, const node_io<T>&) const`. Inference `forward` is const
// and touches no member state, so one model serves concurrent `predict` calls.
//
// Layers written against lamina 0.1's contract (forward(c, x, y, batch, ws), backward(c, x, y,
// dy, dx, batch, ws) overwriting dx, bind_parameters, plan; base class layer_base) still work:
// the model runs them through an adapter that accumulates through a temporary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/shape.hpp"
#include "../init/initializers.hpp"
#include "../network/graph.hpp"
#include "../network/node_io.hpp"
#include "../network/tensor_spec.hpp"

namespace lamina {

/// A node's slices of the model's flat buffers, one per tensor kind (null where it has none).
template <class T>
struct tensor_binding {
    T* parameters = nullptr;  // trainable, in tensor_specs() order
    T* gradients = nullptr;   // their gradients
    T* state = nullptr;       // running state, in tensor_specs() order
    T* frozen = nullptr;
};

/// Defaults for the descriptor side: accepts any shape, output equals input.
struct layer_descriptor_base {
    template <class In>
    static constexpr bool accepts = true;
    template <class In>
    using expected_input = In;
    template <class In>
    using output_shape = In;
};

/// Defaults for the runtime side of a node without tensors, workspace or saved state.
template <class Backend, class T>
class node_base {
public:
    using context = typename Backend::context;
    using io = node_io<T>;
    static constexpr std::size_t parameter_count = 0;
    static constexpr std::size_t state_count = 0;
    static constexpr double flops_per_sample = 0;
    static constexpr graph::leaf_traits traits{};
    std::vector<tensor_spec> tensor_specs() const { return {}; }
    void bind(const tensor_binding<T>&) {}
    std::size_t workspace_size(std::size_t) const { return 0; }
    std::size_t saved_bytes(std::size_t) const { return 0; }
};

/// Defaults for a layer written against lamina 0.1's contract (see the file comment).
template <class Backend, class T>
class layer_base {
public:
    using context = typename Backend::context;
    static constexpr std::size_t parameter_count = 0;
    static constexpr double flops_per_sample = 0;
    std::vector<parameter_spec> parameter_specs() const { return {}; }
    void bind_parameters(T*, T*) {}
    void plan(const context&, std::size_t) {}
    std::size_t workspace_size(std::size_t) const { return 0; }
};

}  // namespace lamina
