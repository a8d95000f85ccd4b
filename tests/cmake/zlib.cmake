# zlib for the tests that read gzipped IDX files (lamina/data/gzip_file.hpp uses zlib when
# <zlib.h> is found, so every program including it must link zlib).
find_package(ZLIB REQUIRED)
if(TARGET test_idx)
  target_link_libraries(test_idx PRIVATE ZLIB::ZLIB)
endif()
# The data tests (tests/data/test_*.cpp) are defined after tests/cmake/*.cmake are included:
# link them now if they exist, else at the end of this directory's CMakeLists.
function(_lamina_link_zlib_to_data_tests)
  foreach(t IN ITEMS test_mnist_data)
    if(TARGET ${t})
      target_link_libraries(${t} PRIVATE ZLIB::ZLIB)
    endif()
  endforeach()
endfunction()
if(TARGET test_mnist_data OR CMAKE_VERSION VERSION_LESS 3.19)
  _lamina_link_zlib_to_data_tests()
else()
  cmake_language(DEFER CALL _lamina_link_zlib_to_data_tests)
endif()
