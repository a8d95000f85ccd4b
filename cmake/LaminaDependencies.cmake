# Finds lamina's dependencies and defines lamina::xsimd, a header-only target.
# xsimd 8.1's exported target links a library `xtl` that is neither needed nor installed on
# Debian 12, so we never link `xsimd` itself: we take its include directory.
include(GNUInstallDirs)
find_package(Threads REQUIRED)
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(ZLIB QUIET)
option(LAMINA_WITH_ZLIB "Read .gz data files through zlib (found: ${ZLIB_FOUND})" ${ZLIB_FOUND})
if(LAMINA_WITH_ZLIB AND NOT ZLIB_FOUND)
  message(FATAL_ERROR "LAMINA_WITH_ZLIB is ON but zlib was not found (Debian: apt-get install zlib1g-dev)")
endif()

if(NOT TARGET lamina::xsimd)
  find_package(xsimd 8 QUIET)
  if(TARGET xsimd)
    get_target_property(_lamina_xsimd_inc xsimd INTERFACE_INCLUDE_DIRECTORIES)
  else()
    find_path(_lamina_xsimd_inc xsimd/xsimd.hpp)
  endif()
  if(NOT _lamina_xsimd_inc)
    message(FATAL_ERROR "lamina needs xsimd 8 (Debian: apt-get install libxsimd-dev)")
  endif()
  add_library(lamina_xsimd INTERFACE)
  add_library(lamina::xsimd ALIAS lamina_xsimd)
  set_target_properties(lamina_xsimd PROPERTIES EXPORT_NAME xsimd)
  target_include_directories(lamina_xsimd SYSTEM INTERFACE $<BUILD_INTERFACE:${_lamina_xsimd_inc}>)
endif()

# nlohmann-json is optional and never linked into lamina::lamina: include/lamina/io/safetensors.hpp
# finds nlohmann-json's header with __has_include (only a call to its reader needs it). The switch
# decides whether lamina's own safetensors test, fuzz harness and libtorch checks use it;
# OFF makes them act as if it were absent (the test then reports itself skipped).
find_package(nlohmann_json 3 QUIET)
option(LAMINA_WITH_NLOHMANN_JSON "Build lamina's safetensors tests and tools with nlohmann-json (found: ${nlohmann_json_FOUND})"
  ${nlohmann_json_FOUND})
if(LAMINA_WITH_NLOHMANN_JSON AND NOT nlohmann_json_FOUND)
  message(FATAL_ERROR "LAMINA_WITH_NLOHMANN_JSON is ON but nlohmann-json was not found (Debian: apt-get install nlohmann-json3-dev)")
endif()

# HDF5 and libpng are optional and never linked into lamina::lamina: include/lamina/data/deepgalaxy_hdf5.hpp
# and include/lamina/io/image_writer.hpp use them only when LAMINA_WITH_HDF5 / LAMINA_WITH_PNG are
# defined. lamina::hdf5 and lamina::png (build-tree targets, not installed) define the switch and
# link the library for the tests and examples that want them; a consumer does the same itself.
# FindHDF5 compiles a C test program, so C is enabled when a C compiler exists (lamina is C++).
include(CheckLanguage)
check_language(C)
if(CMAKE_C_COMPILER)
  enable_language(C)
  find_package(HDF5 COMPONENTS C QUIET)
endif()
option(LAMINA_WITH_HDF5 "Read and write DeepGalaxy HDF5 files in lamina's tests and examples (found: ${HDF5_FOUND})"
  ${HDF5_FOUND})
if(LAMINA_WITH_HDF5 AND NOT HDF5_FOUND)
  message(FATAL_ERROR "LAMINA_WITH_HDF5 is ON but the HDF5 C library was not found (Debian: apt-get install libhdf5-dev)")
endif()
if(LAMINA_WITH_HDF5 AND NOT TARGET lamina::hdf5)
  add_library(lamina_hdf5 INTERFACE)
  add_library(lamina::hdf5 ALIAS lamina_hdf5)
  target_include_directories(lamina_hdf5 SYSTEM INTERFACE ${HDF5_C_INCLUDE_DIRS} ${HDF5_INCLUDE_DIRS})
  target_link_libraries(lamina_hdf5 INTERFACE ${HDF5_C_LIBRARIES})
  target_compile_definitions(lamina_hdf5 INTERFACE LAMINA_WITH_HDF5 ${HDF5_DEFINITIONS})
endif()
find_package(PNG QUIET)
option(LAMINA_WITH_PNG "Write PNG pictures in lamina's examples (found: ${PNG_FOUND}; PGM otherwise)" ${PNG_FOUND})
if(LAMINA_WITH_PNG AND NOT PNG_FOUND)
  message(FATAL_ERROR "LAMINA_WITH_PNG is ON but libpng was not found (Debian: apt-get install libpng-dev)")
endif()
if(LAMINA_WITH_PNG AND NOT TARGET lamina::png)
  add_library(lamina_png INTERFACE)
  add_library(lamina::png ALIAS lamina_png)
  target_link_libraries(lamina_png INTERFACE PNG::PNG)
  target_compile_definitions(lamina_png INTERFACE LAMINA_WITH_PNG)
endif()
