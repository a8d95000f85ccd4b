// The small real model the safetensors harness loads state_dicts into (tests/fuzz/fuzz_safetensors.cpp)
// and its seed corpus is made for (tests/fuzz/make_corpus_tensors.cpp): conv, batch norm and
// dense, so that parameters and running state are both loaded; PyTorch module names conv,
// bn, fc (io/pytorch_names.hpp).
#pragma once

#include <lamina/lamina.hpp>
#include <lamina/io/pytorch_names.hpp>

namespace lamina_fuzz {
namespace lm = lamina;
using tensor_net = lm::sequential<lm::input<1, 4, 4>, lm::conv2d<2, 3, 1, 1>, lm::batch_norm, lm::relu, lm::flatten,
                                  lm::dense<3>>;
using tensor_model = tensor_net::model<lm::reference>;
inline lm::io::pytorch_names tensor_model_names() { return lm::io::pytorch_names::modules({"conv", "bn", "fc"}); }
}  // namespace lamina_fuzz
