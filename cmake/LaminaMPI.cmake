# lamina's optional MPI communicator (include/lamina/communicators/mpi.hpp). Included from the
# top-level CMakeLists.txt after the `lamina` target exists:
#
#   LAMINA_WITH_MPI  ON by default when lamina is the top-level project and find_package(MPI)
#                    finds MPI for C++ (Debian: libopenmpi-dev openmpi-bin); lamina without MPI
#                    is unchanged.
#   lamina::mpi      INTERFACE target for lamina's own tests, examples and benchmarks:
#                    lamina::lamina + MPI::MPI_CXX. Not installed: the communicator is headers
#                    only, and a project using an installed lamina links its own MPI.
#
# MPIEXEC_EXECUTABLE, MPIEXEC_NUMPROC_FLAG, MPIEXEC_PREFLAGS and MPIEXEC_POSTFLAGS (from
# FindMPI) are what tests/mpi/CMakeLists.txt runs its tests with.

if(NOT DEFINED LAMINA_WITH_MPI AND NOT LAMINA_IS_TOP_LEVEL)
  # lamina::mpi serves lamina's own targets: a project that adds lamina as a subdirectory is
  # not probed for MPI unless it asks (-DLAMINA_WITH_MPI=ON).
  set(_lamina_mpi_default OFF)
elseif(NOT DEFINED LAMINA_WITH_MPI)
  find_package(MPI QUIET COMPONENTS CXX)
  if(MPI_CXX_FOUND)
    message(STATUS "lamina: MPI ${MPI_CXX_VERSION} found (${MPIEXEC_EXECUTABLE}): MPI communicator ON")
  else()
    message(STATUS "lamina: MPI not found: MPI communicator OFF (scripts/setup.sh installs Open MPI)")
  endif()
  set(_lamina_mpi_default ${MPI_CXX_FOUND})
else()
  set(_lamina_mpi_default ${LAMINA_WITH_MPI})
endif()
option(LAMINA_WITH_MPI "Build lamina's MPI communicator targets, tests, examples and benchmarks" ${_lamina_mpi_default})

if(LAMINA_WITH_MPI)
  if(NOT MPI_CXX_FOUND)
    find_package(MPI REQUIRED COMPONENTS CXX)
  endif()
  add_library(lamina_mpi INTERFACE)
  add_library(lamina::mpi ALIAS lamina_mpi)
  target_link_libraries(lamina_mpi INTERFACE lamina::lamina MPI::MPI_CXX)
  # lamina uses MPI's C API; the C++ bindings (deleted in MPI-3, still in Open MPI's mpi.h)
  # only add -Wextra warnings.
  target_compile_definitions(lamina_mpi INTERFACE OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
endif()
