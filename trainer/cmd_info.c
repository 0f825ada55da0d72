/* `retort info CKPT [--json] [--verify]`: what a checkpoint holds, from
 * its metadata (ckpt_info, checkpoints/info.c), and with --verify a full
 * checksum pass over every dataset (ckpt_verify). Metadata alone cannot
 * show a flipped bit in the weights; the checksum pass can, at the cost of
 * reading the whole file, hence a flag rather than the default. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "cli.h"
#include "cmds.h"

/* *what: what an OK means for this kind of file. */
static rt_status verify_file(const char *path, const char **what) {
    ckpt_reader *r = NULL;
    rt_status st = ckpt_open(path, &r);
    if (st == RT_OK) st = ckpt_verify(r);
    *what = r && strcmp(ckpt_reader_kind(r), "hf") == 0
                ? "every tensor read and checked against config.json; safetensors has no "
                  "checksums"
                : "every dataset matches its checksum";
    ckpt_reader_close(r);
    return st;
}

/* --json --verify: ckpt_info's object with "verified" (and "verify_error")
 * added, so that stdout stays exactly one JSON object. */
static rt_status info_json_verified(const char *path) {
    char *buf = NULL, *s = NULL;
    size_t len = 0;
    json_t *j = NULL;
    rt_status st = RT_OK;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem) return rt_fail(RT_ERR_NOMEM, "info: out of memory for the JSON summary");
    st = ckpt_info(path, 1, mem);
    fclose(mem);
    if (st != RT_OK) goto cleanup;
    json_error_t err;
    j = json_loadb(buf, len, 0, &err);
    if (!json_is_object(j)) {
        st = rt_fail(RT_ERR_INTERNAL, "info: %s: ckpt_info printed no JSON object (%s)", path,
                     err.text);
        goto cleanup;
    }
    const char *what;
    rt_status vst = verify_file(path, &what);
    json_object_set_new(j, "verified", json_boolean(vst == RT_OK));
    if (vst != RT_OK) json_object_set_new(j, "verify_error", json_string(rt_last_error()));
    s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_COMPACT);
    if (!s) {
        st = rt_fail(RT_ERR_NOMEM, "info: out of memory printing the JSON summary");
        goto cleanup;
    }
    printf("%s\n", s);
    st = vst; /* the message of a failed verify is still rt_last_error() */
cleanup:
    free(s);
    json_decref(j);
    free(buf);
    return st;
}

int trainer_cmd_info(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&trainer_spec_info, argc, argv, &a);
    if (rc >= 0) return rc;
    int n = 0;
    const char *path = cli_positionals(a, &n)[0];
    const int json = cli_flag(a, "json"), verify = cli_flag(a, "verify");
    rt_status st;
    if (json && verify) {
        st = info_json_verified(path);
    } else {
        st = ckpt_info(path, json, stdout);
        if (st == RT_OK && verify) {
            const char *what;
            st = verify_file(path, &what);
            if (st == RT_OK)
                printf("verify       OK (%s)\n", what);
            else
                printf("verify       FAILED: %s\n", rt_last_error());
        }
    }
    fflush(stdout);
    cli_args_free(a);
    return rt_report(st);
}
