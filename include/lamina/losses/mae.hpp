// lamina: mean absolute error, averaged over outputs and the batch (PyTorch's L1Loss);
// DeepGalaxy's autoencoder loss.
#pragma once

#include <string>

namespace lamina::loss {

struct mae {
    static constexpr bool classification = false;
    static std::string name() { return "mae"; }
    static constexpr std::size_t target_size(std::size_t outputs) { return outputs; }

    template <class Backend, class T>
    T operator()(const typename Backend::context& c, const T* pred, const T* targets, T* grad, T* loss_rows,
                 std::size_t rows, std::size_t cols) const {
        Backend::mae(c, pred, targets, grad, loss_rows, rows, cols, T(1) / static_cast<T>(rows));
        return Backend::sum(c, static_cast<const T*>(loss_rows), rows) / static_cast<T>(rows);
    }
};

}  // namespace lamina::loss
