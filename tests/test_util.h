/* Helpers every CUnit test file shares: a private temporary folder per run
 * and its removal, path joining, and the suite runner (register the cases,
 * optionally only the one an environment variable names, run verbosely,
 * exit code = whether anything failed). Header-only: each test is its own
 * executable. */
#ifndef RT_TEST_UTIL_H
#define RT_TEST_UTIL_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_rand.h"

/* A float uniform in [-1, 1) (24 random bits) from 64 random bits, e.g.
 * rt_splitmix64's: the random test inputs of test_prune and test_lowrank. */
static inline float rt_test_unif(uint64_t bits) {
    return (float)((bits >> 40) / 16777216.0) * 2.0f - 1.0f;
}

static inline int rt_test_rm_entry(const char *path, const struct stat *sb, int flag,
                                   struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* rm -rf path (no-op when it does not exist). */
static inline void rt_test_rm_rf(const char *path) {
    nftw(path, rt_test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A new folder /tmp/rt_test_<name>_XXXXXX (mkdtemp), as a malloc'd string;
 * NULL when it cannot be made. */
static inline char *rt_test_mkdtemp(const char *name) {
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "/tmp/rt_test_%s_XXXXXX", name);
    return mkdtemp(tmpl) ? strdup(tmpl) : NULL;
}

/* a + "/" + b, malloc'd. */
static inline char *rt_test_join(const char *a, const char *b) {
    char *p = malloc(strlen(a) + strlen(b) + 2);
    if (p) sprintf(p, "%s/%s", a, b);
    return p;
}

typedef struct {
    const char *name;
    void (*fn)(void);
} rt_test_case;

/* Initializes the registry and adds suite `name` with the n cases; when the
 * environment variable `only_env` (may be NULL) is set, only the case of
 * that name. NULL on a CUnit failure. */
static inline CU_pSuite rt_test_suite(const char *name, CU_InitializeFunc init,
                                      CU_CleanupFunc clean, const rt_test_case *cases, size_t n,
                                      const char *only_env) {
    if (CU_initialize_registry() != CUE_SUCCESS) return NULL;
    CU_pSuite s = CU_add_suite(name, init, clean);
    if (!s) return NULL;
    const char *only = only_env ? getenv(only_env) : NULL;
    for (size_t i = 0; i < n; i++)
        if ((!only || strcmp(only, cases[i].name) == 0) &&
            !CU_add_test(s, cases[i].name, cases[i].fn))
            return NULL;
    return s;
}

/* Runs the registry verbosely, frees it, and returns the exit code: 1 when
 * any assertion or test failed. */
static inline int rt_test_finish(void) {
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    const unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}

#endif
