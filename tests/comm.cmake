# Multi-rank tests of libretort_comm (tests/test_comm.c) under mpiexec, one
# ctest entry per rank layout, and the fault scenarios of
# tests/test_comm_fault.c through tests/comm_fault.sh, which checks that the
# job fails within its bound with a message naming the dead or stalled rank.
set(RT_TEST_test_comm_CUSTOM ON)
set(RT_TEST_test_comm_fault_CUSTOM ON)
set(rt_comm_env "OMP_NUM_THREADS=1")

# name, ranks, teachers
foreach(layout "np1_k0;1;0" "np2_k1;2;1" "np3_k1;3;1" "np4_k2;4;2" "np3_k0;3;0")
  list(GET layout 0 tag)
  list(GET layout 1 np)
  list(GET layout 2 k)
  add_test(NAME test_comm_${tag}
           COMMAND ${RT_MPIEXEC} -np ${np} $<TARGET_FILE:test_comm> --teachers ${k})
  set_tests_properties(test_comm_${tag} PROPERTIES
    ENVIRONMENT "${rt_comm_env}" PROCESSORS ${np} TIMEOUT 150)
endforeach()

# A test that times out stops the run (non-zero exit, a message naming it)
# instead of going on with ranks out of step: the last rank stalls past a
# 2 s timeout at the start of stream_roundtrip (RT_TEST_COMM_STALL).
add_test(NAME test_comm_stops_on_timeout
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/comm_fault.sh 60
                 "stopping after stream_roundtrip failed" ${RT_MPIEXEC} -np 2
                 $<TARGET_FILE:test_comm> --teachers 1)
set_tests_properties(test_comm_stops_on_timeout PROPERTIES
  ENVIRONMENT "${rt_comm_env};RT_TEST_COMM_STALL=stream_roundtrip" PROCESSORS 2 TIMEOUT 200)

# Fault scenarios: comm timeout 3 s, the whole job must end within 15 s.
# Open MPI's mpiexec normally kills the job itself when a rank dies
# (first kill variant); with orte_abort_on_non_zero_status 0 it lets the
# survivors run, which exercises retort's own timeout path (the _survivor
# variants).
set(rt_fault ${CMAKE_CURRENT_SOURCE_DIR}/comm_fault.sh)
set(rt_keep_going --mca orte_abort_on_non_zero_status 0)
# rt_comm_fault_mode(NAME RANKS BOUND REGEX MODE [extra mpiexec options...])
function(rt_comm_fault_mode name np bound regex mode)
  add_test(NAME comm_fault_${name}
           COMMAND bash ${rt_fault} ${bound} ${regex} ${RT_MPIEXEC} ${ARGN} -np ${np}
                   $<TARGET_FILE:test_comm_fault> ${mode} 3)
  set_tests_properties(comm_fault_${name} PROPERTIES
    ENVIRONMENT "${rt_comm_env}" PROCESSORS ${np} TIMEOUT 60)
endfunction()

rt_comm_fault_mode(stream_kill 2 15
  "rank 0 .*exited on signal 9|no record from teacher rank 0" stream-kill)
rt_comm_fault_mode(stream_kill_survivor 2 15
  "no record from teacher rank 0 for 3 s \\(dead or stalled\\?\\)" stream-kill ${rt_keep_going})
rt_comm_fault_mode(stream_stall 2 15
  "no record from teacher rank 0 for 3 s \\(dead or stalled\\?\\)" stream-stall)
rt_comm_fault_mode(credit_stall 2 15
  "student 0 \\(world rank 1\\) returned no credit for 3 s" credit-stall)
rt_comm_fault_mode(allreduce_kill 3 15
  "rank 2 .*exited on signal 9|no sign of life from world rank 2" allreduce-kill)
rt_comm_fault_mode(allreduce_kill_survivor 3 15
  "no sign of life from world rank 2 \\(dead or stalled\\?\\)" allreduce-kill ${rt_keep_going})
rt_comm_fault_mode(allreduce_stall 3 15
  "no sign of life from world rank 2 \\(dead or stalled\\?\\)" allreduce-stall)
