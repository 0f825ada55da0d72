/* Tests for libretort_data: pre-tokenization, BPE training/encode/decode,
 * tokenizer files, HDF5 token shards, the batch sampler and prepare.
 *
 * References are independent of the C: hand-derived splits of GPT-2's regex,
 * a hand-traced BPE training case, and fixtures made by
 * tests/fixtures/data_make_ref.py (Python `regex` + a naive BPE trainer +
 * GPT-2's encoder.py bpe()). Every corpus is generated in a mkdtemp folder. */
#define _GNU_SOURCE
#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "test_util.h"

/* ------------------------------------------------------------ helpers */

static void rm_rf(const char *path) { rt_test_rm_rf(path); }

static char *make_tmpdir(void) {
    char *d = rt_test_mkdtemp("data");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    return d;
}

static char *join(const char *a, const char *b) { return rt_test_join(a, b); }

static void write_bytes(const char *dir, const char *name, const void *data, size_t n) {
    char *p = join(dir, name);
    FILE *f = fopen(p, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(data, 1, n, f), n);
    fclose(f);
    free(p);
}

static void write_text(const char *dir, const char *name, const char *text) {
    write_bytes(dir, name, text, strlen(text));
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    buf[got] = '\0';
    if (n) *n = got;
    return buf;
}

static int has_error(const char *needle) {
    int ok = strstr(rt_last_error(), needle) != NULL;
    if (!ok) printf("\n    error message \"%s\" lacks \"%s\"\n", rt_last_error(), needle);
    return ok;
}

static uint64_t rng_state = 0x1234567887654321ULL;
static uint64_t rng_next(void) { /* xorshift64*: test data only */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}
static uint32_t rng_below(uint32_t n) { return (uint32_t)(rng_next() % n); }

