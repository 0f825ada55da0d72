/* libFuzzer harness: the INI config and --set overrides (trainer/config.c).
 * The input is INI text, optionally followed by NUL-separated --set
 * strings ("section.key=value"): trainer_config_load_string parses,
 * applies and validates them; a config that loads is written back with
 * trainer_config_to_ini and must read back (the round trip the trainer
 * relies on when it stores the config text in a checkpoint). */
#include "fuzz_util.h"

#include <string.h>

#include "config.h"

enum { MAX_SETS = 8 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = '\0';
    const char *sets[MAX_SETS];
    int n = 0;
    for (char *p = text + strlen(text); p < text + size && n < MAX_SETS;) {
        p++; /* past a NUL */
        sets[n++] = p;
        p += strlen(p);
    }
    trainer_config c;
    if (trainer_config_load_string(text, "fuzz.ini", sets, n, &c) == RT_OK) {
        char *ini = NULL;
        if (trainer_config_to_ini(&c, &ini) != RT_OK) abort();
        trainer_config back;
        if (trainer_config_load_string(ini, "roundtrip.ini", NULL, 0, &back) != RT_OK) {
            fprintf(stderr, "fuzz_config: a loaded config does not read back: %s\n%s\n",
                    rt_last_error(), ini);
            abort();
        }
        if (!trainer_config_equal(&c, &back)) {
            fprintf(stderr, "fuzz_config: a loaded config reads back different:\n%s\n", ini);
            abort();
        }
        free(ini);
    }
    free(text);
    return 0;
}
