# `retort eval`, `generate`, `info`, `report` and `export` through the binary.
# test_eval (CUnit) checks the numbers against independent computations;
# cli_eval.sh checks the command lines: every error path gives one line on
# stderr and a non-zero exit, info --verify, and report on tiny models. It
# gets its fixtures from `test_eval --make-fixtures DIR`, as does
# cli_export.sh (the deploy formats of `retort export`).
#
# Both run two OpenMP threads (so the threaded top-1/ECE reduction is
# exercised) with a passive wait policy: the tests start many short
# processes, and spinning idle threads on a shared, loaded machine made
# them 10x slower.
set(RT_TEST_test_eval_CUSTOM ON)
add_test(NAME test_eval COMMAND test_eval)
add_test(NAME cli_eval
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_eval.sh $<TARGET_FILE:retort>
                 $<TARGET_FILE:test_eval>)
add_test(NAME cli_export
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_export.sh $<TARGET_FILE:retort>
                 $<TARGET_FILE:test_eval>)
# cli_eval runs 266 checks (about 20 s of CPU): 10 s on an idle 2-core
# machine, over 120 s when other jobs share the cores.
set_tests_properties(test_eval cli_eval cli_export PROPERTIES
                     ENVIRONMENT "OMP_NUM_THREADS=2;OMP_WAIT_POLICY=PASSIVE" TIMEOUT 300)