static uint64_t splitmix64_first(uint64_t k) { /* first output of splitmix64 seeded with k */
    uint64_t z = k + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------ pre-tokenizer */

#define MAX_PIECES 4096
typedef struct {
    int n;
    char *piece[MAX_PIECES];
    size_t len[MAX_PIECES];
} pieces;

static rt_status collect_piece(void *ctx, const char *p, size_t len) {
    pieces *ps = ctx;
    if (ps->n == MAX_PIECES) return rt_fail(RT_ERR_ARGS, "too many pieces");
    ps->piece[ps->n] = malloc(len + 1);
    memcpy(ps->piece[ps->n], p, len);
    ps->piece[ps->n][len] = '\0';
    ps->len[ps->n++] = len;
    return RT_OK;
}

static void pieces_free(pieces *ps) {
    for (int i = 0; i < ps->n; i++) free(ps->piece[i]);
    ps->n = 0;
}

/* Splits `in` (n bytes) and compares with the NULL-terminated list `exp`
 * (exp_len gives lengths when pieces hold NULs, else NULL). */
static void check_split(const char *in, size_t n, const char *const *exp, const size_t *exp_len) {
    pieces ps = {0};
    CU_ASSERT_EQUAL_FATAL(data_pretokenize(in, n, collect_piece, &ps), RT_OK);
    int n_exp = 0;
    while (exp[n_exp]) n_exp++;
    int ok = ps.n == n_exp;
    for (int i = 0; ok && i < n_exp; i++) {
        size_t el = exp_len ? exp_len[i] : strlen(exp[i]);
        ok = ps.len[i] == el && memcmp(ps.piece[i], exp[i], el) == 0;
    }
    if (!ok) {
        printf("\n    split of \"%s\" gave %d pieces:", in, ps.n);
        for (int i = 0; i < ps.n; i++) printf(" [%s]", ps.piece[i]);
        printf("\n");
    }
    CU_ASSERT(ok);
    pieces_free(&ps);
}

#define SPLIT(in, ...)                                                                       \
    do {                                                                                     \
        const char *exp_[] = {__VA_ARGS__, NULL};                                            \
        check_split(in, strlen(in), exp_, NULL);                                             \
    } while (0)

/* Expected pieces derived by hand from the regex: `\s+(?!\S)` takes a
 * whitespace run minus its last character when a non-space follows, so
 * that character can lead the next word as " word". */
static void test_pretokenize_known(void) {
    SPLIT("Hello world's  test 123!!", "Hello", " world", "'s", " ", " test", " 123", "!!");
    SPLIT("a   ", "a", "   ");
    SPLIT("a \n b", "a", " \n", " b");
    SPLIT("I'll've", "I", "'ll", "'ve");
    SPLIT("don't", "don", "'t");
    SPLIT("He's  'S'", "He", "'s", " ", " '", "S", "'");
    SPLIT("x  \n\n  y", "x", "  \n\n ", " y");
    SPLIT("$100.50", "$", "100", ".", "50");
    SPLIT("\t\tfoo", "\t", "\t", "foo");
    SPLIT("end.\n", "end", ".", "\n");
    SPLIT("  lead", " ", " lead");
    SPLIT("\xC3\x80\xC3\x89 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xD9\xA1\xD9\xA2\xD9\xA3", /* ÀÉ 日本語 ١٢٣ */
          "\xC3\x80\xC3\x89", " \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", " \xD9\xA1\xD9\xA2\xD9\xA3");
    SPLIT("ab\xC2\xA0\xC2\xA0" "cd", "ab", "\xC2\xA0", "\xC2\xA0", "cd"); /* NBSP is \s */
    SPLIT("\xF0\x9F\x98\x80\xF0\x9F\x98\x80 ok", "\xF0\x9F\x98\x80\xF0\x9F\x98\x80", " ok");
    /* A NUL is neither space, letter nor number. */
    const char *nul_exp[] = {"a", "\0", "b", NULL};
    const size_t nul_len[] = {1, 1, 1};
    check_split("a\0b", 3, nul_exp, nul_len);
}

/* Invalid UTF-8: each byte that starts no valid sequence is its own piece
 * and the valid runs around it split as usual. */
static void test_pretokenize_invalid_utf8(void) {
    SPLIT("ab\xFF" "cd", "ab", "\xFF", "cd");
    SPLIT("\xE2\x82x y", "\xE2", "\x82", "x", " y");         /* truncated 3-byte sequence */
    SPLIT("\xC0\x80 z", "\xC0", "\x80", " z");                /* overlong NUL */
    SPLIT("\xED\xA0\x80q", "\xED", "\xA0", "\x80", "q");     /* UTF-16 surrogate */
    SPLIT("\xF4\x90\x80\x80", "\xF4", "\x90", "\x80", "\x80"); /* above U+10FFFF */
    SPLIT("hi \xFE", "hi", " ", "\xFE");
}

/* --------------------------------------------------------- tokenizers */

static data_tokenizer *train_on(const char *text, size_t n, int64_t vocab) {
    data_tokenizer *t = NULL;
    rt_status st = data_tokenizer_train(text, n, vocab, 0, &t);
    if (st != RT_OK) printf("\n    train failed: %s\n", rt_last_error());
    CU_ASSERT_EQUAL_FATAL(st, RT_OK);
    return t;
}

static void expect_merge(data_tokenizer *t, int rank, int32_t l, int32_t r, int32_t res) {
    int32_t gl, gr, gres;
    data_tokenizer_merge(t, rank, &gl, &gr, &gres);
    if (gl != l || gr != r || gres != res)
        printf("\n    merge %d is (%d, %d) -> %d, expected (%d, %d) -> %d\n", rank, gl, gr, gres, l,
               r, res);
    CU_ASSERT(gl == l && gr == r && gres == res);
}

/* "aaab aaab" pre-tokenizes to "aaab" and " aaab". Pair counts: (a,a) 4,
 * (a,b) 2, (' ',a) 1, so merge 0 is (a,a) -> 256 "aa". Then (aa,a) 2 and
 * (a,b) 2 tie; the smaller pair (97, 98) wins -> 257 "ab". Then (aa,ab) 2
 * -> 258 "aaab", then (' ',aaab) 1 -> 259 " aaab", and no pair is left. */
static void test_train_aaab(void) {
    data_tokenizer *t = train_on("aaab aaab", 9, 300);
    CU_ASSERT_EQUAL(data_tokenizer_n_merges(t), 4);
    CU_ASSERT_EQUAL(data_tokenizer_vocab_size(t), 261); /* stopped early: no pairs left */
    CU_ASSERT_EQUAL(data_tokenizer_eot(t), 260);
    expect_merge(t, 0, 'a', 'a', 256);
    expect_merge(t, 1, 'a', 'b', 257);
    expect_merge(t, 2, 256, 257, 258);
    expect_merge(t, 3, ' ', 258, 259);
    size_t len;
    const char *tok = data_tokenizer_token(t, 259, &len);
    CU_ASSERT(len == 5 && memcmp(tok, " aaab", 5) == 0);
    data_ids ids = {0};
    CU_ASSERT_EQUAL(data_tokenizer_encode(t, "aaab aaab", 9, &ids), RT_OK);
    CU_ASSERT(ids.n == 2 && ids.ids[0] == 258 && ids.ids[1] == 259);
    ids.n = 0;
    /* "aaa": (a,a) merges leftmost first -> [aa, a]; (aa, a) is no merge. */
    CU_ASSERT_EQUAL(data_tokenizer_encode(t, "aaa", 3, &ids), RT_OK);
    CU_ASSERT(ids.n == 2 && ids.ids[0] == 256 && ids.ids[1] == 'a');
    data_ids_free(&ids);
    data_tokenizer_destroy(t);

    /* vocab 258 = bytes + one merge + eot. */
    t = train_on("aaab aaab", 9, 258);
    CU_ASSERT_EQUAL(data_tokenizer_n_merges(t), 1);
    CU_ASSERT_EQUAL(data_tokenizer_vocab_size(t), 258);
    expect_merge(t, 0, 'a', 'a', 256);
    data_tokenizer_destroy(t);
}

static void test_train_min_vocab(void) {
    data_tokenizer *t = (data_tokenizer *)1;
    CU_ASSERT_EQUAL(data_tokenizer_train("abc", 3, 256, 0, &t), RT_ERR_ARGS);
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT(has_error("257"));
    t = train_on("abc", 3, DATA_MIN_VOCAB); /* the minimum itself is fine: no merges */
    CU_ASSERT_EQUAL(data_tokenizer_vocab_size(t), DATA_MIN_VOCAB);
    CU_ASSERT_EQUAL(data_tokenizer_n_merges(t), 0);
    data_tokenizer_destroy(t);
}

/* Appends one random code point in UTF-8 from a few scripts. */
static size_t put_random_utf8(char *dst) {
    static const uint32_t lo[] = {0x20, 0xA0, 0x391, 0x410, 0x4E00, 0x1F600, 0x660, 0x3000};
    static const uint32_t span[] = {95, 96, 40, 64, 200, 64, 10, 4};
    int k = (int)rng_below(8);
    uint32_t cp = lo[k] + rng_below(span[k]);
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xC0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A random adversarial string of up to ~200 bytes into buf (room 1024). */
static size_t random_string(char *buf) {
    static const char *const bad[] = {"\xFF", "\xC0\x80", "\xED\xA0\x80", "\xE2\x82",
                                      "\xF4\x90\x80\x80", "\x80", "\xF0\x9F\x98"};
    static const char ws[] = " \t\n\r\v\f";
    size_t n = 0, target = rng_below(200);
    int kind = (int)rng_below(6);
    while (n < target) {
        int k = kind == 5 ? (int)rng_below(5) : kind;
        switch (k) {
        case 0: buf[n++] = (char)rng_below(256); break; /* any byte */
        case 1: buf[n++] = (char)(32 + rng_below(95)); break;
        case 2: n += put_random_utf8(buf + n); break;
        case 3: { /* whitespace runs between words */
            size_t run = rng_below(12);
            for (size_t i = 0; i < run; i++) buf[n++] = ws[rng_below(6)];
            buf[n++] = (char)('a' + rng_below(26));
            break;
        }
        case 4: { /* invalid UTF-8 and NULs amid text */
            const char *b = bad[rng_below(7)];
            size_t bl = strlen(b);
            memcpy(buf + n, b, bl);
            n += bl;
            buf[n++] = rng_below(3) == 0 ? '\0' : (char)('a' + rng_below(26));
            break;
        }
        }
    }
    return n;
}

static int roundtrip_ok(data_tokenizer *t, const char *s, size_t n) {
    data_ids ids = {0};
    char *back = NULL;
    size_t back_n = 0;
    int ok = data_tokenizer_encode(t, s, n, &ids) == RT_OK;
    for (size_t i = 0; ok && i < ids.n; i++)
        ok = ids.ids[i] >= 0 && ids.ids[i] < data_tokenizer_vocab_size(t) &&
             ids.ids[i] != data_tokenizer_eot(t);
    ok = ok && data_tokenizer_decode(t, ids.ids, ids.n, &back, &back_n) == RT_OK;
    ok = ok && back_n == n && memcmp(back, s, n) == 0;
    free(back);
    data_ids_free(&ids);
    return ok;
}

/* A tokenizer trained on text with odd bytes, so merges involve them too. */
static data_tokenizer *train_adversarial(void) {
    size_t cap = 1 << 20, n = 0;
    char *corpus = malloc(cap);
    char *fixture = read_all(RT_FIXTURES_DIR "/data_bpe_corpus.txt", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fixture);
    for (int r = 0; r < 4; r++) {
        memcpy(corpus + n, fixture, strlen(fixture));
        n += strlen(fixture);
    }
    for (int i = 0; i < 600; i++) n += random_string(corpus + n);
    free(fixture);
    data_tokenizer *t = train_on(corpus, n, 700);
    free(corpus);
    return t;
}

static void test_roundtrip_adversarial(void) {
    rng_state = 0x9E3779B97F4A7C15ULL;
    data_tokenizer *t = train_adversarial();
    char buf[1024];
    int failures = 0, n_strings = 4000;
    for (int i = 0; i < n_strings; i++) {
        size_t n = random_string(buf);
        if (!roundtrip_ok(t, buf, n)) failures++;
    }
    /* Every single byte and every byte pair on its own. */
    for (int a = 0; a < 256; a++) {
        buf[0] = (char)a;
        if (!roundtrip_ok(t, buf, 1)) failures++;
        for (int b = 0; b < 256; b++) {
            buf[1] = (char)b;
            if (!roundtrip_ok(t, buf, 2)) failures++;
        }
    }
    printf("\n    round-trip: %d random strings + 65792 byte strings, %d mismatches\n", n_strings,
           failures);
    CU_ASSERT_EQUAL(failures, 0);
    data_tokenizer_destroy(t);
}

/* Very long pre-tokens (one whitespace run, one letter run) must encode in
 * near-linear time and round-trip. */
static void test_long_runs(void) {
    data_tokenizer *t = train_on("aa aaaa    bbbb  \n\n  aaaaaaaa        x", 38, 300);
    size_t n = 200000;
    char *s = malloc(n + 2);
    memset(s, ' ', n);
    s[n] = 'x';
    CU_ASSERT(roundtrip_ok(t, s, n + 1));
    memset(s, 'a', n);
    CU_ASSERT(roundtrip_ok(t, s, n));
    for (size_t i = 0; i < n; i++) s[i] = (char)(i % 3 == 0 ? '\n' : ' ');
    CU_ASSERT(roundtrip_ok(t, s, n));
    free(s);
    data_tokenizer_destroy(t);
}

static void test_decode_bad_id(void) {
    data_tokenizer *t = train_on("abc abc", 7, 260);
    int32_t ids[2] = {97, 5000};
    char *out = (char *)1;
    size_t n;
    CU_ASSERT_EQUAL(data_tokenizer_decode(t, ids, 2, &out, &n), RT_ERR_ARGS);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT(has_error("5000"));
    int32_t eot = data_tokenizer_eot(t);
    CU_ASSERT_EQUAL(data_tokenizer_decode(t, &eot, 1, &out, &n), RT_OK);
    CU_ASSERT_STRING_EQUAL(out, DATA_EOT_TEXT);
    free(out);
    data_tokenizer_destroy(t);
}

static void test_save_load_same_ids(void) {
    char *dir = make_tmpdir();
    char *corpus = read_all(RT_FIXTURES_DIR "/data_bpe_corpus.txt", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(corpus);
    data_tokenizer *t = train_on(corpus, strlen(corpus), 500);
    CU_ASSERT_EQUAL_FATAL(data_tokenizer_save(t, dir), RT_OK);
    data_tokenizer *u = NULL;
    rt_status st = data_tokenizer_load(dir, &u);
    if (st != RT_OK) printf("\n    load: %s\n", rt_last_error());
    CU_ASSERT_EQUAL_FATAL(st, RT_OK);
    CU_ASSERT_EQUAL(data_tokenizer_vocab_size(u), data_tokenizer_vocab_size(t));
    CU_ASSERT_EQUAL(data_tokenizer_eot(u), data_tokenizer_eot(t));
    CU_ASSERT_EQUAL_FATAL(data_tokenizer_n_merges(u), data_tokenizer_n_merges(t));
    int merge_diffs = 0;
    for (int r = 0; r < data_tokenizer_n_merges(t); r++) {
        int32_t a[3], b[3];
        data_tokenizer_merge(t, r, &a[0], &a[1], &a[2]);
        data_tokenizer_merge(u, r, &b[0], &b[1], &b[2]);
        merge_diffs += memcmp(a, b, sizeof a) != 0;
    }
    CU_ASSERT_EQUAL(merge_diffs, 0);
    data_ids x = {0}, y = {0};
    CU_ASSERT_EQUAL(data_tokenizer_encode(t, corpus, strlen(corpus), &x), RT_OK);
    CU_ASSERT_EQUAL(data_tokenizer_encode(u, corpus, strlen(corpus), &y), RT_OK);
    CU_ASSERT(x.n == y.n && memcmp(x.ids, y.ids, x.n * sizeof *x.ids) == 0);
    CU_ASSERT(x.n < strlen(corpus)); /* the merges do compress */

    /* GPT-2's alphabet: space is "Ġ" (U+0120), newline "Ċ" (U+010A). */
    char *vpath = join(dir, "vocab.json"), *mpath = join(dir, "merges.txt");
    char *vocab = read_all(vpath, NULL), *merges = read_all(mpath, NULL);
    CU_ASSERT(strstr(vocab, "\"\xC4\xA0\": 32") != NULL);
    CU_ASSERT(strstr(vocab, "\"\xC4\x8A\": 10") != NULL);
    CU_ASSERT(strstr(vocab, "\"<|endoftext|>\": 499") != NULL);
    CU_ASSERT(strncmp(merges, "#version: 0.2\n", 14) == 0);
    CU_ASSERT(merges[strlen(merges) - 1] == '\n');
    free(vocab);
    free(merges);
    free(vpath);
    free(mpath);
    data_ids_free(&x);
    data_ids_free(&y);
    data_tokenizer_destroy(t);
    data_tokenizer_destroy(u);
    free(corpus);
    rm_rf(dir);
    free(dir);
}

/* Training and encoding against tests/fixtures/data_make_ref.py. */
static void test_reference_fixture(void) {
    char *dir = make_tmpdir();
    char *corpus = read_all(RT_FIXTURES_DIR "/data_bpe_corpus.txt", NULL);
    char *ref_merges = read_all(RT_FIXTURES_DIR "/data_bpe_ref_merges.txt", NULL);
    char *ref_ids = read_all(RT_FIXTURES_DIR "/data_bpe_ref_ids.txt", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(corpus);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref_merges);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref_ids);
    data_tokenizer *t = train_on(corpus, strlen(corpus), 400);
    CU_ASSERT_EQUAL_FATAL(data_tokenizer_save(t, dir), RT_OK);
    char *mpath = join(dir, "merges.txt");
    char *merges = read_all(mpath, NULL);
    int same = strcmp(merges, ref_merges) == 0;
    if (!same) {
        size_t i = 0;
        while (merges[i] && merges[i] == ref_merges[i]) i++;
        printf("\n    merges.txt differs from the reference at byte %zu\n", i);
    }
    CU_ASSERT(same);
    const char *probe =
        "The student's teacher said: \"they'll merge 12 tokens\" -- na\xC3\xAFve caf\xC3\xA9 "
        "\xF0\x9F\x99\x82\n   spaced   out\tthings, strings and springs!!! "
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xD9\xA1\xD9\xA2\xD9\xA3\n";
    data_ids ids = {0};
    CU_ASSERT_EQUAL(data_tokenizer_encode(t, probe, strlen(probe), &ids), RT_OK);
    size_t n_ref = 0, diffs = 0;
    for (char *p = ref_ids, *end; *p && *p != '\n'; p = end, n_ref++) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (n_ref >= ids.n || ids.ids[n_ref] != v) diffs++;
    }
    printf("\n    reference: %zu merges lines equal=%d, probe ids %zu vs %zu, %zu differ\n",
           (size_t)data_tokenizer_n_merges(t), same, ids.n, n_ref, diffs);
    CU_ASSERT_EQUAL(n_ref, ids.n);
    CU_ASSERT_EQUAL(diffs, 0);
    data_ids_free(&ids);
    data_tokenizer_destroy(t);
    free(merges);
    free(mpath);
    free(corpus);
    free(ref_merges);
    free(ref_ids);
    rm_rf(dir);
    free(dir);
}

/* A valid tokenizer folder, then corruptions of each file. */
static void test_load_errors(void) {
    char *dir = make_tmpdir();
    data_tokenizer *t = train_on("low lower lowest", 16, 270), *u = NULL;
    CU_ASSERT_EQUAL_FATAL(data_tokenizer_save(t, dir), RT_OK);
    char *vpath = join(dir, "vocab.json"), *mpath = join(dir, "merges.txt");
    char *vocab = read_all(vpath, NULL), *merges = read_all(mpath, NULL);

    CU_ASSERT_EQUAL(data_tokenizer_load("/nonexistent/rt_tok", &u), RT_ERR_IO);
    CU_ASSERT(has_error("/nonexistent/rt_tok/vocab.json"));

    write_text(dir, "vocab.json", "{\"a\": 0, ");
    CU_ASSERT_EQUAL(data_tokenizer_load(dir, &u), RT_ERR_FORMAT);
    CU_ASSERT(has_error("vocab.json"));
    write_text(dir, "vocab.json", "[1, 2, 3]");
    CU_ASSERT_EQUAL(data_tokenizer_load(dir, &u), RT_ERR_FORMAT);
    CU_ASSERT(has_error("vocab.json"));
    /* Valid JSON, but id 0 ("Ā", byte 0x00) renamed to "Ȁ" (U+0200), outside the alphabet. */
    char *bad = strdup(vocab);
    char *p = strstr(bad, "\"\xC4\x80\": 0");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    memcpy(p + 1, "\xC8\x80", 2);
    write_text(dir, "vocab.json", bad);
    CU_ASSERT_EQUAL(data_tokenizer_load(dir, &u), RT_ERR_FORMAT);
    CU_ASSERT(has_error("vocab.json"));
    free(bad);
    write_text(dir, "vocab.json", vocab);

    char *mp = join(dir, "merges.txt");
    remove(mp);
    CU_ASSERT_EQUAL(data_tokenizer_load(dir, &u), RT_ERR_IO);
    CU_ASSERT(has_error("merges.txt"));
    write_text(dir, "merges.txt", "l o\n");
    CU_ASSERT_EQUAL(data_tokenizer_load(dir, &u), RT_ERR_FORMAT);
    CU_ASSERT(has_error("merges.txt"));
    write_text(dir, "merges.txt", "#version: 0.2\nl o\nzz q\n");
    CU_ASSERT_EQUAL(data_tokenizer_load(dir, &u), RT_ERR_FORMAT);
    CU_ASSERT(has_error("merges.txt line 3"));
    write_text(dir, "merges.txt", "#version: 0.2\nl o w\n");
    CU_ASSERT_EQUAL(data_tokenizer_load(dir, &u), RT_ERR_FORMAT);
    CU_ASSERT(has_error("merges.txt line 2"));
    CU_ASSERT_PTR_NULL(u);

    /* issue 16 item 16: merges.txt or vocab.json pointing at /dev/zero grew
     * to gigabytes; both are refused past DATA_TOKENIZER_MAX_BYTES */
    for (int which = 0; which < 2; which++) {
        const char *victim = which ? vpath : mp;
        write_text(dir, "merges.txt", merges);
        write_text(dir, "vocab.json", vocab);
        remove(victim);
        CU_ASSERT_EQUAL_FATAL(symlink("/dev/zero", victim), 0);
        CU_ASSERT_EQUAL(data_tokenizer_load(dir, &u), RT_ERR_FORMAT);
        CU_ASSERT(has_error(which ? "vocab.json" : "merges.txt") && has_error("larger than 64 MiB"));
        CU_ASSERT_PTR_NULL(u);
        remove(victim);
    }
    write_text(dir, "vocab.json", vocab);
    write_text(dir, "merges.txt", merges);
    CU_ASSERT_EQUAL(data_tokenizer_load(dir, &u), RT_OK);
    data_tokenizer_destroy(u);
    data_tokenizer_destroy(t);
    free(mp);
    free(vocab);
    free(merges);
    free(vpath);
    free(mpath);
    rm_rf(dir);
    free(dir);
}

/* ------------------------------------------------------------- shards */

static int dataset_type_size(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    int size = (int)H5Tget_size(t);
    if (H5Tget_sign(t) != H5T_SGN_NONE) size = -size;
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    return size;
}

static void shard_roundtrip(int64_t vocab, int expect_size) {
    char *dir = make_tmpdir();
    char *path = join(dir, "s.h5");
    int64_t n = 300001;
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)((i * 7919 + (i >> 3)) % vocab);
    tok[0] = (int32_t)(vocab - 1);
    CU_ASSERT_EQUAL_FATAL(data_shard_write(path, tok, n, vocab, "unit test \xC3\xA9"), RT_OK);
    CU_ASSERT_EQUAL(dataset_type_size(path), expect_size);
    int32_t *back = NULL;
    int64_t m = 0, v = 0;
    CU_ASSERT_EQUAL_FATAL(data_shard_load(path, &back, &m, &v), RT_OK);
    CU_ASSERT_EQUAL(m, n);
    CU_ASSERT_EQUAL(v, vocab);
    int64_t diffs = 0;
    for (int64_t i = 0; i < n; i++) diffs += back[i] != tok[i];
    CU_ASSERT_EQUAL(diffs, 0);
    data_shard *s = NULL;
    CU_ASSERT_EQUAL_FATAL(data_shard_open(path, &s), RT_OK);
    CU_ASSERT_STRING_EQUAL(data_shard_source(s), "unit test \xC3\xA9");
    int32_t part[1000];
    CU_ASSERT_EQUAL(data_shard_read(s, 123456, 1000, part), RT_OK);
    CU_ASSERT(memcmp(part, tok + 123456, sizeof part) == 0);
    CU_ASSERT_EQUAL(data_shard_read(s, n - 10, 11, part), RT_ERR_ARGS);
    CU_ASSERT(has_error("s.h5"));
    data_shard_close(s);
    rt_free_aligned(back);
    free(tok);
    /* No temporary file is left beside the shard. */
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));) entries += e->d_name[0] != '.';
    closedir(d);
    CU_ASSERT_EQUAL(entries, 1);
    free(path);
    rm_rf(dir);
    free(dir);
}

