/* The `retort` program: finds the command named by argv[1] in the table
 * below and hands it the remaining arguments (see cmds.h). */
#include <stdio.h>
#include <string.h>

#include <dnnl.h>
#include <hdf5.h>
#include <jansson.h>
#include <mpi.h>
#include <zstd.h>

#include "bench.h"
#include "cmds.h"
#include "rt_status.h"

#ifndef RETORT_VERSION
#define RETORT_VERSION "0.1.0" /* keep equal to project(VERSION) in CMakeLists.txt */
#endif

/* One line per command: name, summary for `retort --help`, entry point. */
static const trainer_command commands[] = {
    {"prepare", "text files -> BPE tokenizer + train/val token shards", trainer_cmd_prepare},
    {"train", "train or distill a model from an INI config (under mpirun)", trainer_cmd_train},
    {"label", "precompute a run's soft labels into an offline cache (under mpirun)",
     trainer_cmd_label},
    {"eval", "loss and perplexity of a checkpoint on a token shard", trainer_cmd_eval},
    {"generate", "sample text from a checkpoint", trainer_cmd_generate},
    {"prune", "prune a checkpoint (magnitude, wanda, N:M, heads, ffn)", trainer_cmd_prune},
    {"export", "write a deploy file (optionally int8) from a checkpoint", trainer_cmd_export},
    {"info", "describe a checkpoint: kind, step, shape, config", trainer_cmd_info},
    {"bench", "measure training and inference speed (bench student|infer)", trainer_cmd_bench},
    {"report", "evaluate models side by side: report.md, SVG plots, JSON", trainer_cmd_report},
};
enum { N_COMMANDS = (int)(sizeof commands / sizeof commands[0]) };

static void usage(FILE *f) {
    fprintf(f, "usage: retort <command> [options]\n"
               "       retort <command> --help\n\n"
               "retort distills large transformer language models into small, fast ones on CPU\n"
               "clusters: prepare data, train or distill under mpirun, then prune, export,\n"
               "evaluate and generate.\n\n"
               "commands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\noptions:\n"
               "  -h, --help  show this help and exit\n"
               "  --version   show the version of retort and its libraries and exit\n\n"
               "Run 'retort <command> --help' for the options of a command.\n");
}

static void version(void) {
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    unsigned h5_major = 0, h5_minor = 0, h5_release = 0;
    const dnnl_version_t *dnnl = dnnl_version();
    H5get_libversion(&h5_major, &h5_minor, &h5_release);
    /* Allowed before MPI_Init (MPI-3.0, 8.1.1). */
    MPI_Get_library_version(mpi, &len);
    mpi[strcspn(mpi, ",\n")] = '\0';
    printf("retort %s\n", RETORT_VERSION);
    printf("  oneDNN %d.%d.%d, HDF5 %u.%u.%u, %s, zstd %s, jansson %s\n", dnnl->major,
           dnnl->minor, dnnl->patch, h5_major, h5_minor, h5_release, mpi, ZSTD_versionString(),
           jansson_version_str());
}

static const trainer_command *find_command(const char *name) {
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static int unknown_command(const char *name) {
    const char *names[N_COMMANDS];
    for (int i = 0; i < N_COMMANDS; i++) names[i] = commands[i].name;
    const char *near = name[0] == '-' ? NULL : cli_closest(name, names, N_COMMANDS);
    if (name[0] == '-')
        return rt_report(rt_fail(RT_ERR_ARGS, "unknown option '%s' (see 'retort --help')", name));
    if (near)
        return rt_report(
            rt_fail(RT_ERR_ARGS, "unknown command '%s' (did you mean '%s'?)", name, near));
    return rt_report(rt_fail(RT_ERR_ARGS, "unknown command '%s' (see 'retort --help')", name));
}

int main(int argc, char **argv) {
    /* HDF5 1.10.8 cannot close a file whose flush once failed (a full disk:
     * its cache is left "slist already enabled"), and its atexit handler
     * then crashes on that file (rc 139 after a clean one-line error).
     * Every file retort writes is closed explicitly or abandoned as a
     * temporary, so the handler has nothing to do: skip it. */
    H5dont_atexit();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0) {
        version();
        return 0;
    }
    if (strcmp(name, "help") == 0) { /* `retort help train` = `retort train --help` */
        if (argc < 3) {
            usage(stdout);
            return 0;
        }
        const trainer_command *c = find_command(argv[2]);
        if (!c) return unknown_command(argv[2]);
        static char help_flag[] = "--help";
        char *help_argv[] = {argv[2], help_flag, NULL};
        return c->run(2, help_argv);
    }
    const trainer_command *c = find_command(name);
    if (!c) return unknown_command(name);
    return c->run(argc - 1, argv + 1);
}
