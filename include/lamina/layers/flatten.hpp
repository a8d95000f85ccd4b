// lamina: flatten (C, H, W) to a vector. NCHW is already contiguous per sample, so this
// is a copy in forward and backward (no reshaping of memory).
#pragma once

#include <string>

#include "layer_concept.hpp"

namespace lamina {

struct flatten : layer_descriptor_base {
    static std::string name() { return "flatten"; }
    template <class In>
    using output_shape = shape<In::size>;

    template <class In, class Backend, class T>
    class impl : public layer_base<Backend, T> {
    public:
        using context = typename Backend::context;
        void forward(const context& c, const T* x, T* y, std::size_t batch, T*) const {
            Backend::copy(c, y, x, batch * In::size);
        }
        void forward_train(const context& c, const T* x, T* y, std::size_t batch, T* ws, std::uint64_t) {
            forward(c, x, y, batch, ws);
        }
        void backward(const context& c, const T*, const T*, const T* dy, T* dx, std::size_t batch, T*) {
            if (dx) Backend::copy(c, dx, dy, batch * In::size);
        }
    };
};

}  // namespace lamina