static void test_shard_roundtrip_u16(void) { shard_roundtrip(50257, 2); }
static void test_shard_roundtrip_u32(void) { shard_roundtrip(70000, 4); }

/* Writes an HDF5 file with a /tokens dataset of the given type and rank. */
static void write_raw_shard(const char *path, hid_t type, int rank, const void *data,
                            int64_t vocab) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {4, 2};
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, "tokens", type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (vocab > 0) {
        hid_t sc = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(f, "vocab_size", H5T_NATIVE_INT64, sc, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, &vocab);
        H5Aclose(a);
        H5Sclose(sc);
    }
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
}

static void test_shard_errors(void) {
    char *dir = make_tmpdir();
    char *path = join(dir, "bad.h5");
    data_shard *s = NULL;
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 20};
    float ftok[8] = {0};

    CU_ASSERT_EQUAL(data_shard_write(path, tok, 8, 10, "x"), RT_ERR_ARGS); /* 20 >= 10 */
    CU_ASSERT(has_error("bad.h5"));
    CU_ASSERT(access(path, F_OK) != 0);
    char *nodir = join(dir, "missing/x.h5");
    CU_ASSERT_EQUAL(data_shard_write(nodir, tok, 7, 10, "x"), RT_ERR_IO);
    CU_ASSERT(has_error("missing/x.h5"));
    free(nodir);

    CU_ASSERT_EQUAL(data_shard_open(path, &s), RT_ERR_IO); /* missing */
    CU_ASSERT(has_error("bad.h5"));
    write_text(dir, "bad.h5", "not hdf5 at all");
    CU_ASSERT_EQUAL(data_shard_open(path, &s), RT_ERR_FORMAT);
    CU_ASSERT(has_error("bad.h5"));
    write_raw_shard(path, H5T_NATIVE_INT32, 2, tok, 10);
    CU_ASSERT_EQUAL(data_shard_open(path, &s), RT_ERR_FORMAT);
    CU_ASSERT(has_error("dimensions"));
    write_raw_shard(path, H5T_NATIVE_FLOAT, 1, ftok, 10);
    CU_ASSERT_EQUAL(data_shard_open(path, &s), RT_ERR_FORMAT);
    CU_ASSERT(has_error("integer"));
    write_raw_shard(path, H5T_NATIVE_INT32, 1, tok, 0);
    CU_ASSERT_EQUAL(data_shard_open(path, &s), RT_ERR_FORMAT);
    CU_ASSERT(has_error("vocab_size"));
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    CU_ASSERT_EQUAL(data_shard_open(path, &s), RT_ERR_FORMAT);
    CU_ASSERT(has_error("/tokens"));
    CU_ASSERT_PTR_NULL(s);

    /* Token 5 >= vocab_size 4 is caught on read, naming file and index. */
    int32_t neg[8] = {0, 1, 2, 3, 5, 0, 0, 0};
    write_raw_shard(path, H5T_NATIVE_INT32, 1, neg, 4);
    CU_ASSERT_EQUAL_FATAL(data_shard_open(path, &s), RT_OK);
    CU_ASSERT_EQUAL(data_shard_n_tokens(s), 4);
    int32_t out[4];
    CU_ASSERT_EQUAL(data_shard_read(s, 0, 3, out), RT_OK);
    data_shard_close(s);
    write_raw_shard(path, H5T_NATIVE_INT32, 1, (int32_t[8]){0, 1, 7, 3, 0, 0, 0, 0}, 4);
    CU_ASSERT_EQUAL_FATAL(data_shard_open(path, &s), RT_OK);
    CU_ASSERT_EQUAL(data_shard_read(s, 0, 4, out), RT_ERR_FORMAT);
    CU_ASSERT(has_error("index 2"));
    data_shard_close(s);
    data_shard_close(NULL);
    free(path);
    rm_rf(dir);
    free(dir);
}

