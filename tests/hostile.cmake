# The hostile-input test (tests/hostile.sh): crafted checkpoints, shards
# and tokenizer folders fed to every command that takes them, plus saves
# onto a "full disk"; each must fail with one line naming the file and an
# exit below 128. hostile_gen crafts the files with the raw HDF5 API.
add_executable(hostile_gen ${CMAKE_CURRENT_SOURCE_DIR}/hostile_gen.c)
target_link_libraries(hostile_gen PRIVATE retort_checkpoints)
add_test(NAME hostile
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/hostile.sh $<TARGET_FILE:retort>
                 $<TARGET_FILE:test_eval> $<TARGET_FILE:hostile_gen>)
set_tests_properties(hostile PROPERTIES
                     ENVIRONMENT "OMP_NUM_THREADS=1;OMP_WAIT_POLICY=PASSIVE" TIMEOUT 600)
