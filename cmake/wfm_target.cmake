# wfm_use_pch(target): reuse the single shared precompiled header. Every target must be compiled with the same
# flags and definitions as wfm_pch (they all link torch and get -fPIC), or GCC ignores the PCH (-Winvalid-pch).
function(wfm_use_pch target)
  if(WFM_USE_PCH)
    target_precompile_headers(${target} REUSE_FROM wfm_pch)
  endif()
endfunction()

# wfm_add_library(name SOURCES ...): a module library with public headers under <folder>/include.
function(wfm_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} SHARED ${ARG_SOURCES})
  add_library(wfm::${name} ALIAS ${name})
  target_include_directories(${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  set_target_properties(${name} PROPERTIES OUTPUT_NAME ${name})
  wfm_use_pch(${name})
  set_property(GLOBAL APPEND PROPERTY WFM_INSTALL_TARGETS ${name})
endfunction()

# wfm_add_test(name SOURCES ... DEPS ... [LABELS ...]): one GoogleTest executable, each TEST a ctest test.
function(wfm_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock wfm_test_support)
  wfm_use_pch(${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  set(props TIMEOUT ${ARG_TIMEOUT})
  if(ARG_LABELS)
    list(APPEND props LABELS "${ARG_LABELS}")
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES ${props})
  # The environment is a list, which gtest_discover_tests' PROPERTIES would split into separate arguments (only
  # the first variable would be set). Set it from an include file that ctest reads after the discovered tests.
  set(env_file ${CMAKE_CURRENT_BINARY_DIR}/${name}_env.cmake)
  file(WRITE ${env_file} "if(DEFINED ${name}_TESTS)\n  set_tests_properties(\${${name}_TESTS} PROPERTIES ENVIRONMENT \"WFM_SHARED_DIR=${WFM_SHARED_DIR};WFM_SOURCE_DIR=${CMAKE_SOURCE_DIR};WFM_BINARY_DIR=${CMAKE_BINARY_DIR};WFM_NUM_THREADS=1\")\nendif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${env_file})
endfunction()

# wfm_add_mpi_test(NAME <ctest name> TARGET <gtest executable> FILTER <gtest filter> [LAUNCHES_MPIRUN]): a two-rank
# MPI check, label `mpi`. By default the executable itself runs under `mpirun -np 2` (its cases skip outside
# mpirun; needs MPI_CXX_FOUND). With LAUNCHES_MPIRUN the test starts `mpirun` itself (the `wfm` tool under it),
# found through WFM_MPIEXEC. Nothing is added when the executable or mpirun is missing.
function(wfm_add_mpi_test)
  cmake_parse_arguments(ARG "LAUNCHES_MPIRUN" "NAME;TARGET;FILTER" "" ${ARGN})
  if(NOT TARGET ${ARG_TARGET} OR NOT MPIEXEC_EXECUTABLE)
    return()
  endif()
  set(env "WFM_SHARED_DIR=${WFM_SHARED_DIR};WFM_SOURCE_DIR=${CMAKE_SOURCE_DIR};WFM_BINARY_DIR=${CMAKE_BINARY_DIR}")
  list(APPEND env "WFM_NUM_THREADS=1" "OMPI_MCA_rmaps_base_oversubscribe=1")
  if(ARG_LAUNCHES_MPIRUN)
    add_test(NAME ${ARG_NAME} COMMAND $<TARGET_FILE:${ARG_TARGET}> --gtest_filter=${ARG_FILTER})
    list(PREPEND env "WFM_MPIEXEC=${MPIEXEC_EXECUTABLE}")
  elseif(MPI_CXX_FOUND)
    add_test(NAME ${ARG_NAME}
             COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe -np 2
                     $<TARGET_FILE:${ARG_TARGET}> --gtest_filter=${ARG_FILTER})
  else()
    return()
  endif()
  set_tests_properties(${ARG_NAME} PROPERTIES LABELS mpi TIMEOUT 300 ENVIRONMENT "${env}")
endfunction()
