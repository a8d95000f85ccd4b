# Comments name only files that exist (tests/scripts/check_file_references.py).
find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
  add_test(NAME file_references
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check_file_references.py ${PROJECT_SOURCE_DIR})
  set_tests_properties(file_references PROPERTIES LABELS lint TIMEOUT 60)
endif()
