# Hugging Face folders in (and, with export, out) through the binary:
# cli_hf.sh compares `retort eval` with PyTorch's loss on the committed
# fixtures (tests/fixtures/gen_hf_fixture.py), distills from a folder and
# checks every broken input is one clean line. test_hf (CUnit) covers the
# safetensors reader and the dtype conversions directly.
add_test(NAME cli_hf COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_hf.sh $<TARGET_FILE:retort>)
set_tests_properties(cli_hf PROPERTIES
                     ENVIRONMENT "OMP_NUM_THREADS=2;OMP_WAIT_POLICY=PASSIVE" TIMEOUT 180)
