// lamina: where each parameter tensor lives in a network's flat parameter buffer.
// One contiguous buffer for all parameters (and one for all gradients) makes the optimizer
// a handful of kernel calls, a checkpoint one write, and a gradient allreduce one message.
#pragma once

#include <cstddef>
#include <string>

namespace lamina {

struct parameter_segment {
    std::string name;        // e.g. "3:dense<120>.weight"
    std::size_t layer = 0;   // index in the network's layer list
    std::size_t offset = 0;  // first element in the flat buffer
    std::size_t count = 0;
    bool decay = true;       // weight decay applies
};

}  // namespace lamina
