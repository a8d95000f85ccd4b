# lamina's optional Kokkos backend (include/lamina/backends/kokkos). Included from the top-level
# CMakeLists.txt after the `lamina` target exists:
#
#   LAMINA_WITH_KOKKOS  ON by default when find_package(Kokkos) succeeds (Kokkos_ROOT or
#                       CMAKE_PREFIX_PATH pick an install); lamina stays usable without Kokkos.
#   lamina::kokkos      INTERFACE target: lamina::lamina + Kokkos (headers, libraries, flags).
#
# Accepts a proper Kokkos 3.x/4.x install whose Kokkos::kokkos target works, and Debian 12's
# libtrilinos-kokkos-dev (Kokkos 3.4.1, Serial only), whose Kokkos::kokkos target points at a
# missing include folder (/usr/lib/include) and would stop CMake: then an INTERFACE target is
# built from Kokkos_INCLUDE_DIRS / Kokkos_LIBRARIES instead. lamina never initialises Kokkos.

# Kokkos warns when CMAKE_CXX_EXTENSIONS is not OFF; lamina's Kokkos targets set
# CXX_EXTENSIONS OFF themselves, and the global setting is left as the project has it.
macro(_lamina_find_kokkos)
  if(DEFINED CMAKE_CXX_EXTENSIONS)
    set(_lamina_saved_ext ${CMAKE_CXX_EXTENSIONS})
  else()
    unset(_lamina_saved_ext)
  endif()
  set(CMAKE_CXX_EXTENSIONS OFF)
  find_package(Kokkos CONFIG ${ARGN})
  if(DEFINED _lamina_saved_ext)
    set(CMAKE_CXX_EXTENSIONS ${_lamina_saved_ext})
  else()
    unset(CMAKE_CXX_EXTENSIONS)
  endif()
endmacro()

if(NOT DEFINED LAMINA_WITH_KOKKOS)
  _lamina_find_kokkos(QUIET)
  if(Kokkos_FOUND)
    message(STATUS "lamina: Kokkos ${Kokkos_VERSION} found (${Kokkos_DIR}): Kokkos backend ON")
  else()
    message(STATUS "lamina: Kokkos not found: Kokkos backend OFF (set Kokkos_ROOT to enable)")
  endif()
  set(_lamina_kokkos_default ${Kokkos_FOUND})
else()
  set(_lamina_kokkos_default ${LAMINA_WITH_KOKKOS})
endif()
option(LAMINA_WITH_KOKKOS "Build lamina's Kokkos backend targets, tests and examples" ${_lamina_kokkos_default})

