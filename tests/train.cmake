# `retort train` end to end (tests/train_*.sh): data-parallel equivalence
# and distillation metrics, exact resume after SIGKILL (plain and with a
# teacher rank), elastic resume, the start-up and fault errors, and
# activation recomputation (train_recompute: same checkpoints bit for bit).
foreach(t "train_dp" "train_prune_recovery" "train_prune_gradual" "train_prune_lowrank" "train_prune_codebook" "train_resume_plain;train_resume.sh;plain"
          "train_resume_distill;train_resume.sh;distill" "train_errors" "train_fault"
          "train_provenance" "train_qat" "train_distill_helps" "train_labels" "train_signals"
          "train_tcp" "train_soak" "train_recompute")
  list(GET t 0 name)
  list(LENGTH t len)
  if(len GREATER 1)
    list(GET t 1 script)
    list(GET t 2 arg)
  else()
    set(script ${name}.sh)
    set(arg "")
  endif()
  add_test(NAME ${name}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/${script} $<TARGET_FILE:retort> ${arg})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=1" TIMEOUT 300
                       PROCESSORS 2)
endforeach()
