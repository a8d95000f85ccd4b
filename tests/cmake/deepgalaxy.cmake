# The DeepGalaxy tests: the HDF5 reader test links lamina::hdf5 when this build has HDF5
# (without it the test reports itself skipped, exit code 77); the image-writer test links
# lamina::png when there is libpng (the PNG checks skip otherwise, the PGM ones run).
if(TARGET test_deepgalaxy_hdf5 AND TARGET lamina::hdf5)
  target_link_libraries(test_deepgalaxy_hdf5 PRIVATE lamina::hdf5)
endif()
if(TARGET test_deepgalaxy_io AND TARGET lamina::png)
  target_link_libraries(test_deepgalaxy_io PRIVATE lamina::png)
endif()
# Seconds in Release, minutes under the sanitizers (scripts/test.sh's sanitizer stage leaves
# label "slow" out; the same label as tests/cmake/slow_tests.cmake gives).
if(TEST test_deepgalaxy_nbody_energy)
  set_tests_properties(test_deepgalaxy_nbody_energy PROPERTIES LABELS slow)
endif()
