# A build with threading compiled out: tests/no_threads/*.cpp are compiled with
# LAMINA_NO_THREADS (lamina's thread_pool becomes a serial stand-in, no std::thread) and run
# as ctest entries like the unit tests.
file(GLOB lamina_no_threads_tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/no_threads/test_*.cpp)
foreach(src IN LISTS lamina_no_threads_tests)
  get_filename_component(name ${src} NAME_WE)
  lamina_add_test(${name} ${src})
  target_compile_definitions(${name} PRIVATE LAMINA_NO_THREADS)
  set_tests_properties(${name} PROPERTIES LABELS no_threads)
endforeach()
