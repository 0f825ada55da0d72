# test_prune (CUnit) runs `retort prune` through the binary, so it gets a
# timeout of its own; RT_PRUNE_BENCH=1 adds the speed measurement (manual).
set(RT_TEST_test_prune_CUSTOM ON)
add_test(NAME test_prune COMMAND test_prune)
set_tests_properties(test_prune PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2" TIMEOUT 120)
