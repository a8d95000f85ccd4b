// lamina with the Kokkos backend: Kokkos_Core.hpp and the Kokkos kernels first, then every
// lamina header except the host backend's (this umbrella pulls in no host-backend kernels;
// include <lamina/lamina.hpp> as well if the same program also uses lamina::host).
//
//   #include <lamina/kokkos.hpp>
//   using backend = lamina::kokkos_backend<Kokkos::DefaultExecutionSpace>;
#pragma once

#include "backends/kokkos/kokkos_backend.hpp"

#include "framework.hpp"
