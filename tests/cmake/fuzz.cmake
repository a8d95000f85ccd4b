# libFuzzer harnesses (tests/fuzz/), with LAMINA_FUZZ=ON and clang (scripts/test.sh stage (c),
# scripts/fuzz.sh): fuzz_checkpoint (the checkpoint loader), fuzz_idx (IDX and gzip), fuzz_npy
# (.npy) and fuzz_safetensors (safetensors and the PyTorch state_dict loader; only with
# LAMINA_WITH_NLOHMANN_JSON), built with -fsanitize=fuzzer,address,undefined. Tests (label fuzz):
#  * fuzz.checkpoint, fuzz.idx, fuzz.npy, fuzz.safetensors: each harness replays the committed
#    seeds (tests/fuzz/corpus/) and fuzzes for LAMINA_FUZZ_SECONDS; any crash, sanitizer report
#    or leak fails the test (tests/fuzz/run_fuzzer.sh). The corpus they grow is kept in the
#    build folder.
#  * fuzz.corpus_fresh: tests/fuzz/corpus/ is what tests/fuzz/make_corpus.cpp and
#    tests/fuzz/make_corpus_tensors.cpp write.
option(LAMINA_FUZZ "Build the libFuzzer harnesses in tests/fuzz (clang) and run each briefly as a test" OFF)
set(LAMINA_FUZZ_SECONDS 45 CACHE STRING "Seconds each fuzz harness runs as a test")
if(LAMINA_FUZZ)
  include(CheckCXXSourceCompiles)
  set(_lamina_fuzz_flags -fsanitize=fuzzer,address,undefined)
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer,address,undefined")
  set(CMAKE_REQUIRED_LINK_OPTIONS -fsanitize=fuzzer,address,undefined)
  check_cxx_source_compiles("#include <cstddef>
#include <cstdint>
extern \"C\" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }" LAMINA_HAS_LIBFUZZER)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(NOT LAMINA_HAS_LIBFUZZER)
    message(FATAL_ERROR "LAMINA_FUZZ is ON but ${CMAKE_CXX_COMPILER} cannot build a libFuzzer harness "
      "(-fsanitize=fuzzer,address,undefined): use clang (-DCMAKE_CXX_COMPILER=clang++-14) with libFuzzer "
      "(Debian: libclang-rt-14-dev, installed by scripts/setup.sh)")
  endif()
  find_program(LAMINA_FUZZ_BASH bash)
  if(NOT LAMINA_FUZZ_BASH)
    message(FATAL_ERROR "LAMINA_FUZZ is ON but bash (which runs tests/fuzz/run_fuzzer.sh) was not found")
  endif()

  set(_lamina_fuzz_harnesses checkpoint idx npy)
  if(LAMINA_WITH_NLOHMANN_JSON)
    list(APPEND _lamina_fuzz_harnesses safetensors)
  endif()
  foreach(harness IN LISTS _lamina_fuzz_harnesses)
    add_executable(fuzz_${harness} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_${harness}.cpp)
    target_link_libraries(fuzz_${harness} PRIVATE lamina::lamina lamina_dev_flags)
    # Traps rather than recovery on UB so that libFuzzer records the input; frame pointers
    # and -g for readable reports.
    target_compile_options(fuzz_${harness} PRIVATE ${_lamina_fuzz_flags} -fno-sanitize-recover=all
                           -fno-omit-frame-pointer -g)
    target_link_options(fuzz_${harness} PRIVATE ${_lamina_fuzz_flags})
    if(harness STREQUAL "safetensors")
      target_link_libraries(fuzz_${harness} PRIVATE nlohmann_json::nlohmann_json)
    endif()
    add_test(NAME fuzz.${harness}
      COMMAND ${LAMINA_FUZZ_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_fuzzer.sh $<TARGET_FILE:fuzz_${harness}>
              ${LAMINA_FUZZ_SECONDS} ${CMAKE_CURRENT_BINARY_DIR}/fuzz-corpus/${harness}
              ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${harness})
    math(EXPR _lamina_fuzz_timeout "${LAMINA_FUZZ_SECONDS} + 180")
    # A high cost makes ctest start the harnesses first, side by side under -j2.
    set_tests_properties(fuzz.${harness} PROPERTIES LABELS fuzz TIMEOUT ${_lamina_fuzz_timeout} COST 10000)
  endforeach()

  add_executable(make_fuzz_corpus ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/make_corpus.cpp)
  target_link_libraries(make_fuzz_corpus PRIVATE lamina::lamina lamina_dev_flags)
  add_executable(make_fuzz_corpus_tensors ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/make_corpus_tensors.cpp)
  target_link_libraries(make_fuzz_corpus_tensors PRIVATE lamina::lamina lamina_dev_flags)
  add_test(NAME fuzz.corpus_fresh
    COMMAND ${LAMINA_FUZZ_BASH} -c "rm -rf \"$2\" && \"$0\" \"$2\" && \"$1\" \"$2\" && diff -r \"$2\" \"$3\" && echo 'tests/fuzz/corpus is fresh' || { echo 'tests/fuzz/corpus is stale: run make_fuzz_corpus and make_fuzz_corpus_tensors with tests/fuzz/corpus and commit'; exit 1; }"
            $<TARGET_FILE:make_fuzz_corpus> $<TARGET_FILE:make_fuzz_corpus_tensors>
            ${CMAKE_CURRENT_BINARY_DIR}/fuzz-corpus-fresh ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus)
  set_tests_properties(fuzz.corpus_fresh PROPERTIES LABELS fuzz TIMEOUT 60)
endif()
