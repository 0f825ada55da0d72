/* `retort prepare`: text files -> tokenizer + train/val token shards.
 * The work is data_prepare (data/); this maps the command line onto it. */
#include <stdio.h>

#include "cli.h"
#include "cmds.h"
#include "data.h"

int trainer_cmd_prepare(int argc, char **argv) {
    cli_args *a = NULL;
    int rc = cli_parse(&trainer_spec_prepare, argc, argv, &a);
    if (rc >= 0) return rc;

    int n_inputs = 0;
    data_prepare_opts o = data_prepare_defaults();
    o.inputs = cli_list(a, "input", &n_inputs);
    o.n_inputs = n_inputs;
    o.out_dir = cli_str(a, "out");
    o.vocab_size = cli_int(a, "vocab-size");
    o.val_fraction = cli_real(a, "val-fraction");
    o.tokenizer_dir = cli_str(a, "tokenizer");
    o.verbose = !cli_flag(a, "quiet");
    if (o.tokenizer_dir && cli_has(a, "vocab-size") && o.verbose)
        fprintf(stderr, "prepare: --vocab-size is ignored with --tokenizer (the vocabulary "
                        "comes from %s)\n", o.tokenizer_dir);

    rt_status st = data_prepare(&o, NULL);
    cli_args_free(a);
    return rt_report(st);
}
