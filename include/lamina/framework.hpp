// lamina without any backend's kernels: shapes, layers, composites, networks, losses,
// optimizers, schedules, training, data and checkpoints. The umbrella headers include it after
// their backends: lamina.hpp (reference + host) and kokkos.hpp (the Kokkos backend).
#pragma once

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/shape.hpp"
#include "core/philox.hpp"
#include "core/thread_pool.hpp"
#include "core/tensor.hpp"

#include "layers/input.hpp"
#include "layers/dense.hpp"
#include "layers/conv2d.hpp"
#include "layers/conv_transpose2d.hpp"
#include "layers/pooling.hpp"
#include "layers/flatten.hpp"
#include "layers/dropout.hpp"
#include "layers/activations.hpp"
#include "layers/softmax.hpp"
#include "layers/batch_norm.hpp"
#include "layers/merge.hpp"
#include "layers/global_avg_pool.hpp"
#include "layers/shortcut.hpp"
#include "layers/layer_norm.hpp"
#include "layers/gaussian_noise.hpp"
#include "layers/upsample.hpp"
#include "layers/zero_pad.hpp"
#include "layers/vae_sampling.hpp"

#include "network/sequential.hpp"
#include "network/composites.hpp"
#include "network/fold_batch_norm.hpp"
#include "network/profiler.hpp"

#include "losses/softmax_cross_entropy.hpp"
#include "losses/mse.hpp"
#include "losses/mae.hpp"
#include "losses/per_output.hpp"
#include "losses/binary_cross_entropy.hpp"

#include "optimizers/sgd.hpp"
#include "optimizers/adam.hpp"
#include "optimizers/rmsprop.hpp"
#include "optimizers/adadelta.hpp"
#include "optimizers/lars.hpp"
#include "optimizers/lamb.hpp"

#include "schedules/schedules.hpp"
#include "schedules/cyclic.hpp"

#include "data/dataset.hpp"
#include "data/gzip_file.hpp"
#include "data/idx.hpp"
#include "data/image_transforms.hpp"
#include "data/synthetic_cells.hpp"
#include "data/synthetic_calorimeter.hpp"

#include "train/trainer.hpp"
#include "train/progress_bar.hpp"
#include "train/csv_log.hpp"
#include "train/snapshot_ensemble.hpp"
#include "train/collapsed_ensemble.hpp"
#include "io/checkpoint.hpp"

#include "models/resnet.hpp"
#include "models/mcnn.hpp"
#include "models/hep_cnn.hpp"
