# The README's C++ examples compile as written: tests/scripts/extract_readme_examples.py writes
# each ```cpp block to its own file at configure time (re-run when README.md changes) and the
# object library readme_examples compiles them with lamina's usage requirements, so a front-page
# example that stops compiling fails the build. Kokkos blocks are compiled where lamina::kokkos
# exists (tests/kokkos/CMakeLists.txt).
find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/README.md)
  execute_process(
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/extract_readme_examples.py
            ${PROJECT_SOURCE_DIR}/README.md ${CMAKE_CURRENT_BINARY_DIR}/readme_examples
    OUTPUT_VARIABLE _lamina_readme_files RESULT_VARIABLE _lamina_readme_rc)
  if(NOT _lamina_readme_rc EQUAL 0)
    message(FATAL_ERROR "lamina: could not extract the C++ examples of README.md")
  endif()
  string(REPLACE "\n" ";" _lamina_readme_files "${_lamina_readme_files}")
  set(_lamina_readme_host "")
  set(LAMINA_README_KOKKOS_EXAMPLES "")
  foreach(f IN LISTS _lamina_readme_files)
    if(f MATCHES "/host_[0-9]+\\.cpp$")
      list(APPEND _lamina_readme_host ${f})
    elseif(f MATCHES "/kokkos_[0-9]+\\.cpp$")
      list(APPEND LAMINA_README_KOKKOS_EXAMPLES ${f})
    endif()
  endforeach()
  if(_lamina_readme_host)
    add_library(readme_examples OBJECT ${_lamina_readme_host})
    target_link_libraries(readme_examples PRIVATE lamina::lamina lamina_dev_flags)
  endif()
endif()
