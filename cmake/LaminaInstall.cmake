include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/lamina DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS lamina lamina_xsimd EXPORT lamina-targets)
install(EXPORT lamina-targets NAMESPACE lamina:: DESTINATION ${CMAKE_INSTALL_DATADIR}/lamina/cmake)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/lamina-config.cmake.in
  ${PROJECT_BINARY_DIR}/lamina-config.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_DATADIR}/lamina/cmake)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/lamina-config-version.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/lamina-config.cmake ${PROJECT_BINARY_DIR}/lamina-config-version.cmake
  DESTINATION ${CMAKE_INSTALL_DATADIR}/lamina/cmake)
