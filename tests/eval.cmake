# `retort eval`, `generate`, `info` and `report` through the binary.
# test_eval (CUnit, registered by tests/CMakeLists.txt like every
# test_<module>.c) checks the numbers against independent computations;
# cli_eval.sh checks the command lines: every error path gives one line on
# stderr and a non-zero exit, info --verify, and report on tiny models. It
# gets its fixtures from `test_eval --make-fixtures DIR`.
add_test(NAME cli_eval
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_eval.sh $<TARGET_FILE:retort>
                 $<TARGET_FILE:test_eval>)
set_tests_properties(cli_eval PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2" TIMEOUT 120)
