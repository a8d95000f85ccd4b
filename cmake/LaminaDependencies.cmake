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
