// lamina: binary cross-entropy on logits (PyTorch's BCEWithLogitsLoss, reduction "mean"):
// per output, loss = -(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))) for a target t in
// [0, 1] of the output's size, averaged over outputs and the batch. Computed in PyTorch's
// numerically stable form (1 - t) x - log_sigmoid(x), log_sigmoid(x) = min(x, 0) -
// log1p(exp(-|x|)), so large |x| neither overflows nor loses the loss; NaN propagates to the
// loss and the gradient, and infinities give what PyTorch's form gives. The gradient is
// (sigmoid(x) - t) / (outputs * batch).
//
// Written once for every backend: one Backend::for_each_index over the rows (each writes its
// gradient row and its row loss), then Backend::sum over the row losses.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include "../core/config.hpp"

namespace lamina::loss {

namespace bce_detail {
/// log(sigmoid(x)) without overflow for either sign of x.
template <class T>
LAMINA_HOST_DEVICE T log_sigmoid(T x) {
    const T neg_abs = x < T(0) ? x : -x;  // -|x|; NaN stays NaN
    return (x < T(0) ? x : T(0)) - std::log1p(std::exp(neg_abs));
}
/// sigmoid(x) without overflow: exp of a non-positive argument on both branches (NaN takes the
/// second branch and stays NaN).
template <class T>
LAMINA_HOST_DEVICE T sigmoid(T x) {
    if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
    const T e = std::exp(x);
    return e / (T(1) + e);
}
}  // namespace bce_detail

struct binary_cross_entropy_with_logits {
    static constexpr bool classification = false;
    static std::string name() { return "binary_cross_entropy_with_logits"; }
    static constexpr std::size_t target_size(std::size_t outputs) { return outputs; }

    /// Mean loss over outputs and the batch; grad = d(mean loss)/d(logits). loss_rows: `rows`
    /// scratch, receives each row's mean over its outputs.
    template <class Backend, class T>
    T operator()(const typename Backend::context& c, const T* logits, const T* targets, T* grad, T* loss_rows,
                 std::size_t rows, std::size_t cols) const {
        const T grad_scale = T(1) / (static_cast<T>(cols) * static_cast<T>(rows));
        const double inv_cols = 1.0 / static_cast<double>(cols);
        Backend::for_each_index(
            c, rows,
            LAMINA_LAMBDA(std::size_t r) {
                double loss = 0;  // the row's sum, in double
                for (std::size_t k = 0; k < cols; ++k) {
                    const std::size_t i = r * cols + k;
                    const T x = logits[i], t = targets[i];
                    loss += static_cast<double>((T(1) - t) * x - bce_detail::log_sigmoid(x));
                    grad[i] = (bce_detail::sigmoid(x) - t) * grad_scale;
                }
                loss_rows[r] = static_cast<T>(loss * inv_cols);
            },
            30 * cols);
        return Backend::sum(c, static_cast<const T*>(loss_rows), rows) / static_cast<T>(rows);
    }
};

}  // namespace lamina::loss
