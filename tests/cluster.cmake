# The cluster path (tests/slurm.sh): launch/slurm.sbatch under a real Slurm
# started on localhost, with time-limit and pre-emption requeues. Exit 77
# (skipped, with the reason printed) only where Slurm cannot start.
add_test(NAME slurm
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm.sh $<TARGET_FILE:retort>)
set_tests_properties(slurm PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=1" TIMEOUT 400
                     PROCESSORS 2 SKIP_RETURN_CODE 77)

# launch/mpirun.sh's OpenMP settings per rank (a stand-in binary prints
# them): OMP_WAIT_POLICY=passive when ranks x threads exceed the cores.
add_test(NAME launch_mpirun COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/launch_mpirun.sh)
set_tests_properties(launch_mpirun PROPERTIES TIMEOUT 120 PROCESSORS 2)
