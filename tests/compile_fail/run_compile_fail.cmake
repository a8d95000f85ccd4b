# Driver of one compile-fail test (see tests/cmake/compile_fail.cmake and README.md here).
#   cmake -DCOMPILER=<c++> -DFLAGS_FILE=<one flag per line> -DSOURCE=<file.cpp> -P run_compile_fail.cmake
# Passes (exit 0) only when compiling SOURCE fails and the compiler's output matches the
# regular expression on SOURCE's first line, `// EXPECT-ERROR: <regex>`.
foreach(var COMPILER FLAGS_FILE SOURCE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_compile_fail.cmake: -D${var}=... is required")
  endif()
endforeach()

file(READ "${SOURCE}" head LIMIT 4096)
string(REGEX MATCH "^[^\n]*" first_line "${head}")
string(REGEX REPLACE "\r$" "" first_line "${first_line}")
if(NOT "${first_line}" MATCHES "^//[ \t]*EXPECT-ERROR:[ \t]*(.+)$")
  message(FATAL_ERROR "${SOURCE}: the first line must be `// EXPECT-ERROR: <regex>` "
                      "(a CMake regular expression the compiler's diagnostics must match)")
endif()
string(STRIP "${CMAKE_MATCH_1}" expect)

file(STRINGS ${FLAGS_FILE} flags)
list(FILTER flags EXCLUDE REGEX "^[ \t]*$")
set(cmd ${COMPILER} -std=c++17 -fsyntax-only ${flags} ${SOURCE})
string(REPLACE ";" " " cmd_text "${cmd}")
message("command: ${cmd_text}")
message("expect:  compilation fails with output matching: ${expect}")
execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
message("---- compiler output (exit code ${rc}) ----\n${out}---- end of compiler output ----")

if(rc EQUAL 0)
  message(FATAL_ERROR "FAIL: ${SOURCE} compiled, but it must not")
endif()
if(NOT out MATCHES "${expect}")
  message(FATAL_ERROR "FAIL: ${SOURCE} failed to compile, but no diagnostic matches `${expect}`"
                      " (the error is not the one this test is about)")
endif()
message("PASS: compilation failed as expected and the diagnostics match `${expect}`")
