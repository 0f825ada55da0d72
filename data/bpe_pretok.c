/* GPT-2 pre-tokenization with PCRE2, and GPT-2's byte <-> unicode alphabet.
 *
 * Invalid UTF-8: PCRE2 in UTF mode refuses invalid subjects, and GPT-2
 * itself only ever sees valid text (Python str). We cut the input into
 * maximal runs of valid UTF-8 (by the same rules PCRE2 checks: no overlong
 * forms, no surrogates, nothing above U+10FFFF), run the pattern over each
 * run with PCRE2_NO_UTF_CHECK, and emit every byte that starts no valid
 * sequence as a pre-token of its own. Valid text therefore splits exactly as
 * GPT-2 splits it, and any byte string splits into pieces that concatenate
 * back to it. (PCRE2_MATCH_INVALID_UTF would do much the same; the explicit
 * split keeps the rule visible and independent of PCRE2's version.) */
#include <stdio.h>
#include <string.h>

#include "bpe_internal.h"

static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

rt_status data_pretok_init(data_pretok *p) {
    memset(p, 0, sizeof *p);
    int err = 0;
    PCRE2_SIZE off = 0;
    /* ANCHORED: the alternatives cover every character, so consecutive
     * matches tile the subject; anchoring also keeps the JIT usable. */
    p->code = pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED,
                            PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &err, &off, NULL);
    if (!p->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return rt_fail(RT_ERR_INTERNAL, "pcre2: cannot compile GPT-2's pattern: %s", msg);
    }
    /* The JIT is an optimisation only: without it pcre2_match interprets. */
    (void)pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE);
    p->md = pcre2_match_data_create_from_pattern(p->code, NULL);
    p->mctx = pcre2_match_context_create(NULL);
    /* `\s+(?!\S)` backtracks over whitespace runs; a large JIT stack keeps
     * very long runs on the fast path. */
    p->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!p->md || !p->mctx) {
        data_pretok_free(p);
        return rt_fail(RT_ERR_NOMEM, "out of memory for the pre-tokenizer");
    }
    if (p->jit_stack) pcre2_jit_stack_assign(p->mctx, NULL, p->jit_stack);
    return RT_OK;
}

void data_pretok_free(data_pretok *p) {
    if (!p) return;
    pcre2_jit_stack_free(p->jit_stack);
    pcre2_match_context_free(p->mctx);
    pcre2_match_data_free(p->md);
    pcre2_code_free(p->code);
    memset(p, 0, sizeof *p);
}

/* Length of the valid UTF-8 sequence starting at s (1..4), or 0. */
static int utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    int len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) len = 3, hi = 0x9F; /* no UTF-16 surrogates */
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F; /* nothing above U+10FFFF */
    else return 0;
    if ((size_t)len > n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

/* Runs the pattern over one valid UTF-8 run. */
static rt_status pretok_valid_run(data_pretok *p, const char *run, size_t n, data_piece_fn fn,
                                  void *ctx) {
    size_t at = 0;
    while (at < n) {
        int rc = pcre2_match(p->code, (PCRE2_SPTR)run, n, at, PCRE2_NO_UTF_CHECK, p->md, p->mctx);
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return rt_fail(RT_ERR_INTERNAL, "pcre2: pre-tokenizer failed at byte %zu: %s", at,
                           msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
        /* Every character matches some alternative, so matches tile the run. */
        RT_ASSERT(ov[0] == at && ov[1] > at && ov[1] <= n);
        RT_TRY(fn(ctx, run + at, ov[1] - at));
        at = ov[1];
    }
    return RT_OK;
}

rt_status data_pretok_run(data_pretok *p, const char *text, size_t n, data_piece_fn fn,
                          void *ctx) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        int len;
        while (j < n && (len = utf8_seq_len(s + j, n - j)) > 0) j += (size_t)len;
        if (j > i) RT_TRY(pretok_valid_run(p, text + i, j - i, fn, ctx));
        if (j < n) RT_TRY(fn(ctx, text + j, 1)); /* a byte that starts no valid sequence */
        i = j < n ? j + 1 : j;
    }
    return RT_OK;
}

rt_status data_pretokenize(const char *text, size_t n, data_piece_fn fn, void *ctx) {
    data_pretok p;
    RT_TRY(data_pretok_init(&p));
    rt_status st = data_pretok_run(&p, text, n, fn, ctx);
    data_pretok_free(&p);
    return st;
}

/* ---- GPT-2's byte <-> unicode alphabet ---- */

/* Printable Latin-1 bytes stand for themselves; the other 68 bytes (0x00-0x20,
 * 0x7F-0xA0, 0xAD) map to U+0100..U+0143 in byte order (GPT-2 encoder.py,
 * bytes_to_unicode), which gives these closed forms. */
static int byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t data_byte_to_cp(unsigned char b) {
    if (byte_is_printable(b)) return b;
    if (b <= 0x20) return 256u + b;           /* U+0100..U+0120 */
    if (b >= 0x7F && b <= 0xA0) return 289u + (b - 0x7Fu); /* U+0121..U+0142 */
    return 323u;                              /* 0xAD -> U+0143 */
}

/* Code point -> byte, or -1 when cp is not in the alphabet. */
static int cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp <= 288) return (int)(cp - 256);
    if (cp <= 322) return (int)(cp - 289 + 0x7F);
    if (cp == 323) return 0xAD;
    return -1;
}

size_t data_bytes_to_alpha(const char *bytes, size_t n, char *dst) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = data_byte_to_cp((unsigned char)bytes[i]);
        if (cp < 0x80) {
            dst[w++] = (char)cp;
        } else { /* every code point of the alphabet is below U+0800 */
            dst[w++] = (char)(0xC0 | (cp >> 6));
            dst[w++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return w;
}

int64_t data_alpha_to_bytes(const char *s, char *dst) {
    const unsigned char *u = (const unsigned char *)s;
    int64_t w = 0;
    size_t i = 0;
    while (u[i]) {
        uint32_t cp;
        if (u[i] < 0x80) {
            cp = u[i];
            i += 1;
        } else if ((u[i] & 0xE0) == 0xC0 && (u[i + 1] & 0xC0) == 0x80) {
            cp = ((uint32_t)(u[i] & 0x1F) << 6) | (u[i + 1] & 0x3F);
            i += 2;
        } else {
            return -1; /* 3- and 4-byte characters are outside the alphabet */
        }
        int b = cp_to_byte(cp);
        if (b < 0) return -1;
        dst[w++] = (char)b;
    }
    return w;
}