/* Writes a shard whose /tokens declares `n` int32 tokens but stores none
 * (chunked, nothing written) or, with contiguous = 1, a contiguous one whose
 * storage was never allocated: a 1-2 KB file claiming any size. */
static void write_forged_shard(const char *path, hsize_t n, int contiguous) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t maxd = H5S_UNLIMITED, chunk = 1024;
    hid_t sp = H5Screate_simple(1, &n, contiguous ? NULL : &maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (contiguous) H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_LATE);
    else H5Pset_chunk(dcpl, 1, &chunk);
    hid_t d = H5Dcreate2(f, "tokens", H5T_NATIVE_INT32, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CU_ASSERT_FATAL(d >= 0);
    int64_t vocab = 10;
    hid_t sc = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "vocab_size", H5T_NATIVE_INT64, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &vocab);
    H5Aclose(a), H5Sclose(sc), H5Pclose(dcpl), H5Dclose(d), H5Sclose(sp), H5Fclose(f);
}

/* issue 16 item 2: a 1.5 KB shard whose /tokens declares 2^62 elements
 * wrapped n*4 and overflowed the heap. Every declared extent is now held to
 * the bytes the file stores before anything is allocated; an empty /tokens
 * loads as 0 tokens without allocating. */
static void test_shard_forged_sizes(void) {
    char *dir = make_tmpdir();
    char *path = join(dir, "forged.h5");
    int32_t *tok = NULL;
    int64_t n = -1, vocab = 0;
    const hsize_t claims[] = {(hsize_t)1 << 62, (hsize_t)1 << 40, 1000000};
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        write_forged_shard(path, claims[i], 0);
        CU_ASSERT_EQUAL(data_shard_load(path, &tok, &n, &vocab), RT_ERR_FORMAT);
        CU_ASSERT(has_error("forged.h5") && has_error("/tokens"));
        CU_ASSERT_PTR_NULL(tok);
        CU_ASSERT_PTR_NULL(strchr(rt_last_error(), '\n'));
    }
    write_forged_shard(path, 1000000, 1);
    CU_ASSERT_EQUAL(data_shard_load(path, &tok, &n, &vocab), RT_ERR_FORMAT);
    CU_ASSERT(has_error("declares 1000000 elements") && has_error("truncated or forged"));
    CU_ASSERT_PTR_NULL(tok);
    /* zero tokens: no allocation, n = 0 for the caller to refuse */
    write_forged_shard(path, 0, 1);
    CU_ASSERT_EQUAL(data_shard_load(path, &tok, &n, &vocab), RT_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(vocab, 10);
    CU_ASSERT_PTR_NULL(tok);
    /* rt_alloc_aligned: 0 bytes and sizes that rounding would wrap are errors */
    CU_ASSERT_PTR_NULL(rt_alloc_aligned(0));
    CU_ASSERT_PTR_NULL(rt_alloc_aligned(SIZE_MAX - 10));
    void *one = rt_alloc_aligned(1);
    CU_ASSERT_PTR_NOT_NULL(one);
    rt_free_aligned(one);
    free(path);
    rm_rf(dir);
    free(dir);
}

/* ------------------------------------------------------------ sampler */

static data_sampler *sampler(int64_t n, int32_t T, int32_t G, int32_t R, int32_t r, uint64_t seed) {
    data_sampler *s = NULL;
    rt_status st = data_sampler_create("test.h5", n, T, G, R, r, seed, &s);
    if (st != RT_OK) printf("\n    sampler: %s\n", rt_last_error());
    CU_ASSERT_EQUAL_FATAL(st, RT_OK);
    return s;
}

