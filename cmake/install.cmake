# `cmake --install build --prefix P` installs the tool, the libraries, the public headers and a relocatable
# CMake package (find_package(wfm) -> wfm::wfm_core, wfm::wfm_tokenizer, ...).
include(CMakePackageConfigHelpers)
get_property(WFM_INSTALL_TARGETS GLOBAL PROPERTY WFM_INSTALL_TARGETS)
install(TARGETS ${WFM_INSTALL_TARGETS} EXPORT wfmTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
foreach(dir core tokenizer autoregressive diffusion curation)
  if(EXISTS ${CMAKE_SOURCE_DIR}/${dir}/include/wfm)
    install(DIRECTORY ${CMAKE_SOURCE_DIR}/${dir}/include/wfm DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  endif()
endforeach()
install(EXPORT wfmTargets NAMESPACE wfm:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/wfm)
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/wfmConfig.cmake.in
  ${CMAKE_BINARY_DIR}/wfmConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/wfm)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/wfmConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/wfmConfig.cmake ${CMAKE_BINARY_DIR}/wfmConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/wfm)
