# Runs PROGRAM ARG under memcheck (PRELOAD: LD_PRELOAD=PRELOAD; MODE static: the override
# is linked in; in both valgrind's own malloc replacement is kept to the system
# libraries, so ramalloc serves malloc) and checks its verdict:
#   EXPECT empty  no error and no definite leak: exit code 0, "ERROR SUMMARY: 0 errors"
#   EXPECT regex  memcheck's error exit code (99) and a report matching EXPECT
# Leaks count as errors (--errors-for-leak-kinds=definite), as a CI job would run it.
set(cmd ${VALGRIND} --error-exitcode=99 --leak-check=full --show-leak-kinds=definite
        --errors-for-leak-kinds=definite --num-callers=12)
if(PRELOAD OR MODE STREQUAL "static")
  # Valgrind replaces malloc in every library and executable that exports it by default;
  # this keeps the replacement to the system libraries, so ramalloc's override runs.
  list(APPEND cmd --soname-synonyms=somalloc=nouserintercepts)
endif()
if(PRELOAD)
  set(ENV{LD_PRELOAD} "${PRELOAD}")
endif()
execute_process(COMMAND ${cmd} ${PROGRAM} ${ARG}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
message("${out}")
if(EXPECT STREQUAL "")
  if(NOT rc EQUAL 0 OR NOT out MATCHES "ERROR SUMMARY: 0 errors")
    message(FATAL_ERROR "expected a clean run, got exit code ${rc}")
  endif()
else()
  if(NOT rc EQUAL 99)
    message(FATAL_ERROR "expected memcheck's error exit code 99, got ${rc}")
  endif()
  if(NOT out MATCHES "${EXPECT}")
    message(FATAL_ERROR "memcheck's report does not match: ${EXPECT}")
  endif()
endif()
# The override must really have served the program (not valgrind's malloc).
if((PRELOAD OR MODE STREQUAL "static") AND out MATCHES "total heap usage: 0 allocs")
  message(FATAL_ERROR "memcheck saw no block: ramalloc's annotations did not reach it")
endif()