/* n = 10001, T = 16: W = 625 windows; G = 8: S = 78 steps (1 dropped). */
static void test_sampler_partition(void) {
    const int64_t n = 10001, W = 625;
    const int32_t T = 16, G = 8, R = 2, b = 4;
    data_sampler *s0 = sampler(n, T, G, R, 0, 42), *s1 = sampler(n, T, G, R, 1, 42);
    CU_ASSERT_EQUAL(data_sampler_n_windows(s0), W);
    CU_ASSERT_EQUAL(data_sampler_steps_per_epoch(s0), 78);
    CU_ASSERT_EQUAL(data_sampler_rows(s0), b);
    printf("\n");
    for (int epoch = 0; epoch < 3; epoch++) {
        int *owner = calloc((size_t)W, sizeof *owner); /* 0 unused, 1 rank0, 2 rank1 */
        int bad = 0, used = 0;
        for (int64_t step = epoch * 78; step < (epoch + 1) * 78; step++) {
            int64_t st[2][4];
            CU_ASSERT_EQUAL(data_sampler_windows(s0, step, st[0]), RT_OK);
            CU_ASSERT_EQUAL(data_sampler_windows(s1, step, st[1]), RT_OK);
            for (int r = 0; r < 2; r++)
                for (int i = 0; i < b; i++) {
                    int64_t start = st[r][i];
                    if (start % T != 0 || start < 0 || start / T >= W || start + T + 1 > n) {
                        bad++;
                        continue;
                    }
                    if (owner[start / T]) bad++; /* used twice in this epoch */
                    owner[start / T] = r + 1;
                    used++;
                }
        }
        printf("    epoch %d: %d windows used (S*G = %d), %d repeats/out of range\n", epoch,
               used, 78 * G, bad);
        CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT_EQUAL(used, 78 * G);
        free(owner);
    }
    data_sampler_destroy(s0);
    data_sampler_destroy(s1);
}

static void test_sampler_reproducible_seekable(void) {
    const int64_t n = 50000;
    data_sampler *a = sampler(n, 32, 6, 3, 1, 7), *b = sampler(n, 32, 6, 3, 1, 7);
    data_sampler *c = sampler(n, 32, 6, 3, 1, 8);
    int64_t S = data_sampler_steps_per_epoch(a); /* (49999/32)/6 = 260 */
    CU_ASSERT_EQUAL(S, 260);
    int64_t n_steps = 3 * S + 17;
    int64_t(*seq)[2] = malloc((size_t)n_steps * sizeof *seq);
    int same_as_other_seed = 0;
    for (int64_t k = 0; k < n_steps; k++) {
        int64_t w[2];
        CU_ASSERT_EQUAL(data_sampler_windows(a, k, seq[k]), RT_OK);
        CU_ASSERT_EQUAL(data_sampler_windows(c, k, w), RT_OK);
        same_as_other_seed += w[0] == seq[k][0] && w[1] == seq[k][1];
    }
    /* Seek: b visits the steps in a scrambled order, each in one call. */
    int mismatches = 0;
    for (int64_t i = 0; i < n_steps; i++) {
        int64_t k = (i * 409) % n_steps, w[2];
        CU_ASSERT_EQUAL(data_sampler_windows(b, k, w), RT_OK);
        mismatches += w[0] != seq[k][0] || w[1] != seq[k][1];
    }
    /* A fresh sampler asked for one late step directly. */
    data_sampler *d = sampler(n, 32, 6, 3, 1, 7);
    int64_t w[2];
    CU_ASSERT_EQUAL(data_sampler_windows(d, n_steps - 1, w), RT_OK);
    mismatches += w[0] != seq[n_steps - 1][0] || w[1] != seq[n_steps - 1][1];
    /* Consecutive epochs use different orders. */
    int64_t e0[2], e1[2];
    data_sampler_windows(d, 0, e0);
    data_sampler_windows(d, S, e1);
    printf("\n    seek mismatches %d; steps equal under another seed %d of %lld\n", mismatches,
           same_as_other_seed, (long long)n_steps);
    CU_ASSERT_EQUAL(mismatches, 0);
    CU_ASSERT(same_as_other_seed < 5);
    CU_ASSERT(e0[0] != e1[0] || e0[1] != e1[1]);
    CU_ASSERT_EQUAL(data_sampler_windows(d, -1, w), RT_ERR_ARGS);
    free(seq);
    data_sampler_destroy(a);
    data_sampler_destroy(b);
    data_sampler_destroy(c);
    data_sampler_destroy(d);
}

/* The G windows of a step, in rank order, are the same for R = 1, 2, 4. */
static void test_sampler_rank_independent(void) {
    const int64_t n = 20000;
    const int32_t T = 8, G = 8;
    data_sampler *one = sampler(n, T, G, 1, 0, 99);
    int mismatches = 0;
    for (int R = 2; R <= 8; R *= 2) {
        data_sampler *rs[8];
        for (int r = 0; r < R; r++) rs[r] = sampler(n, T, G, R, r, 99);
        for (int64_t step = 0; step < 700; step += 7) {
            int64_t ref[8], got[8], glob[8];
            data_sampler_windows(one, step, ref);
            for (int r = 0; r < R; r++) data_sampler_windows(rs[r], step, got + r * (G / R));
            data_sampler_global_windows(rs[R - 1], step, glob);
            mismatches += memcmp(ref, got, sizeof ref) != 0;
            mismatches += memcmp(ref, glob, sizeof ref) != 0;
        }
        for (int r = 0; r < R; r++) data_sampler_destroy(rs[r]);
    }
    printf("\n    R=1 vs R=2,4,8 mismatching steps: %d\n", mismatches);
    CU_ASSERT_EQUAL(mismatches, 0);
    data_sampler_destroy(one);
}

/* The permutation is computed per position, not stored: for every window
 * count W in 1..300 (odd and even bit widths, powers of two and one past
 * them) the W positions of an epoch (G = 1) give W distinct windows; and a
 * sampler over 2^43 tokens (2^33 windows of 1024: 64 GiB as a stored
 * permutation) is created at once and draws distinct, in-range windows. */
static void test_sampler_bijection_huge(void) {
    int bad = 0;
    char *seen = malloc(300);
    for (int64_t W = 1; W <= 300; W++) {
        data_sampler *s = sampler(W * 4 + 1, 4, 1, 1, 0, (uint64_t)W);
        if (!s) { bad++; continue; }
        memset(seen, 0, 300);
        for (int64_t step = 0; step < W; step++) {
            int64_t w;
            data_sampler_windows(s, step + W, &w); /* epoch 1 */
            w /= 4;
            if (w < 0 || w >= W || seen[w]) bad++;
            else seen[w] = 1;
        }
        data_sampler_destroy(s);
    }
    free(seen);
    const int64_t n = INT64_C(1) << 43, T = 1024, G = 16, steps = 200;
    data_sampler *h = sampler(n, (int32_t)T, (int32_t)G, 1, 0, 3);
    CU_ASSERT_FATAL(h != NULL);
    CU_ASSERT_EQUAL(data_sampler_n_windows(h), (n - 1) / T);
    int64_t *all = malloc((size_t)(steps * G) * sizeof *all);
    int bad_huge = 0;
    for (int64_t k = 0; k < steps; k++) {
        data_sampler_windows(h, k * 1000003, all + k * G);
        for (int64_t i = 0; i < G; i++) {
            const int64_t w = all[k * G + i];
            bad_huge += w % T != 0 || w < 0 || w + T + 1 > n;
        }
    }
    for (int64_t i = 0; i < steps * G; i++)
        for (int64_t j = 0; j < i; j++) bad_huge += all[i] == all[j];
    printf("\n    W = 1..300: %d repeated or out-of-range windows; 2^33 windows: %d bad in %lld",
           bad, bad_huge, (long long)(steps * G));
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(bad_huge, 0);
    free(all);
    data_sampler_destroy(h);
}

/* Elastic resume: 2 ranks for the first k steps of an epoch, 1 rank (same
 * global batch) for the rest. Every window of the epoch's S*G must be used
 * exactly once, none twice and none skipped. */
static void test_sampler_elastic_coverage(void) {
    const int64_t n = 4097;
    const int32_t T = 8, G = 8;
    data_sampler *two[2] = {sampler(n, T, G, 2, 0, 5), sampler(n, T, G, 2, 1, 5)};
    data_sampler *one = sampler(n, T, G, 1, 0, 5);
    const int64_t S = data_sampler_steps_per_epoch(one), W = data_sampler_n_windows(one);
    int *seen = calloc((size_t)W, sizeof *seen);
    const int64_t epoch = 3, k = S / 3; /* resume point inside epoch 3 */
    for (int64_t s = epoch * S; s < (epoch + 1) * S; s++) {
        int64_t st[8];
        if (s < epoch * S + k) {
            data_sampler_windows(two[0], s, st);
            data_sampler_windows(two[1], s, st + G / 2);
        } else {
            data_sampler_windows(one, s, st);
        }
        for (int i = 0; i < G; i++) seen[st[i] / T]++;
    }
    int64_t once = 0, twice = 0;
    for (int64_t w = 0; w < W; w++) once += seen[w] == 1, twice += seen[w] > 1;
    printf("\n    epoch of %lld steps, resumed at %lld: %lld windows used once, %lld more than "
           "once (of %lld, %lld usable)\n",
           (long long)S, (long long)k, (long long)once, (long long)twice, (long long)W,
           (long long)(S * G));
    CU_ASSERT_EQUAL(once, S * G);
    CU_ASSERT_EQUAL(twice, 0);
    free(seen);
    data_sampler_destroy(two[0]);
    data_sampler_destroy(two[1]);
    data_sampler_destroy(one);
}

