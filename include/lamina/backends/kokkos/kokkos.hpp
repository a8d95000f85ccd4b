// lamina with the Kokkos backend: Kokkos_Core.hpp and the Kokkos kernels first, then every
// lamina header except the host backend's (this umbrella pulls in no host-backend kernels;
// include <lamina/lamina.hpp> as well if the same program also uses lamina::host).
//
//   #include <lamina/backends/kokkos/kokkos.hpp>
//   using backend = lamina::kokkos_backend<Kokkos::DefaultExecutionSpace>;
#pragma once

#include "kokkos_backend.hpp"

#include "../../core/config.hpp"
#include "../../core/error.hpp"
#include "../../core/shape.hpp"
#include "../../core/philox.hpp"
#include "../../core/tensor.hpp"
#include "../../layers/input.hpp"
#include "../../layers/dense.hpp"
#include "../../layers/conv2d.hpp"
#include "../../layers/pooling.hpp"
#include "../../layers/flatten.hpp"
#include "../../layers/dropout.hpp"
#include "../../layers/activations.hpp"
#include "../../layers/softmax.hpp"
#include "../../network/sequential.hpp"
#include "../../losses/softmax_cross_entropy.hpp"
#include "../../losses/mse.hpp"
#include "../../losses/mae.hpp"
#include "../../optimizers/sgd.hpp"
#include "../../optimizers/adam.hpp"
#include "../../schedules/schedules.hpp"
#include "../../data/dataset.hpp"
#include "../../data/idx.hpp"
#include "../../train/trainer.hpp"
#include "../../train/progress_bar.hpp"
#include "../../train/csv_log.hpp"
#include "../../io/checkpoint.hpp"
