// The small real model the checkpoint harness loads into (tests/fuzz/fuzz_checkpoint.cpp) and
// the seed corpus is made for (tests/fuzz/make_corpus.cpp): 119 parameters, so that a whole
// checkpoint with Adam state fits in libFuzzer's default input size.
#pragma once

#include <lamina/lamina.hpp>

namespace lamina_fuzz {
namespace lm = lamina;
using net = lm::sequential<lm::input<1, 4, 4>, lm::conv2d<2, 3, 1, 1>, lm::relu, lm::flatten, lm::dense<3>>;
using model = net::model<lm::host>;
using sgd_trainer = lm::trainer<model, lm::loss::softmax_cross_entropy, lm::optim::sgd>;
using adamw_trainer = lm::trainer<model, lm::loss::softmax_cross_entropy, lm::optim::adamw>;
}  // namespace lamina_fuzz
