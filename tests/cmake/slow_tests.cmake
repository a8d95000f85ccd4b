# Tests that take seconds in an optimised build and minutes under the sanitizers (label
# "slow"; scripts/test.sh's sanitizer stage leaves them out).
foreach(t test_models test_mcnn_full test_hep_cnn)
  if(TEST ${t})
    set_tests_properties(${t} PROPERTIES LABELS slow)
  endif()
endforeach()
