# Driver of the avx512_compile test (see tests/cmake/avx512_compile.cmake).
#   cmake -DCOMPILER=<c++> -DFLAGS_FILE=<one flag per line> -DSOURCE=<file.cpp> -DOBJECT=<out.o>
#         -P run_avx512_compile.cmake
# Compiles SOURCE (every host kernel) with -mavx512f (and -mfma, which Eigen requires with it;
# every AVX-512 CPU has FMA) and warnings as errors, to an object file
# (full code generation, not -fsyntax-only).
foreach(var COMPILER FLAGS_FILE SOURCE OBJECT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_avx512_compile.cmake: -D${var}=... is required")
  endif()
endforeach()

file(STRINGS ${FLAGS_FILE} flags)
list(FILTER flags EXCLUDE REGEX "^[ \t]*$")
set(cmd ${COMPILER} -std=c++17 -O2 -mavx512f -mfma -Wall -Wextra -Wpedantic -Werror ${flags} -c ${SOURCE} -o ${OBJECT})
string(REPLACE ";" " " cmd_text "${cmd}")
message("command: ${cmd_text}")
execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
message("---- compiler output (exit code ${rc}) ----\n${out}---- end of compiler output ----")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "FAIL: the host kernels do not compile with -mavx512f")
endif()
message("PASS: the host kernels compile with -mavx512f")
