# Packaging tests (label `packaging`), driven by tests/package/run_*.sh:
#  * package_consumer: install lamina into a temporary prefix, check the exported CMake files
#    (no xtl, no -march=native), then build and run tests/package/consumer, which uses
#    find_package(lamina CONFIG REQUIRED) and lamina::lamina.
#  * subdirectory_consumer: build and run tests/package/subdir, which uses
#    add_subdirectory(<lamina>); checks lamina then builds no tests and needs no Catch2.
# Both use this build's generator and C++ compiler but none of its flags.
find_program(LAMINA_BASH bash)
if(LAMINA_BASH)
  set(_lamina_pkg_args -G "${CMAKE_GENERATOR}" -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER})
  if(CMAKE_MAKE_PROGRAM)
    list(APPEND _lamina_pkg_args -DCMAKE_MAKE_PROGRAM=${CMAKE_MAKE_PROGRAM})
  endif()
  add_test(NAME package_consumer
    COMMAND ${LAMINA_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/package/run_package_consumer.sh
            ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/package_consumer ${_lamina_pkg_args})
  add_test(NAME subdirectory_consumer
    COMMAND ${LAMINA_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/package/run_subdirectory_consumer.sh
            ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/subdirectory_consumer ${_lamina_pkg_args})
  set_tests_properties(package_consumer subdirectory_consumer PROPERTIES LABELS packaging TIMEOUT 300)
else()
  message(WARNING "bash not found: the packaging tests (package_consumer, subdirectory_consumer) are not defined")
endif()
