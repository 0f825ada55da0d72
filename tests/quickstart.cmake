# The quickstart pipeline on tiny models (tests/quickstart_tiny.sh).
add_test(NAME quickstart_tiny
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/quickstart_tiny.sh $<TARGET_FILE:retort>)
set_tests_properties(quickstart_tiny PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=1" TIMEOUT 300
                     PROCESSORS 2)

# launch/recipes/gpt2-small.sh at a tiny shape (tests/recipe_gpt2_small.sh).
add_test(NAME recipe_gpt2_small
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/recipe_gpt2_small.sh $<TARGET_FILE:retort>)
set_tests_properties(recipe_gpt2_small PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=1" TIMEOUT 120
                     PROCESSORS 2)
