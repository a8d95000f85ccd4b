# tests/unit/test_pytorch_weights.cpp: the folder of its fixtures, and nlohmann-json (the
# safetensors reader's JSON parser) as LAMINA_WITH_NLOHMANN_JSON says (cmake/LaminaDependencies.cmake);
# OFF compiles the test as if nlohmann-json were absent, so it reports itself skipped.
if(TARGET test_pytorch_weights)
  target_compile_definitions(test_pytorch_weights PRIVATE LAMINA_FIXTURES_DIR="${CMAKE_CURRENT_SOURCE_DIR}/fixtures")
  if(LAMINA_WITH_NLOHMANN_JSON)
    target_link_libraries(test_pytorch_weights PRIVATE nlohmann_json::nlohmann_json)
  else()
    target_compile_definitions(test_pytorch_weights PRIVATE LAMINA_NO_NLOHMANN_JSON)
  endif()
endif()
