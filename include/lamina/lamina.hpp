// lamina: header-only C++17 deep learning templates for HPC. Include this one header.
//
//   #include <lamina/lamina.hpp>
//   using net_t = lamina::sequential<lamina::input<784>, lamina::dense<128>, lamina::relu, lamina::dense<10>>;
//   net_t::model<lamina::host> net{lamina::seed{1}};
//
// Folders: core (tensors, shapes, RNG, threads), backends (host, reference), layers,
// network (composition, shape checks), init, losses, optimizers, schedules, train, data, io.
#pragma once

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/shape.hpp"
#include "core/philox.hpp"
#include "core/thread_pool.hpp"
#include "core/tensor.hpp"

#include "backends/reference/reference_backend.hpp"
#include "backends/host/host_backend.hpp"

#include "layers/input.hpp"
#include "layers/dense.hpp"
#include "layers/conv2d.hpp"
#include "layers/pooling.hpp"
#include "layers/flatten.hpp"
#include "layers/dropout.hpp"
#include "layers/activations.hpp"
#include "layers/softmax.hpp"

#include "network/sequential.hpp"

#include "losses/softmax_cross_entropy.hpp"
#include "losses/mse.hpp"
#include "losses/mae.hpp"

#include "optimizers/sgd.hpp"
#include "optimizers/adam.hpp"

#include "schedules/schedules.hpp"

#include "data/dataset.hpp"
#include "data/gzip_file.hpp"
#include "data/idx.hpp"

#include "train/trainer.hpp"
#include "train/progress_bar.hpp"
#include "train/csv_log.hpp"
#include "io/checkpoint.hpp"
