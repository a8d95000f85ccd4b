# The single-header edition, single_include/lamina/lamina.hpp (made by scripts/amalgamate.py).
#  * single_include_fresh: fails when the committed file differs from what the headers under
#    include/lamina/ generate (fix: `python3 scripts/amalgamate.py`, then commit).
#  * single_include_smoke: tests/single_include/main.cpp, compiled against single_include/ and
#    lamina's dependencies (Eigen, xsimd, threads) but NOT include/, builds a small network
#    and runs a forward pass.
find_package(Python3 COMPONENTS Interpreter QUIET)
if(Python3_Interpreter_FOUND)
  add_test(NAME single_include_fresh
    COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/amalgamate.py --check
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
else()
  message(WARNING "python3 not found: the test single_include_fresh will fail (scripts/setup.sh installs it)")
  add_test(NAME single_include_fresh
    COMMAND ${CMAKE_COMMAND} -E echo "single_include_fresh needs python3 (scripts/setup.sh installs it)")
  set_tests_properties(single_include_fresh PROPERTIES WILL_FAIL TRUE)
endif()
set_tests_properties(single_include_fresh PROPERTIES LABELS packaging TIMEOUT 60)

if(EXISTS ${PROJECT_SOURCE_DIR}/include/lamina/lamina.hpp AND EXISTS ${PROJECT_SOURCE_DIR}/single_include/lamina/lamina.hpp)
  add_executable(single_include_smoke ${CMAKE_CURRENT_SOURCE_DIR}/single_include/main.cpp)
  # lamina::lamina's dependencies and definitions, without its include/ folder.
  get_target_property(_lamina_si_libs lamina INTERFACE_LINK_LIBRARIES)
  get_target_property(_lamina_si_defs lamina INTERFACE_COMPILE_DEFINITIONS)
  target_include_directories(single_include_smoke PRIVATE ${PROJECT_SOURCE_DIR}/single_include)
  target_compile_features(single_include_smoke PRIVATE cxx_std_17)
  if(_lamina_si_libs)
    target_link_libraries(single_include_smoke PRIVATE ${_lamina_si_libs})
  endif()
  if(_lamina_si_defs)
    target_compile_definitions(single_include_smoke PRIVATE ${_lamina_si_defs})
  endif()
  # gzip support in lamina/data needs zlib when <zlib.h> is installed.
  find_package(ZLIB QUIET)
  if(TARGET ZLIB::ZLIB)
    target_link_libraries(single_include_smoke PRIVATE ZLIB::ZLIB)
  endif()
  target_link_libraries(single_include_smoke PRIVATE lamina_dev_flags)
  add_test(NAME single_include_smoke COMMAND single_include_smoke)
  set_tests_properties(single_include_smoke PROPERTIES TIMEOUT 120)
else()
  message(STATUS "lamina: include/lamina/lamina.hpp does not exist yet; single_include_smoke is not built")
endif()
