// lamina: one pass's resolution of a memory plan into pointers (the arena, the caller's
// input, input-gradient and output buffers), plus the shared workspace and the optional
// per-node profiler. Leaves build their node_io from it by their index.
#pragma once

#include <array>
#include <cstddef>

#include "memory_plan.hpp"

namespace lamina {

class node_profiler;

template <class T>
struct exec {
    const graph::memory_plan* plan = nullptr;
    std::array<T*, graph::space_count> base{};  // by graph::space; base[space_none] stays null
    T* workspace = nullptr;
    std::size_t batch = 0;                     // this pass's batch (at most plan->batch)
    node_profiler* profiler = nullptr;         // null: not profiling (the default, no cost)
    bool accumulate_input_gradient = false;    // backward adds into the caller's input-gradient buffer

    T* at(const graph::ref& r) const noexcept {
        T* b = base[r.space];
        return b ? b + r.offset : nullptr;
    }
};

}  // namespace lamina