static void test_sampler_fill(void) {
    const int64_t n = 1000;
    const int32_t T = 10;
    int32_t *tok = malloc(n * sizeof *tok);
    for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)(i * 3 + 1);
    data_sampler *s = sampler(n, T, 4, 2, 1, 5);
    int32_t in[2 * 10], tg[2 * 10];
    int64_t starts[2];
    int bad = 0;
    for (int64_t step = 0; step < 50; step++) {
        CU_ASSERT_EQUAL(data_sampler_fill(s, tok, step, in, tg), RT_OK);
        data_sampler_windows(s, step, starts);
        for (int i = 0; i < 2; i++)
            for (int t = 0; t < T; t++) {
                bad += in[i * T + t] != (int32_t)((starts[i] + t) * 3 + 1);
                bad += tg[i * T + t] != (int32_t)((starts[i] + t + 1) * 3 + 1);
            }
    }
    CU_ASSERT_EQUAL(bad, 0);
    data_sampler_destroy(s);
    free(tok);
}

/* Reading the rows from the shard window by window gives exactly the rows
 * data_sampler_fill copies out of the whole token array (the reference),
 * for every step of several epochs; a window past the end and a shard of
 * another size are errors. */
static void test_sampler_read(void) {
    char *dir = make_tmpdir();
    char *path = join(dir, "w.h5");
    const int64_t n = 1001, vocab = 5000;
    const int32_t T = 10;
    int32_t *tok = malloc(n * sizeof *tok);
    for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)((i * 7 + 3) % vocab);
    CU_ASSERT_EQUAL_FATAL(data_shard_write(path, tok, n, vocab, NULL), RT_OK);
    data_shard *sh = NULL;
    CU_ASSERT_EQUAL_FATAL(data_shard_open(path, &sh), RT_OK);
    data_sampler *s = sampler(n, T, 6, 3, 2, 77);
    int32_t in[2 * 10], tg[2 * 10], rin[2 * 10], rtg[2 * 10];
    int bad = 0;
    for (int64_t step = 0; step < 60; step++) { /* S = 100 / 6 = 16: almost 4 epochs */
        CU_ASSERT_EQUAL(data_sampler_fill(s, tok, step, in, tg), RT_OK);
        CU_ASSERT_EQUAL(data_sampler_read(s, sh, step, rin, rtg), RT_OK);
        bad += memcmp(in, rin, sizeof in) != 0;
        bad += memcmp(tg, rtg, sizeof tg) != 0;
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* the last full window reads; one token further does not */
    CU_ASSERT_EQUAL(data_shard_read_window(sh, n - T - 1, T, rin, rtg), RT_OK);
    CU_ASSERT_EQUAL(rtg[T - 1], tok[n - 1]);
    CU_ASSERT_EQUAL(data_shard_read_window(sh, n - T, T, rin, rtg), RT_ERR_ARGS);
    CU_ASSERT(has_error("w.h5"));
    CU_ASSERT_EQUAL(data_shard_read_window(sh, n - T, T, rin, NULL), RT_OK);
    data_sampler_destroy(s);
    s = sampler(n - 1, T, 6, 3, 2, 77);
    CU_ASSERT_EQUAL(data_sampler_read(s, sh, 0, rin, rtg), RT_ERR_MISMATCH);
    data_sampler_destroy(s);
    data_shard_close(sh);
    free(tok);
    free(path);
    rm_rf(dir);
    free(dir);
}

/* Fisher-Yates must be unbiased: W = 4 windows, one per step, so each epoch
 * is one of 24 orders; 2400 epochs should hit each ~100 times. */
static void test_sampler_uniform(void) {
    data_sampler *s = sampler(9, 2, 1, 1, 0, 2024);
    CU_ASSERT_EQUAL_FATAL(data_sampler_steps_per_epoch(s), 4);
    int counts[256] = {0};
    const int epochs = 2400;
    for (int e = 0; e < epochs; e++) {
        int code = 0;
        for (int k = 0; k < 4; k++) {
            int64_t w;
            data_sampler_windows(s, (int64_t)e * 4 + k, &w);
            code = code * 4 + (int)(w / 2);
        }
        counts[code]++;
    }
    double chi2 = 0, expect = epochs / 24.0;
    int distinct = 0;
    for (int c = 0; c < 256; c++)
        if (counts[c]) {
            distinct++;
            chi2 += (counts[c] - expect) * (counts[c] - expect) / expect;
        }
    /* 23 degrees of freedom: P(chi2 > 60) < 1e-4. */
    printf("\n    24 orders seen: %d, chi2 = %.1f (limit 60)\n", distinct, chi2);
    CU_ASSERT_EQUAL(distinct, 24);
    CU_ASSERT(chi2 < 60);
    data_sampler_destroy(s);
}

static void test_sampler_errors(void) {
    data_sampler *s = (data_sampler *)1;
    CU_ASSERT_EQUAL(data_sampler_create("x.h5", 1000, 8, 6, 4, 0, 1, &s), RT_ERR_ARGS);
    CU_ASSERT(has_error("6") && has_error("4"));
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_EQUAL(data_sampler_create("tiny.h5", 100, 16, 8, 1, 0, 1, &s), RT_ERR_ARGS);
    CU_ASSERT(has_error("tiny.h5") && has_error("seq_len 16") && has_error("8 sequences"));
    CU_ASSERT_EQUAL(data_sampler_create("x.h5", 1000, 8, 4, 2, 2, 1, &s), RT_ERR_ARGS);
    CU_ASSERT_EQUAL(data_sampler_create("x.h5", 1000, 0, 4, 2, 0, 1, &s), RT_ERR_ARGS);
    /* n = G*T + 1 is the smallest shard that makes one step. */
    CU_ASSERT_EQUAL(data_sampler_create("x.h5", 8 * 16 + 1, 16, 8, 1, 0, 1, &s), RT_OK);
    data_sampler_destroy(s);
    CU_ASSERT_EQUAL(data_sampler_create("x.h5", 8 * 16, 16, 8, 1, 0, 1, &s), RT_ERR_ARGS);
    data_sampler_destroy(NULL);
}

/* ------------------------------------------------------------ prepare */

static const char *const corpus_docs[] = {
    "First document, line one.\nLine two of the first document.\n",
    "Fortune one.\n",
    "Fortune two,\nover two lines.\n",
    "Fortune three \xE2\x80\x94 with \xC3\xBC" "nicode.\n",
    "Second file, one document.\n",
};
#define N_CORPUS_DOCS 5

/* in/: a.txt, quotes (fortune format + .dat + .u8 symlink), sub/b.txt, and
 * things to skip: a binary file, a hidden file, empty and blank files. */
static char *make_corpus(const char *root) {
    char *in = join(root, "in");
    mkdir(in, 0755);
    write_text(in, "a.txt", corpus_docs[0]);
    char quotes[512];
    snprintf(quotes, sizeof quotes, "%s%%\n%s%%\n%%\n%s%%\r\n", corpus_docs[1], corpus_docs[2],
             corpus_docs[3]);
    write_text(in, "quotes", quotes);
    write_bytes(in, "quotes.dat", "\0\0\0\2\0\0\0\3binary", 14);
    char *u8 = join(in, "quotes.u8");
    CU_ASSERT_EQUAL(symlink("quotes", u8), 0);
    free(u8);
    write_bytes(in, "blob.bin", "abc\0def", 7);
    write_text(in, ".hidden", "hidden text is not read\n");
    write_text(in, "empty.txt", "");
    write_text(in, "spaces.txt", "   \n\n\t\n");
    char *sub = join(in, "sub");
    mkdir(sub, 0755);
    write_text(sub, "b.txt", corpus_docs[4]);
    char *loop = join(sub, "loop");
    CU_ASSERT_EQUAL(symlink("..", loop), 0); /* a cycle: visited once */
    free(loop);
    free(sub);
    return in;
}

static rt_status run_prepare(const char *in, const char *out, int64_t vocab, double val,
                             const char *tokdir, data_prepare_summary *sum) {
    data_prepare_opts o = data_prepare_defaults();
    const char *inputs[1] = {in};
    o.inputs = inputs;
    o.n_inputs = 1;
    o.out_dir = out;
    o.vocab_size = vocab;
    o.val_fraction = val;
    o.tokenizer_dir = tokdir;
    o.verbose = 0;
    return data_prepare(&o, sum);
}

