# Runs the built `retort` binary from shell scripts: help texts, usage
# errors and exit codes of every command (cli_errors.sh), and `retort
# prepare` end to end with its error paths (cli_prepare.sh).
add_test(NAME cli_errors
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_errors.sh $<TARGET_FILE:retort>)
add_test(NAME cli_prepare
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_prepare.sh $<TARGET_FILE:retort>)
set_tests_properties(cli_errors cli_prepare PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2")
# `retort bench teacher` at a tiny shape: JSON fields, label schemes, --model
# (a fixture checkpoint from test_eval --make-fixtures), one-line errors.
add_test(NAME cli_bench_teacher
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_bench_teacher.sh $<TARGET_FILE:retort>
                 $<TARGET_FILE:test_eval>)
set_tests_properties(cli_bench_teacher PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2")
