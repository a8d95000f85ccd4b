// LeNet-5 as the MNIST examples use it (the flagship examples/mnist_lenet, its Kokkos twin and
// examples/distributed_mnist): the paper's layer table with ReLU, max-pooling and He init.
#pragma once

#include <lamina/framework.hpp>

using lenet5 = lamina::sequential<
    lamina::input<1, 28, 28>,
    lamina::conv2d<6, 5, 1, 0, lamina::init::he_uniform>, lamina::relu, lamina::max_pool<2>,
    lamina::conv2d<16, 5, 1, 0, lamina::init::he_uniform>, lamina::relu, lamina::max_pool<2>,
    lamina::flatten,
    lamina::dense<120, lamina::init::he_uniform>, lamina::relu,
    lamina::dense<84, lamina::init::he_uniform>, lamina::relu,
    lamina::dense<10>>;
