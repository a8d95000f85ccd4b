# avx512_compile: compiles tests/avx512/avx512_kernels.cpp (every host kernel, float and
# double, and a network's training step) with -mavx512f to an object file, with lamina's include
# directories and definitions and -Wall -Wextra -Wpedantic -Werror. Nothing is run, so the
# machine need not have AVX-512. When the compiler cannot target AVX-512 at all (checked at
# configure time), the test is registered but disabled (ctest reports it as not run).
include(CheckCXXSourceCompiles)
set(_lamina_saved_flags "${CMAKE_REQUIRED_FLAGS}")
set(CMAKE_REQUIRED_FLAGS "-mavx512f -mfma")
check_cxx_source_compiles("#include <immintrin.h>
int main() { return _mm512_reduce_add_epi32(_mm512_set1_epi32(1)) == 16 ? 0 : 1; }" LAMINA_COMPILER_HAS_AVX512F)
set(CMAKE_REQUIRED_FLAGS "${_lamina_saved_flags}")
# lamina's own headers with -I (warnings there fail the test), third-party ones (Eigen) with
# -isystem; /usr/include is left out (already a system directory; -isystem there breaks
# libstdc++'s #include_next).
set(_lamina_avx512_incs "$<TARGET_PROPERTY:lamina,INTERFACE_INCLUDE_DIRECTORIES>")
set(_lamina_avx512_own "$<FILTER:${_lamina_avx512_incs},INCLUDE,^${PROJECT_SOURCE_DIR}/>")
set(_lamina_avx512_sys "$<FILTER:$<FILTER:${_lamina_avx512_incs},EXCLUDE,^${PROJECT_SOURCE_DIR}/>,EXCLUDE,^/usr/include/?$>")
set(_lamina_avx512_flags ${CMAKE_CURRENT_BINARY_DIR}/avx512_flags_$<CONFIG>.txt)
file(GENERATE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/avx512_flags_$<CONFIG>.txt CONTENT
"$<$<BOOL:${_lamina_avx512_own}>:-I$<JOIN:$<REMOVE_DUPLICATES:${_lamina_avx512_own}>,\n-I>>
$<$<BOOL:${_lamina_avx512_sys}>:-isystem\n$<JOIN:$<REMOVE_DUPLICATES:${_lamina_avx512_sys}>,\n-isystem\n>>
$<$<BOOL:$<TARGET_PROPERTY:lamina,INTERFACE_COMPILE_DEFINITIONS>>:-D$<JOIN:$<REMOVE_DUPLICATES:$<TARGET_PROPERTY:lamina,INTERFACE_COMPILE_DEFINITIONS>>,\n-D>>
$<JOIN:$<TARGET_PROPERTY:lamina,INTERFACE_COMPILE_OPTIONS>,\n>
")
add_test(NAME avx512_compile
  COMMAND ${CMAKE_COMMAND}
    -DCOMPILER=${CMAKE_CXX_COMPILER}
    -DFLAGS_FILE=${_lamina_avx512_flags}
    -DSOURCE=${CMAKE_CURRENT_SOURCE_DIR}/avx512/avx512_kernels.cpp
    -DOBJECT=${CMAKE_CURRENT_BINARY_DIR}/avx512_kernels.o
    -P ${CMAKE_CURRENT_SOURCE_DIR}/avx512/run_avx512_compile.cmake)
set_tests_properties(avx512_compile PROPERTIES LABELS avx512 TIMEOUT 600)
if(NOT LAMINA_COMPILER_HAS_AVX512F)
  message(STATUS "lamina: ${CMAKE_CXX_COMPILER} cannot target -mavx512f: avx512_compile is disabled")
  set_tests_properties(avx512_compile PROPERTIES DISABLED TRUE)
endif()
