// lamina: header-only C++17 deep learning templates for HPC. Include this one header.
//
//   #include <lamina/lamina.hpp>
//   using net_t = lamina::sequential<lamina::input<784>, lamina::dense<128>, lamina::relu, lamina::dense<10>>;
//   net_t::model<lamina::host> net{lamina::seed{1}};
//
// Folders: core (tensors, shapes, RNG, threads), backends (host, reference, kokkos), layers,
// network (nodes, composites, graph, memory plan, the model), init, losses, optimizers,
// schedules, train, data, io, models. With Kokkos include <lamina/kokkos.hpp> instead (or first).
#pragma once

#include "core/config.hpp"
#include "backends/reference/reference_backend.hpp"
#include "backends/host/host_backend.hpp"

#include "framework.hpp"
