// lamina: softmax cross-entropy on logits, optionally with label smoothing. Targets are
// class indices (one value per sample). The loss is the batch mean; its gradient is written
// into the model's output-gradient buffer.
#pragma once

#include <string>

#include "../core/error.hpp"

namespace lamina::loss {

struct softmax_cross_entropy {
    double label_smoothing = 0.0;

    static constexpr bool classification = true;
    static std::string name() { return "softmax_cross_entropy"; }
    static constexpr std::size_t target_size(std::size_t /*outputs*/) { return 1; }

    /// Mean loss over the batch; grad = d(mean loss)/d(logits). loss_rows: `rows` scratch.
    template <class Backend, class T>
    T operator()(const typename Backend::context& c, const T* logits, const T* targets, T* grad, T* loss_rows,
                 std::size_t rows, std::size_t cols) const {
        if (label_smoothing < 0.0 || label_smoothing >= 1.0)
            throw argument_error("lamina: label_smoothing must be in [0, 1), got " + std::to_string(label_smoothing));
        Backend::softmax_cross_entropy(c, logits, targets, grad, loss_rows, rows, cols, static_cast<T>(label_smoothing),
                                       T(1) / static_cast<T>(rows));
        return Backend::sum(c, static_cast<const T*>(loss_rows), rows) / static_cast<T>(rows);
    }
};

}  // namespace lamina::loss