if(LAMINA_WITH_KOKKOS)
  if(NOT Kokkos_FOUND)
    _lamina_find_kokkos(REQUIRED)
  endif()

  # Does the exported Kokkos::kokkos target point at include folders that exist?
  set(_lamina_kokkos_target_ok OFF)
  if(TARGET Kokkos::kokkos)
    set(_lamina_kokkos_target_ok ON)
    get_target_property(_lamina_kokkos_inc Kokkos::kokkos INTERFACE_INCLUDE_DIRECTORIES)
    if(_lamina_kokkos_inc)
      foreach(_dir IN LISTS _lamina_kokkos_inc)
        if(NOT _dir MATCHES "^\\$<" AND NOT EXISTS "${_dir}")
          set(_lamina_kokkos_target_ok OFF)
        endif()
      endforeach()
    endif()
  endif()

  add_library(lamina_kokkos INTERFACE)
  add_library(lamina::kokkos ALIAS lamina_kokkos)
  target_link_libraries(lamina_kokkos INTERFACE lamina::lamina)
  if(_lamina_kokkos_target_ok)
    target_link_libraries(lamina_kokkos INTERFACE Kokkos::kokkos)
  else()
    if(NOT Kokkos_INCLUDE_DIRS)
      message(FATAL_ERROR "lamina: Kokkos::kokkos is unusable and Kokkos_INCLUDE_DIRS is empty (${Kokkos_DIR})")
    endif()
    message(STATUS "lamina: Kokkos::kokkos points at a missing include folder; "
                   "using Kokkos_INCLUDE_DIRS (${Kokkos_INCLUDE_DIRS}) and Kokkos_LIBRARIES instead")
    target_include_directories(lamina_kokkos SYSTEM INTERFACE ${Kokkos_INCLUDE_DIRS} ${Kokkos_TPL_INCLUDE_DIRS})
    target_link_libraries(lamina_kokkos INTERFACE ${Kokkos_LIBRARIES} ${Kokkos_TPL_LIBRARIES})
  endif()
  target_compile_features(lamina_kokkos INTERFACE cxx_std_17)

  # CUDA-enabled Kokkos: its targets compile through nvcc_wrapper (kokkos_launch_compiler), which
  # already adds -extended-lambda and the -arch flag. Host-only calls inside kernels are only
  # warnings by default; make them errors so a CUDA compile check catches them (see
  # scripts/check_kokkos_cuda.sh). Plain g++ rejects this flag, so only when Kokkos has CUDA.
  # EIGEN_NO_CUDA: lamina uses Eigen on the host only; without it nvcc compiles Eigen's CUDA
  # paths and Eigen's own headers warn (#20015-D, constexpr host calls in std::complex ops).
  if("CUDA" IN_LIST Kokkos_DEVICES)
    set(LAMINA_KOKKOS_HAS_CUDA ON)
    message(STATUS "lamina: Kokkos has CUDA: adding -Werror=cross-execution-space-call")
    target_compile_options(lamina_kokkos INTERFACE
      $<$<COMPILE_LANGUAGE:CXX>:-Werror=cross-execution-space-call>)
    target_compile_definitions(lamina_kokkos INTERFACE EIGEN_NO_CUDA)
  else()
    set(LAMINA_KOKKOS_HAS_CUDA OFF)
  endif()

  # KokkosKernels: the Kokkos backend's GEMM goes through KokkosBlas::gemm (and so the vendor
  # BLAS KokkosKernels was built with) when a KokkosKernels built against this same Kokkos is
  # found: same install prefix as Kokkos (Debian's libtrilinos-kokkos-kernels-dev next to
  # libtrilinos-kokkos-dev). A KokkosKernels of another Kokkos (e.g. Debian's beside an OpenMP
  # Kokkos built from source) would not link against it: then lamina's own GEMM runs.
  if(NOT DEFINED LAMINA_WITH_KOKKOSKERNELS OR LAMINA_WITH_KOKKOSKERNELS)
    find_package(KokkosKernels CONFIG QUIET)
    set(_lamina_kk_ok OFF)
    if(KokkosKernels_FOUND)
      get_filename_component(_lamina_kk_parent "${KokkosKernels_DIR}" DIRECTORY)
      get_filename_component(_lamina_kokkos_parent "${Kokkos_DIR}" DIRECTORY)
      if(_lamina_kk_parent STREQUAL _lamina_kokkos_parent)
        set(_lamina_kk_ok ON)
      else()
        message(STATUS "lamina: KokkosKernels (${KokkosKernels_DIR}) belongs to another Kokkos than "
                       "${Kokkos_DIR}: not used")
      endif()
    endif()
    if(DEFINED LAMINA_WITH_KOKKOSKERNELS AND LAMINA_WITH_KOKKOSKERNELS AND NOT _lamina_kk_ok)
      message(FATAL_ERROR "lamina: LAMINA_WITH_KOKKOSKERNELS=ON but no KokkosKernels matching ${Kokkos_DIR} was found")
    endif()
  endif()
  option(LAMINA_WITH_KOKKOSKERNELS "Route the Kokkos backend's GEMM to KokkosBlas::gemm" ${_lamina_kk_ok})
  if(LAMINA_WITH_KOKKOSKERNELS)
    # As with Kokkos, Debian's exported targets point at include folders that may not exist:
    # use the variables the package configuration sets.
    find_library(LAMINA_KOKKOSKERNELS_LIBRARY NAMES kokkoskernels trilinos_kokkoskernels
                 HINTS "${KokkosKernels_DIR}/../.." "${KokkosKernels_DIR}/../../.." NO_DEFAULT_PATH)
    if(NOT LAMINA_KOKKOSKERNELS_LIBRARY)
      find_library(LAMINA_KOKKOSKERNELS_LIBRARY NAMES kokkoskernels trilinos_kokkoskernels)
    endif()
    if(NOT LAMINA_KOKKOSKERNELS_LIBRARY)
      message(FATAL_ERROR "lamina: KokkosKernels found (${KokkosKernels_DIR}) but not its library")
    endif()
    message(STATUS "lamina: KokkosKernels (${LAMINA_KOKKOSKERNELS_LIBRARY}): "
                   "Kokkos backend GEMM through KokkosBlas::gemm")
    target_include_directories(lamina_kokkos SYSTEM INTERFACE ${KokkosKernels_INCLUDE_DIRS} ${KokkosKernels_TPL_INCLUDE_DIRS})
    target_link_libraries(lamina_kokkos INTERFACE ${LAMINA_KOKKOSKERNELS_LIBRARY} ${KokkosKernels_TPL_LIBRARIES})
    target_compile_definitions(lamina_kokkos INTERFACE LAMINA_WITH_KOKKOSKERNELS)
  endif()
endif()