/* Decodes a shard and checks it is the expected documents, each + eot. */
static void check_split_shard(const char *path, data_tokenizer *t, const int *want, int n_want) {
    int32_t *tok = NULL;
    int64_t n = 0, vocab = 0;
    CU_ASSERT_EQUAL_FATAL(data_shard_load(path, &tok, &n, &vocab), RT_OK);
    CU_ASSERT_EQUAL(vocab, data_tokenizer_vocab_size(t));
    int64_t eots = 0;
    for (int64_t i = 0; i < n; i++) eots += tok[i] == data_tokenizer_eot(t);
    CU_ASSERT_EQUAL(eots, n_want);
    CU_ASSERT(n > 0 && tok[n - 1] == data_tokenizer_eot(t));
    char *text = NULL;
    size_t len;
    CU_ASSERT_EQUAL(data_tokenizer_decode(t, tok, (size_t)n, &text, &len), RT_OK);
    size_t cap = 4096, w = 0;
    char *expect = calloc(cap, 1);
    for (int i = 0; i < n_want; i++)
        w += (size_t)snprintf(expect + w, cap - w, "%s%s", corpus_docs[want[i]], DATA_EOT_TEXT);
    int same = len == w && memcmp(text, expect, w) == 0;
    if (!same) printf("\n    %s decodes to:\n%s\n    expected:\n%s\n", path, text, expect);
    CU_ASSERT(same);
    free(expect);
    free(text);
    rt_free_aligned(tok);
}

static void test_prepare_corpus(void) {
    char *root = make_tmpdir();
    char *in = make_corpus(root);
    char *out = join(root, "out/nested"); /* created with its parent */
    data_prepare_summary sum;
    const double val = 0.4;
    rt_status st = run_prepare(in, out, 300, val, NULL, &sum);
    if (st != RT_OK) printf("\n    prepare: %s\n", rt_last_error());
    CU_ASSERT_EQUAL_FATAL(st, RT_OK);
    CU_ASSERT_EQUAL(sum.n_files, 5); /* a.txt empty.txt quotes spaces.txt sub/b.txt */
    CU_ASSERT_EQUAL(sum.n_docs, N_CORPUS_DOCS);

    /* The split rule of data.h, computed here independently. */
    int is_val[N_CORPUS_DOCS], n_val = 0;
    uint64_t threshold = (uint64_t)(val * 18446744073709551616.0);
    for (int k = 0; k < N_CORPUS_DOCS; k++) n_val += is_val[k] = splitmix64_first((uint64_t)k) < threshold;
    if (n_val == N_CORPUS_DOCS) is_val[0] = 0, n_val--;
    if (n_val == 0) is_val[N_CORPUS_DOCS - 1] = 1, n_val++;
    int train_docs[N_CORPUS_DOCS], val_docs[N_CORPUS_DOCS], nt = 0, nv = 0;
    for (int k = 0; k < N_CORPUS_DOCS; k++) {
        if (is_val[k]) val_docs[nv++] = k;
        else train_docs[nt++] = k;
    }
    printf("\n    %d train docs, %d val docs; %lld + %lld tokens\n", nt, nv,
           (long long)sum.train_tokens, (long long)sum.val_tokens);
    CU_ASSERT_EQUAL(sum.n_train_docs, nt);
    CU_ASSERT_EQUAL(sum.n_val_docs, nv);

    data_tokenizer *t = NULL;
    CU_ASSERT_EQUAL_FATAL(data_tokenizer_load(out, &t), RT_OK);
    CU_ASSERT_EQUAL(data_tokenizer_vocab_size(t), sum.vocab_size);
    char *train = join(out, "train.h5"), *valp = join(out, "val.h5");
    check_split_shard(train, t, train_docs, nt);
    check_split_shard(valp, t, val_docs, nv);

    /* Deterministic: a second run gives the same tokens. */
    char *out2 = join(root, "out2");
    CU_ASSERT_EQUAL_FATAL(run_prepare(in, out2, 300, val, NULL, NULL), RT_OK);
    char *train2 = join(out2, "train.h5");
    int32_t *a = NULL, *b = NULL;
    int64_t na, nb;
    CU_ASSERT_EQUAL(data_shard_load(train, &a, &na, NULL), RT_OK);
    CU_ASSERT_EQUAL(data_shard_load(train2, &b, &nb, NULL), RT_OK);
    CU_ASSERT(na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0);
    rt_free_aligned(b);

    /* Reusing the tokenizer folder gives the same tokens and vocabulary. */
    char *out3 = join(root, "out3");
    CU_ASSERT_EQUAL_FATAL(run_prepare(in, out3, 0, val, out, NULL), RT_OK);
    char *train3 = join(out3, "train.h5");
    CU_ASSERT_EQUAL(data_shard_load(train3, &b, &nb, NULL), RT_OK);
    CU_ASSERT(na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0);
    char *v1p = join(out, "vocab.json"), *v3p = join(out3, "vocab.json");
    char *v1 = read_all(v1p, NULL), *v3 = read_all(v3p, NULL);
    CU_ASSERT(v1 && v3 && strcmp(v1, v3) == 0);
    free(v1);
    free(v3);
    free(v1p);
    free(v3p);
    rt_free_aligned(a);
    rt_free_aligned(b);
    data_tokenizer_destroy(t);
    free(train);
    free(valp);
    free(train2);
    free(train3);
    free(out2);
    free(out3);
    free(out);
    free(in);
    rm_rf(root);
    free(root);
}

/* A corpus big enough that prepare streams it in pieces: two files of
 * ~1.3 MB (past the 1 MiB at which a file's mapped pages are released) and
 * more than 256 Ki train tokens (several flushes to the shard writer),
 * with CRLF separators and a file that ends without a newline. The shards
 * must hold exactly what encoding each document whole, in walk order, with
 * the split rule of data.h applied here independently, gives. */
#define BIG_DOCS_PER_FILE 2600
static void test_prepare_streamed(void) {
    static const char *const words[] = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta",
                                        "eta", "theta", "iota", "kappa", "lambda", "mu",
                                        "\xC3\xBC" "ber", "na\xC3\xAF" "ve", "42", "x,"};
    char *root = make_tmpdir();
    char *in = join(root, "big");
    mkdir(in, 0755);
    const int n_docs = 2 * BIG_DOCS_PER_FILE;
    char **docs = calloc((size_t)n_docs, sizeof *docs);
    for (int f = 0; f < 2; f++) {
        size_t cap = (size_t)BIG_DOCS_PER_FILE * 1200, w = 0;
        char *text = malloc(cap);
        for (int d = 0; d < BIG_DOCS_PER_FILE; d++) {
            char *doc = malloc(1200);
            size_t dl = 0;
            const int n_words = 40 + (int)rng_below(80);
            for (int i = 0; i < n_words; i++)
                dl += (size_t)sprintf(doc + dl, "%s%s", words[rng_below(16)],
                                      i % 9 == 8 ? "\n" : " ");
            doc[dl++] = '\n';
            doc[dl] = '\0';
            const int last = d == BIG_DOCS_PER_FILE - 1;
            if (last && f == 1) doc[--dl] = '\0'; /* no final newline */
            memcpy(text + w, doc, dl);
            w += dl;
            if (!last) w += (size_t)sprintf(text + w, "%s", d % 3 ? "%\n" : "%\r\n");
            docs[f * BIG_DOCS_PER_FILE + d] = doc;
        }
        CU_ASSERT_FATAL(w > ((size_t)1 << 20) && w < cap);
        char name[16];
        snprintf(name, sizeof name, "part%d.txt", f);
        write_bytes(in, name, text, w);
        free(text);
    }
    /* a tokenizer trained on the small corpus, reused for the big one */
    char *small = make_corpus(root);
    char *tokdir = join(root, "tok");
    CU_ASSERT_EQUAL_FATAL(run_prepare(small, tokdir, 300, 0.2, NULL, NULL), RT_OK);
    char *out = join(root, "out");
    const double val = 0.1;
    data_prepare_summary sum;
    rt_status st = run_prepare(in, out, 0, val, tokdir, &sum);
    if (st != RT_OK) printf("\n    prepare: %s\n", rt_last_error());
    CU_ASSERT_EQUAL_FATAL(st, RT_OK);
    CU_ASSERT_EQUAL(sum.n_docs, n_docs);

    /* the reference: every document encoded whole, split by hash */
    data_tokenizer *t = NULL;
    CU_ASSERT_EQUAL_FATAL(data_tokenizer_load(tokdir, &t), RT_OK);
    const uint64_t threshold = (uint64_t)(val * 18446744073709551616.0);
    data_ids ref[2] = {{0}, {0}};
    for (int k = 0; k < n_docs; k++) {
        const int v = splitmix64_first((uint64_t)k) < threshold;
        CU_ASSERT_EQUAL_FATAL(data_tokenizer_encode(t, docs[k], strlen(docs[k]), &ref[v]), RT_OK);
        CU_ASSERT_EQUAL_FATAL(data_ids_push(&ref[v], data_tokenizer_eot(t)), RT_OK);
    }
    printf("\n    %d documents: %zu train + %zu val tokens\n", n_docs, ref[0].n, ref[1].n);
    CU_ASSERT(ref[0].n > ((size_t)1 << 18) && ref[1].n > 0);
    static const char *const names[2] = {"train.h5", "val.h5"};
    for (int v = 0; v < 2; v++) {
        char *p = join(out, names[v]);
        int32_t *tok = NULL;
        int64_t n = 0;
        CU_ASSERT_EQUAL_FATAL(data_shard_load(p, &tok, &n, NULL), RT_OK);
        CU_ASSERT_EQUAL(n, (int64_t)ref[v].n);
        CU_ASSERT(n == (int64_t)ref[v].n && memcmp(tok, ref[v].ids, ref[v].n * sizeof *tok) == 0);
        CU_ASSERT_EQUAL(v ? sum.val_tokens : sum.train_tokens, n);
        rt_free_aligned(tok);
        free(p);
        data_ids_free(&ref[v]);
    }
    data_tokenizer_destroy(t);
    for (int k = 0; k < n_docs; k++) free(docs[k]);
    free(docs);
    free(out);
    free(tokdir);
    free(small);
    free(in);
    rm_rf(root);
    free(root);
}

