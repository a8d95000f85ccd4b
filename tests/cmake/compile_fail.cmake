# Compile-fail tests: every tests/compile_fail/*.cpp must NOT compile, and the compiler's
# diagnostics must match the CMake regular expression on the file's first line:
#     // EXPECT-ERROR: <regex>
# Each file becomes the ctest `compile_fail.<name>` (label compile_fail). It runs the project's
# C++ compiler with lamina::lamina's include directories and definitions (lamina, Eigen, xsimd)
# and -std=c++17 -fsyntax-only through tests/compile_fail/run_compile_fail.cmake, which
# prints the compiler's output and passes only when compilation failed with a match.
file(GLOB lamina_compile_fail_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/*.cpp)
if(lamina_compile_fail_sources)
  # lamina::lamina's usage requirements, transitively (Eigen3::Eigen, lamina::xsimd), one per line.
  set(_lamina_cf_flags ${CMAKE_CURRENT_BINARY_DIR}/compile_fail_flags_$<CONFIG>.txt)
  file(GENERATE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/compile_fail_flags_$<CONFIG>.txt CONTENT
"$<$<BOOL:$<TARGET_PROPERTY:lamina,INTERFACE_INCLUDE_DIRECTORIES>>:-I$<JOIN:$<REMOVE_DUPLICATES:$<TARGET_PROPERTY:lamina,INTERFACE_INCLUDE_DIRECTORIES>>,\n-I>>
$<$<BOOL:$<TARGET_PROPERTY:lamina,INTERFACE_COMPILE_DEFINITIONS>>:-D$<JOIN:$<REMOVE_DUPLICATES:$<TARGET_PROPERTY:lamina,INTERFACE_COMPILE_DEFINITIONS>>,\n-D>>
$<JOIN:$<TARGET_PROPERTY:lamina,INTERFACE_COMPILE_OPTIONS>,\n>
")
  foreach(src IN LISTS lamina_compile_fail_sources)
    get_filename_component(name ${src} NAME_WE)
    add_test(NAME compile_fail.${name}
      COMMAND ${CMAKE_COMMAND}
        -DCOMPILER=${CMAKE_CXX_COMPILER}
        -DFLAGS_FILE=${_lamina_cf_flags}
        -DSOURCE=${src}
        -P ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/run_compile_fail.cmake)
    set_tests_properties(compile_fail.${name} PROPERTIES LABELS compile_fail TIMEOUT 180)
  endforeach()
endif()
