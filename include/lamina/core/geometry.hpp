// lamina: runtime descriptions of convolution and pooling problems handed to kernels.
// Layouts are NCHW for activations and KCRS (PyTorch's OIHW) for convolution weights.
#pragma once

#include <cstddef>

namespace lamina {

struct conv_geometry {
    std::size_t n = 0;               // batch
    std::size_t c = 0, h = 0, w = 0; // input channels, height, width
    std::size_t k = 0;               // output channels
    std::size_t r = 0, s = 0;        // kernel height, width
    std::size_t stride_h = 1, stride_w = 1;
    std::size_t pad_h = 0, pad_w = 0;
    std::size_t p = 0, q = 0;        // output height, width
    std::size_t dilation_h = 1, dilation_w = 1;  // spacing of the kernel taps (1: adjacent)
    // Channels and filters split into `groups` equal parts; filter k sees only the c/groups
    // channels of its group k / (k/groups). Weights are [K][C/groups][R][S] as in PyTorch.
    std::size_t groups = 1;

    /// (in + 2 pad - dilation (kernel - 1) - 1) / stride + 1, PyTorch's Conv2d rule.
    static constexpr std::size_t out_extent(std::size_t in, std::size_t kernel, std::size_t stride, std::size_t pad,
                                            std::size_t dilation = 1) {
        return (in + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
    }
    constexpr std::size_t input_size() const { return n * c * h * w; }
    constexpr std::size_t output_size() const { return n * k * p * q; }
    constexpr std::size_t weight_size() const { return k * (c / groups) * r * s; }
    constexpr std::size_t group_channels() const { return c / groups; }
    constexpr std::size_t group_filters() const { return k / groups; }
    /// No groups and no dilation: the plain convolution every fast kernel serves.
    constexpr bool plain() const { return groups == 1 && dilation_h == 1 && dilation_w == 1; }
};

/// Compile-time shape of one convolution layer (square stride, padding and dilation), passed
/// by the conv layers as a trailing tag argument so that a backend can pick and specialise
/// its kernel per layer at compile time (the runtime conv_geometry is passed as well).
template <std::size_t C, std::size_t H, std::size_t W, std::size_t K, std::size_t R, std::size_t S,
          std::size_t Stride, std::size_t Pad, std::size_t Dilation = 1, std::size_t Groups = 1>
struct conv_shape {
    static constexpr std::size_t c = C, h = H, w = W, k = K, r = R, s = S, stride = Stride, pad = Pad,
                                 dilation = Dilation, groups = Groups;
    static constexpr std::size_t p = conv_geometry::out_extent(H, R, Stride, Pad, Dilation);
    static constexpr std::size_t q = conv_geometry::out_extent(W, S, Stride, Pad, Dilation);
    static constexpr bool plain = Dilation == 1 && Groups == 1;
    static constexpr bool pointwise = R == 1 && S == 1 && Stride == 1 && Pad == 0;
};

struct pool_geometry {
    std::size_t n = 0, c = 0, h = 0, w = 0;
    std::size_t kh = 1, kw = 1;
    std::size_t stride_h = 1, stride_w = 1;
    std::size_t pad_h = 0, pad_w = 0;
    std::size_t p = 0, q = 0;

    constexpr std::size_t input_size() const { return n * c * h * w; }
    constexpr std::size_t output_size() const { return n * c * p * q; }
};

/// Parameters of one SGD step (PyTorch semantics: L2 weight decay added to the gradient,
/// velocity v = momentum * v + g, Nesterov uses g + momentum * v).
template <class T>
struct sgd_step {
    T lr = T(0.01), momentum = T(0), weight_decay = T(0);
    bool nesterov = false;
};

/// Parameters of one Adam/AdamW step. bias_correction1/2 are 1 - beta^t, computed on the
/// host once per step. decoupled = AdamW (w -= lr * wd * w before the Adam update).
template <class T>
struct adam_step {
    T lr = T(1e-3), beta1 = T(0.9), beta2 = T(0.999), eps = T(1e-8), weight_decay = T(0);
    T bias_correction1 = T(1), bias_correction2 = T(1);
    bool decoupled = false;
};

enum class transpose { no, yes };

}  // namespace lamina