/* val_fraction 0: everything is train and val.h5 is an empty shard that
 * still opens. Verbose, so the progress lines run too. */
static void test_prepare_no_val(void) {
    char *root = make_tmpdir();
    char *in = make_corpus(root);
    char *out = join(root, "out");
    data_prepare_opts o = data_prepare_defaults();
    const char *inputs[2] = {in, in}; /* the same folder twice is read once */
    o.inputs = inputs;
    o.n_inputs = 2;
    o.out_dir = out;
    o.vocab_size = 400;
    o.val_fraction = 0;
    data_prepare_summary sum;
    CU_ASSERT_EQUAL_FATAL(data_prepare(&o, &sum), RT_OK);
    CU_ASSERT_EQUAL(sum.n_docs, N_CORPUS_DOCS);
    CU_ASSERT_EQUAL(sum.n_val_docs, 0);
    CU_ASSERT_EQUAL(sum.val_tokens, 0);
    char *valp = join(out, "val.h5");
    data_shard *s = NULL;
    CU_ASSERT_EQUAL_FATAL(data_shard_open(valp, &s), RT_OK);
    CU_ASSERT_EQUAL(data_shard_n_tokens(s), 0);
    CU_ASSERT_EQUAL(data_shard_vocab_size(s), sum.vocab_size);
    CU_ASSERT(strstr(data_shard_source(s), "retort prepare") != NULL);
    data_shard_close(s);
    free(valp);
    free(out);
    free(in);
    rm_rf(root);
    free(root);
}

static int dir_has_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    for (struct dirent *e; (e = readdir(d));) found |= strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return found;
}

static void test_prepare_errors(void) {
    char *root = make_tmpdir();
    char *in = make_corpus(root);
    char *out = join(root, "out");

    char *missing = join(root, "no_such_input");
    CU_ASSERT_EQUAL(run_prepare(missing, out, 300, 0.1, NULL, NULL), RT_ERR_IO);
    CU_ASSERT(has_error("no_such_input"));

    char *empty = join(root, "empty_corpus");
    mkdir(empty, 0755);
    write_text(empty, "nothing.txt", "");
    write_text(empty, "fortunes.dat", "abc");
    write_text(empty, "blank", " \n \n");
    CU_ASSERT_EQUAL(run_prepare(empty, out, 300, 0.1, NULL, NULL), RT_ERR_ARGS);
    CU_ASSERT(has_error("no text") && has_error("empty_corpus"));

    write_text(root, "afile", "a regular file");
    char *unwritable = join(root, "afile/out");
    CU_ASSERT_EQUAL(run_prepare(in, unwritable, 300, 0.1, NULL, NULL), RT_ERR_IO);
    CU_ASSERT(has_error("afile/out"));

    CU_ASSERT_EQUAL(run_prepare(in, out, 100, 0.1, NULL, NULL), RT_ERR_ARGS);
    CU_ASSERT(has_error("100") && has_error("257"));
    CU_ASSERT_EQUAL(run_prepare(in, out, 300, 1.0, NULL, NULL), RT_ERR_ARGS);
    CU_ASSERT(has_error("val_fraction"));

    /* A corrupt tokenizer folder: nothing is written to out. */
    char *tok = join(root, "tok");
    mkdir(tok, 0755);
    write_text(tok, "vocab.json", "{\"\xC4\xA0\": 0,,}");
    write_text(tok, "merges.txt", "#version: 0.2\n");
    char *out_bad = join(root, "out_bad");
    CU_ASSERT_EQUAL(run_prepare(in, out_bad, 0, 0.1, tok, NULL), RT_ERR_FORMAT);
    CU_ASSERT(has_error("tok/vocab.json"));
    CU_ASSERT(!dir_has_prefix(out_bad, "train.h5"));
    CU_ASSERT(!dir_has_prefix(out_bad, ".train.h5")); /* nor its temporary file */
    CU_ASSERT(!dir_has_prefix(out_bad, "vocab.json"));
    char *tok2 = join(root, "tok_missing");
    CU_ASSERT_EQUAL(run_prepare(in, out_bad, 0, 0.1, tok2, NULL), RT_ERR_IO);
    CU_ASSERT(has_error("tok_missing/vocab.json"));

    free(tok2);
    free(out_bad);
    free(tok);
    free(unwritable);
    free(empty);
    free(missing);
    free(out);
    free(in);
    rm_rf(root);
    free(root);
}

/* If train.h5 cannot be put in place, prepare fails naming it and leaves
 * no temporary file behind. */
static void test_prepare_atomic(void) {
    char *root = make_tmpdir();
    char *in = make_corpus(root);
    char *out = join(root, "out");
    mkdir(out, 0755);
    char *blocker = join(out, "train.h5");
    mkdir(blocker, 0755);
    write_text(blocker, "keep", "x"); /* a non-empty folder: rename onto it fails */
    CU_ASSERT_EQUAL(run_prepare(in, out, 300, 0.2, NULL, NULL), RT_ERR_IO);
    CU_ASSERT(has_error("train.h5"));
    CU_ASSERT(!dir_has_prefix(out, ".train.h5.tmp"));
    CU_ASSERT(!dir_has_prefix(out, "val.h5"));
    struct stat sb;
    CU_ASSERT(stat(blocker, &sb) == 0 && S_ISDIR(sb.st_mode));
    free(blocker);
    free(out);
    free(in);
    rm_rf(root);
    free(root);
}

/* --------------------------------------------------------------- main */

int main(void) {
    static const rt_test_case tests[] = {
        {"pretokenize_known", test_pretokenize_known},
        {"pretokenize_invalid_utf8", test_pretokenize_invalid_utf8},
        {"train_aaab", test_train_aaab},
        {"train_min_vocab", test_train_min_vocab},
        {"roundtrip_adversarial", test_roundtrip_adversarial},
        {"long_runs", test_long_runs},
        {"decode_bad_id", test_decode_bad_id},
        {"save_load_same_ids", test_save_load_same_ids},
        {"reference_fixture", test_reference_fixture},
        {"load_errors", test_load_errors},
        {"shard_roundtrip_u16", test_shard_roundtrip_u16},
        {"shard_roundtrip_u32", test_shard_roundtrip_u32},
        {"shard_errors", test_shard_errors},
        {"shard_forged_sizes", test_shard_forged_sizes},
        {"sampler_partition", test_sampler_partition},
        {"sampler_reproducible_seekable", test_sampler_reproducible_seekable},
        {"sampler_rank_independent", test_sampler_rank_independent},
        {"sampler_elastic_coverage", test_sampler_elastic_coverage},
        {"sampler_bijection_huge", test_sampler_bijection_huge},
        {"sampler_fill", test_sampler_fill},
        {"sampler_read", test_sampler_read},
        {"sampler_uniform", test_sampler_uniform},
        {"sampler_errors", test_sampler_errors},
        {"prepare_corpus", test_prepare_corpus},
        {"prepare_streamed", test_prepare_streamed},
        {"prepare_no_val", test_prepare_no_val},
        {"prepare_errors", test_prepare_errors},
        {"prepare_atomic", test_prepare_atomic},
    };
    CU_pSuite s = rt_test_suite("data", NULL, NULL, tests, sizeof tests / sizeof tests[0], NULL);
    if (!s) return 1;
    const int rc = rt_test_finish();
    return rc;
}
