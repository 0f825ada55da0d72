/* Text helpers of the command line, shared by the option parser (cli.c)
 * and the config reader (config.c): number formatting for bounds and
 * defaults, word-wrapped help text, and "did you mean" suggestions. They
 * live apart from cli.c so that config.c can use them without depending on
 * the parser, which depends on config.c for the train command's help. */
#include "cli_text.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

void cli_fmt_number(char *buf, size_t cap, double x) {
    if (isinf(x)) {
        snprintf(buf, cap, "%s", x > 0 ? "inf" : "-inf");
        return;
    }
    if (x == floor(x) && fabs(x) >= 1e6) {
        int e = (int)floor(log10(fabs(x)) + 1e-9);
        if (fabs(x) == pow(10, e) && e <= 300) {
            snprintf(buf, cap, "%s1e%d", x < 0 ? "-" : "", e);
            return;
        }
    }
    if (x == floor(x) && fabs(x) < 1e15)
        snprintf(buf, cap, "%.0f", x);
    else
        snprintf(buf, cap, "%g", x);
}

void cli_wrap(FILE *f, const char *text, int first_col, int indent, int width) {
    int col = first_col;
    bool line_has_word = false;
    const char *p = text;
    while (*p) {
        if (*p == '\n') {
            fputc('\n', f);
            col = 0;
            line_has_word = false;
            p++;
            continue;
        }
        if (*p == ' ') {
            p++;
            continue;
        }
        size_t n = strcspn(p, " \n");
        /* CLI_NBSP counts as part of the word and prints as a space. */
        if (line_has_word && col + 1 + (int)n > width) {
            fputc('\n', f);
            col = 0;
            line_has_word = false;
        }
        if (col < indent) {
            fprintf(f, "%*s", indent - col, "");
            col = indent;
        } else if (line_has_word) {
            fputc(' ', f);
            col++;
        }
        for (size_t i = 0; i < n; i++) fputc(p[i] == CLI_NBSP[0] ? ' ' : p[i], f);
        col += (int)n;
        line_has_word = true;
        p += n;
    }
    fputc('\n', f);
}

static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 1 << 20;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

const char *cli_closest(const char *word, const char *const *candidates, int n) {
    size_t len = strlen(word);
    const char *best = NULL;
    int best_d = 1 << 20;
    for (int i = 0; i < n; i++) {
        int d = edit_distance(word, candidates[i]);
        if (d < best_d) best_d = d, best = candidates[i];
    }
    /* A typo changes a letter or two; more than that is another word. */
    int limit = len <= 4 ? 1 : len <= 9 ? 2 : 3;
    if (best && best_d <= limit && (size_t)best_d < len) return best;
    /* A unique prefix ("--vocab" for --vocab-size) is also worth naming. */
    if (len >= 3) {
        const char *hit = NULL;
        for (int i = 0; i < n; i++)
            if (strncmp(candidates[i], word, len) == 0) {
                if (hit) return NULL;
                hit = candidates[i];
            }
        return hit;
    }
    return NULL;
}

