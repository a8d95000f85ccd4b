// lamina: what a layer is. Read this to write your own layer (tests/test_custom_layer.cpp
// defines one outside the lamina namespace and trains through it).
//
// A layer is a *descriptor* type, the thing users list in a network:
//
//   struct my_layer {
//       static std::string name();                               // for summaries
//       template <class In> static constexpr bool accepts = ...; // may it take shape In?
//       template <class In> using expected_input = ...;          // shown when it may not
//       template <class In> using output_shape = ...;            // compile-time shape rule
//       template <class In, class Backend, class T> class impl;  // the runtime layer
//   };
//
// and `impl<In, Backend, T>` is the runtime part, written once for every backend because
// it only calls Backend's kernels (never dereferences device pointers):
//
//   static constexpr std::size_t parameter_count;   // scalars in the network's flat buffer
//   static constexpr double flops_per_sample;       // forward FLOPs of one sample
//   std::vector<parameter_spec> parameter_specs() const;      // how to initialise them
//   void bind_parameters(T* weights, T* gradients);           // device pointers into flat buffers
//   void plan(const context&, std::size_t batch);             // allocate per-batch state
//   std::size_t workspace_size(std::size_t batch) const;      // scratch T elements it needs
//   void forward(const context&, const T* x, T* y, std::size_t batch, T* ws) const;  // inference
//   void forward_train(const context&, const T* x, T* y, std::size_t batch, T* ws, std::uint64_t step);
//   void backward(const context&, const T* x, const T* y, const T* dy, T* dx,
//                 std::size_t batch, T* ws);  // dx may be null; overwrites parameter gradients
//
// Inference `forward` is const and touches no member state, so one model serves concurrent
// `predict` calls. `layer_base` supplies the defaults of a parameter-free, stateless layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/shape.hpp"
#include "../init/initializers.hpp"

namespace lamina {

/// One parameter tensor of a layer: its size, fans for initialisation, and whether weight
/// decay applies (biases and normalisation parameters are usually excluded).
struct parameter_spec {
    std::string name;
    std::size_t count = 0;
    std::size_t fan_in = 0, fan_out = 0;
    init::kind init = init::kind::zeros;
    bool decay = true;
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

/// Defaults for the runtime side of a layer without parameters, state or workspace.
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
