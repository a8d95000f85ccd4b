# Test of scripts/fetch_mnist.sh against a local file:// fixture (tests/scripts/test_fetch_mnist.sh).
# It needs bash and curl; without curl the test script reports itself skipped.
find_program(LAMINA_BASH_EXECUTABLE bash)
if(LAMINA_BASH_EXECUTABLE)
  add_test(NAME fetch_mnist_script
    COMMAND ${LAMINA_BASH_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/test_fetch_mnist.sh
            ${PROJECT_SOURCE_DIR}/scripts/fetch_mnist.sh)
  set_tests_properties(fetch_mnist_script PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120)
endif()
