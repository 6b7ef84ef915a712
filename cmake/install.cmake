# `cmake --install build --prefix P` installs the `wfm` tool, the module libraries (+ the dlopen'ed SentencePiece
# shim), every module's public headers and a relocatable CMake package:
#   find_package(wfm 0.1 REQUIRED [COMPONENTS core tokenizer autoregressive diffusion curation])
#   target_link_libraries(app PRIVATE wfm::wfm_autoregressive)   # pulls wfm_tokenizer, wfm_core, torch, absl
# Relocatable: the export file locates everything relative to itself, and the installed binaries find each other
# through $ORIGIN-relative RUNPATHs; only the third-party dependencies (LibTorch, Abseil, nlohmann_json) are found
# again by the consumer (find_dependency). A LibTorch outside the system paths (e.g. an unpacked libtorch 2.x) is
# kept in the RUNPATH of the installed binaries as an absolute path.
include(CMakePackageConfigHelpers)
get_property(WFM_INSTALL_TARGETS GLOBAL PROPERTY WFM_INSTALL_TARGETS)
# Consumers compile the headers as C++17.
set_property(TARGET ${WFM_INSTALL_TARGETS} APPEND PROPERTY INTERFACE_COMPILE_FEATURES cxx_std_17)
# RUNPATHs: the libraries find each other in their own folder, the tool goes from bin/ to the library folder
# (whatever its depth, e.g. lib/x86_64-linux-gnu); the linker path of non-system dependencies is kept.
file(RELATIVE_PATH _wfm_bin_to_lib "/prefix/${CMAKE_INSTALL_BINDIR}" "/prefix/${CMAKE_INSTALL_LIBDIR}")
set_property(TARGET ${WFM_INSTALL_TARGETS} PROPERTY INSTALL_RPATH "$ORIGIN")
set_property(TARGET wfm PROPERTY INSTALL_RPATH "$ORIGIN/${_wfm_bin_to_lib}")
if(TARGET wfm_sentencepiece)
  set_property(TARGET wfm_sentencepiece PROPERTY INSTALL_RPATH "$ORIGIN")
endif()
set_property(TARGET ${WFM_INSTALL_TARGETS} wfm PROPERTY INSTALL_RPATH_USE_LINK_PATH ON)
install(TARGETS ${WFM_INSTALL_TARGETS} EXPORT wfmTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The components the package offers: the library folders that exist in this tree (text encoders live in core).
set(WFM_COMPONENTS)
foreach(dir core tokenizer autoregressive diffusion curation)
  if(TARGET wfm_${dir})
    list(APPEND WFM_COMPONENTS ${dir})
    install(DIRECTORY ${CMAKE_SOURCE_DIR}/${dir}/include/wfm DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
            FILES_MATCHING PATTERN "*.h")
  endif()
endforeach()
install(EXPORT wfmTargets NAMESPACE wfm:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/wfm)
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/wfmConfig.cmake.in
  ${CMAKE_BINARY_DIR}/wfmConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/wfm
  PATH_VARS CMAKE_INSTALL_BINDIR CMAKE_INSTALL_INCLUDEDIR)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/wfmConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/wfmConfig.cmake ${CMAKE_BINARY_DIR}/wfmConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/wfm)

# The install test (tests/install) installs the whole build: it depends on everything installed.
if(TARGET wfm_install_tests)
  foreach(t wfm wfm_sentencepiece _wfm ${WFM_INSTALL_TARGETS})
    if(TARGET ${t})
      add_dependencies(wfm_install_tests ${t})
    endif()
  endforeach()
endif()
