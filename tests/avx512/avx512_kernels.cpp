// Compiled (not run) by the avx512_compile test with -mavx512f: every host kernel, float and
// double, and a small network's training step, so an AVX-512 build of lamina's kernels is
// known to compile (xsimd picks its avx512f batches from the compiler's target flags).
#include <lamina/lamina.hpp>

#if !defined(__AVX512F__)
#error "avx512_kernels.cpp must be compiled with -mavx512f"
#endif

namespace lm = lamina;

template <class T>
void all_host_kernels(const lm::host::context& c, T* a, T* b, T* y, T* z, std::int32_t* idx, std::size_t n) {
    using H = lm::host;
    H::fill(c, a, n, T(1));
    H::copy(c, b, a, n);
    H::axpy(c, n, T(2), a, b);
    H::scale(c, n, T(3), b);
    H::multiply(c, n, a, b, y);
    (void)H::sum(c, y, n);
    H::argmax_rows(c, y, idx, n / 8, std::size_t(8));
    H::add_channel_bias(c, y, a, n / 8, std::size_t(8), std::size_t(1));
    H::add_channel_bias(c, y, a, n / 16, std::size_t(4), std::size_t(4));
    H::channel_bias_grad(c, y, z, n / 8, std::size_t(8), std::size_t(1));
    H::channel_bias_grad(c, y, z, n / 16, std::size_t(4), std::size_t(4));
    for (auto ta : {lm::transpose::no, lm::transpose::yes})
        for (auto tb : {lm::transpose::no, lm::transpose::yes}) {
            H::gemm(c, ta, tb, 16, 16, 16, T(1), a, 16, b, 16, T(0), y, 16);
            H::gemm_bias_act(c, ta, tb, 16, 16, 16, T(1), a, 16, b, 16, T(0), y, 16, z,
                             lm::activation{lm::activation_kind::relu, 0.0});
        }
    for (auto k : {lm::activation_kind::identity, lm::activation_kind::relu, lm::activation_kind::leaky_relu,
                   lm::activation_kind::sigmoid, lm::activation_kind::tanh, lm::activation_kind::gelu}) {
        H::activation_forward(c, lm::activation{k, 0.1}, a, y, n);
        H::activation_backward(c, lm::activation{k, 0.1}, a, y, b, z, n);
    }
    H::softmax_forward(c, a, y, n / 8, std::size_t(8));
    H::softmax_backward(c, y, b, z, n / 8, std::size_t(8));
    H::softmax_cross_entropy(c, a, b, y, z, n / 8, std::size_t(8), T(0.1), T(1));
    H::mse(c, a, b, y, z, n / 8, std::size_t(8), T(1));
    H::mae(c, a, b, y, z, n / 8, std::size_t(8), T(1));
    lm::sgd_step<T> sgd{};
    H::sgd_update(c, a, b, y, n, sgd);
    lm::adam_step<T> adam{};
    H::adam_update(c, a, b, y, z, n, adam);
    H::dropout_forward(c, a, y, z, n, T(0.5), lm::random_stream{1, 2});
}

template void all_host_kernels<float>(const lm::host::context&, float*, float*, float*, float*, std::int32_t*,
                                      std::size_t);
template void all_host_kernels<double>(const lm::host::context&, double*, double*, double*, double*, std::int32_t*,
                                       std::size_t);

using lenet5 = lm::sequential<lm::input<1, 28, 28>, lm::conv2d<6, 5>, lm::relu, lm::max_pool<2>, lm::conv2d<16, 5>,
                              lm::relu, lm::avg_pool<2>, lm::flatten, lm::dense<120>, lm::gelu, lm::dense<84>,
                              lm::tanh_layer, lm::dense<10>>;

double train_lenet_step(const lm::dataset<float>& d, const std::size_t* idx, std::size_t count) {
    typename lenet5::template model<lm::host> net{lm::seed{1}, lm::threads{2}};
    lm::trainer fit{net, lm::loss::softmax_cross_entropy{}, lm::optim::adam{1e-3}};
    return fit.train_batch(d, idx, count, 1e-3);
}
