# Install-then-consume test, run by ctest as `cmake -P` (see tests/CMakeLists.txt).
#
#  1. cmake --install the ramalloc build tree into WORK_DIR/prefix;
#  2. configure tests/consumer against that prefix only (find_package(ramalloc CONFIG
#     REQUIRED) with CMAKE_PREFIX_PATH = the prefix), same generator, compiler, flags
#     and build type as the tree under test;
#  3. build it and run the program; any failure fails the test.
#
# Inputs (-D): RAMALLOC_BINARY_DIR CONSUMER_SOURCE_DIR WORK_DIR CONFIG GENERATOR
#              MAKE_PROGRAM CXX_COMPILER CXX_FLAGS, WITH_IO (also build and run an Asio
#              program on ramalloc::io, and check the pkg-config files), LIBDIR
cmake_minimum_required(VERSION 3.25)

foreach(var RAMALLOC_BINARY_DIR CONSUMER_SOURCE_DIR WORK_DIR GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer_test.cmake: -D${var}=... is required")
  endif()
endforeach()

set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
# Start from nothing so a stale install or cache cannot make the test pass.
file(REMOVE_RECURSE ${prefix} ${build})

# Runs a command, echoes it, and stops the test with its output when it fails.
function(run_step what)
  string(REPLACE ";" " " shown "${ARGN}")
  message(STATUS "[consumer] ${what}: ${shown}")
  execute_process(COMMAND ${ARGN}
                  RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out
                  ERROR_VARIABLE out)
  message("${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[consumer] ${what} failed (exit ${rc})")
  endif()
endfunction()

# 1. install
set(config_args "")
if(NOT "${CONFIG}" STREQUAL "")
  set(config_args --config ${CONFIG})
endif()
run_step("install" ${CMAKE_COMMAND} --install ${RAMALLOC_BINARY_DIR} --prefix ${prefix}
         ${config_args})

# 2. configure the consumer against the prefix only
set(configure_args
    -S ${CONSUMER_SOURCE_DIR} -B ${build} -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix}
    -DRAMALLOC_EXPECTED_PREFIX=${prefix}
    # Never find the package through a registry or the system: only the prefix counts.
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
if(NOT "${CONFIG}" STREQUAL "")
  list(APPEND configure_args -DCMAKE_BUILD_TYPE=${CONFIG})
endif()
if(WITH_IO)
  list(APPEND configure_args -DRAMALLOC_CONSUMER_IO=ON)
endif()
if(NOT "${MAKE_PROGRAM}" STREQUAL "")
  list(APPEND configure_args -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM})
endif()
if(NOT "${CXX_COMPILER}" STREQUAL "")
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()
if(NOT "${CXX_FLAGS}" STREQUAL "")
  # Sanitized builds: the installed static library needs the same runtime at link time.
  list(APPEND configure_args "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
                             "-DCMAKE_EXE_LINKER_FLAGS=${CXX_FLAGS}")
endif()
run_step("configure" ${CMAKE_COMMAND} ${configure_args})

# 3. build and run
run_step("build" ${CMAKE_COMMAND} --build ${build} ${config_args})
run_step("run" ${build}/bin/ramalloc_consumer)
if(WITH_IO)
  run_step("run io" ${build}/bin/ramalloc_consumer_io)
  # pkg-config users: the installed .pc files resolve (ramalloc-io requires ramalloc).
  find_program(PKG_CONFIG pkg-config)
  if(PKG_CONFIG)
    foreach(pc ramalloc ramalloc-io)
      if(NOT EXISTS ${prefix}/${LIBDIR}/pkgconfig/${pc}.pc)
        message(FATAL_ERROR "[consumer] ${pc}.pc was not installed in ${prefix}/${LIBDIR}/pkgconfig")
      endif()
    endforeach()
    set(ENV{PKG_CONFIG_PATH} "${prefix}/${LIBDIR}/pkgconfig")
    execute_process(COMMAND ${PKG_CONFIG} --cflags --libs ramalloc-io
                    RESULT_VARIABLE rc OUTPUT_VARIABLE flags ERROR_VARIABLE flags)
    string(STRIP "${flags}" flags)
    # The .pc files are relocatable: their -I must lead to this prefix's include/.
    file(REAL_PATH "${prefix}/include" want_include)
    set(got_include "")
    if(flags MATCHES "-I([^ ]+)")
      file(REAL_PATH "${CMAKE_MATCH_1}" got_include)
    endif()
    if(NOT rc EQUAL 0 OR NOT flags MATCHES "-DASIO_STANDALONE" OR NOT flags MATCHES "-lramalloc_io"
       OR NOT flags MATCHES "-lramalloc( |$)" OR NOT got_include STREQUAL want_include)
      message(FATAL_ERROR "[consumer] pkg-config ramalloc-io: ${flags}")
    endif()
    message(STATUS "[consumer] pkg-config ramalloc-io: ${flags}")
  endif()
endif()
message(STATUS "[consumer] find_package(ramalloc CONFIG) consumer passed")
