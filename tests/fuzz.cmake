# libFuzzer harnesses (tests/fuzz/fuzz_<name>.c) in the suite: fuzz_build
# configures and builds them with clang-14 into build/fuzz (a separate,
# instrumented build: -DRETORT_FUZZ=ON), then each fuzz_<name> test runs
# its harness for RT_FUZZ_SECONDS (default 20) from its committed seed
# corpus and fails on any crash or sanitizer report. docs/FUZZING.md says
# how to run longer and how to add a harness.
add_test(NAME fuzz_build
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/build.sh ${CMAKE_BINARY_DIR}/fuzz)
# RUN_SERIAL: the build takes every core for a few minutes; beside it,
# timed tests of the suite would run out of time.
set_tests_properties(fuzz_build PROPERTIES FIXTURES_SETUP fuzz TIMEOUT 1200 RUN_SERIAL ON)
file(GLOB FUZZ_HARNESS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_*.c)
foreach(src ${FUZZ_HARNESS})
  get_filename_component(h ${src} NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" short ${h})
  add_test(NAME ${h}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run.sh ${CMAKE_BINARY_DIR}/fuzz ${short})
  set_tests_properties(${h} PROPERTIES FIXTURES_REQUIRED fuzz TIMEOUT 300)
endforeach()
