/* retort's data pipeline (libretort_data): a byte-level BPE tokenizer in
 * GPT-2's style, token shards in HDF5, `prepare` (text -> tokenizer + train
 * and val shards) and the deterministic per-rank batch sampler.
 *
 * Ownership: every handle (data_tokenizer, data_bpe_trainer, data_shard,
 * data_sampler) is created by its _create/_load/_train/_open function and
 * released by its _destroy/_close function, which accepts NULL. Functions
 * returning rt_status record a one-line message (rt_last_error()) naming
 * the file, key or argument involved. */
#ifndef RT_DATA_H
#define RT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"

/* 256 byte tokens + <|endoftext|>: the smallest vocabulary there is. */
#define DATA_MIN_VOCAB 257
/* The end-of-text special token (the last id of a trained vocabulary). */
#define DATA_EOT_TEXT "<|endoftext|>"
/* Largest vocab.json or merges.txt read (GPT-2's are 1.0 and 0.5 MB): a
 * tokenizer path pointing at /dev/zero or a corpus is refused at once. */
#define DATA_TOKENIZER_MAX_BYTES ((size_t)64 << 20)

/* ------------------------------------------------------------------ ids */

/* A growable array of token ids. Zero-initialize it ({0}); the owner frees
 * it with data_ids_free. Functions taking a data_ids * append to it. */
typedef struct {
    int32_t *ids; /* (n) */
    size_t n, cap;
} data_ids;

rt_status data_ids_push(data_ids *v, int32_t id);
void data_ids_free(data_ids *v); /* frees v->ids and zeroes v; NULL-safe */

/* -------------------------------------------------------- pre-tokenizer */

/* Called once per pre-token, in order; the pieces concatenate to the input.
 * A non-OK return stops the walk and is passed through. */
typedef rt_status (*data_piece_fn)(void *ctx, const char *piece, size_t len);

/* Splits `text` (any bytes) with GPT-2's pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (PCRE2, UTF + UCP). Invalid UTF-8: the input is cut into maximal valid
 * UTF-8 runs; the pattern runs over each run on its own and every byte that
 * starts no valid sequence is a pre-token by itself. So any byte string
 * round-trips, and valid UTF-8 text splits exactly as GPT-2 splits it. */
rt_status data_pretokenize(const char *text, size_t n, data_piece_fn fn, void *ctx);

/* ------------------------------------------------------------ tokenizer */

/* A byte-level BPE tokenizer. Not thread-safe (encode fills a per-word
 * cache); use one per thread. */
typedef struct data_tokenizer data_tokenizer;

/* Trains on one text (see data_bpe_trainer for many documents). */
rt_status data_tokenizer_train(const char *text, size_t n, int64_t vocab_size, int verbose,
                               data_tokenizer **out);

/* Reads DIR/vocab.json and DIR/merges.txt (GPT-2 / Hugging Face format: the
 * vocab keys are tokens in GPT-2's byte-to-unicode alphabet; merges.txt
 * starts with "#version" and holds "left right" per merge, by rank). Any
 * vocab that has a token for each of the 256 bytes and <|endoftext|> loads,
 * GPT-2's own included. Errors name the file (and line for merges.txt). */
rt_status data_tokenizer_load(const char *dir, data_tokenizer **out);

/* Writes DIR/vocab.json and DIR/merges.txt (each via a temporary file and a
 * rename, so a failure never leaves a half-written file under those names).
 * Hugging Face's GPT2Tokenizer(vocab_file, merges_file) reads them. */
rt_status data_tokenizer_save(const data_tokenizer *t, const char *dir);

void data_tokenizer_destroy(data_tokenizer *t);

/* Number of ids (all ids are 0 .. vocab_size-1). */
int32_t data_tokenizer_vocab_size(const data_tokenizer *t);
/* Id of <|endoftext|>. */
int32_t data_tokenizer_eot(const data_tokenizer *t);
/* Number of merges; merge `rank` joins ids left and right into result.
 * A trained tokenizer has ids 0..255 = the byte values and, for merges that
 * make a new string, result = 256 + (number of earlier new strings). */
int32_t data_tokenizer_n_merges(const data_tokenizer *t);
void data_tokenizer_merge(const data_tokenizer *t, int32_t rank, int32_t *left, int32_t *right,
                          int32_t *result);
/* The bytes of token `id` (not NUL-terminated; owned by t). */
const char *data_tokenizer_token(const data_tokenizer *t, int32_t id, size_t *len);

/* Appends the GPT-2 alphabet form (UTF-8) of bytes to dst, the form tokens
 * have in vocab.json and merges.txt (and GGUF's tokenizer.ggml.tokens);
 * dst needs 2 * n bytes of room. Returns the number of bytes written. */
size_t data_bytes_to_alpha(const char *bytes, size_t n, char *dst);

/* Appends the ids of `text` (any bytes) to `out`. Text is never parsed for
 * special tokens: "<|endoftext|>" in the text encodes as ordinary bytes. */
rt_status data_tokenizer_encode(data_tokenizer *t, const char *text, size_t n, data_ids *out);

/* Concatenates the bytes of `ids` into a new NUL-terminated buffer *out
 * (caller frees with free()); *out_len excludes the NUL. The eot id decodes
 * to "<|endoftext|>". An id outside the vocabulary is RT_ERR_ARGS. */
rt_status data_tokenizer_decode(const data_tokenizer *t, const int32_t *ids, size_t n,
                                char **out, size_t *out_len);

/* -------------------------------------------------------------- trainer */

/* BPE training over many documents: add() counts the pre-token words of a
 * text; finish() learns merges until the vocabulary (bytes + merges +
 * <|endoftext|>) reaches vocab_size or no pair is left (then it is smaller;
 * data_tokenizer_vocab_size says). Ties between equally frequent pairs go
 * to the smaller (left id, right id). vocab_size < DATA_MIN_VOCAB is
 * RT_ERR_ARGS. verbose prints "merges x/y" lines to stderr. */
typedef struct data_bpe_trainer data_bpe_trainer;

rt_status data_bpe_trainer_create(data_bpe_trainer **out);
rt_status data_bpe_trainer_add(data_bpe_trainer *b, const char *text, size_t n);
rt_status data_bpe_trainer_finish(data_bpe_trainer *b, int64_t vocab_size, int verbose,
                                  data_tokenizer **out);
void data_bpe_trainer_destroy(data_bpe_trainer *b);

/* --------------------------------------------------------------- shards */

/* Writes PATH (through a data_shard_writer) with a 1-D dataset /tokens
 * (unsigned 16-bit when vocab_size <= 65536, else unsigned 32-bit;
 * chunked, uncompressed) and root attributes vocab_size (int64) and source
 * (UTF-8 string). Every token must be in [0, vocab_size). Written through
 * data_commit_tmp (fsutil.h: temporary file, fsync, rename, fsync of the
 * folder), so a failure never leaves a half-written file named PATH. */
rt_status data_shard_write(const char *path, const int32_t *tokens, int64_t n,
                           int64_t vocab_size, const char *source);

/* A shard written a chunk at a time (prepare streams its tokens): create
 * makes data_tmp_path's temporary file with an extendible /tokens (chunks of min(size_hint,
 * 256 Ki) tokens; size_hint 0 = unknown), append checks and adds tokens,
 * finish writes the attributes and puts the file in place with
 * data_commit_tmp (fsync, rename, fsync of the folder), abort removes it. finish and abort free the writer (abort is NULL-safe). Memory: HDF5's
 * buffers, not the shard. */
typedef struct data_shard_writer data_shard_writer;
rt_status data_shard_writer_create(const char *path, int64_t vocab_size, const char *source,
                                   int64_t size_hint, data_shard_writer **out);
rt_status data_shard_writer_append(data_shard_writer *w, const int32_t *tokens, int64_t n);
int64_t data_shard_writer_n_tokens(const data_shard_writer *w);
rt_status data_shard_writer_finish(data_shard_writer *w);
void data_shard_writer_abort(data_shard_writer *w);

/* A shard opened for reading. open() checks that /tokens exists, is 1-D and
 * integer, and that vocab_size is a positive integer attribute. */
typedef struct data_shard data_shard;

rt_status data_shard_open(const char *path, data_shard **out);
void data_shard_close(data_shard *s);
int64_t data_shard_n_tokens(const data_shard *s);
int64_t data_shard_vocab_size(const data_shard *s);
const char *data_shard_source(const data_shard *s); /* "" when absent */
const char *data_shard_path(const data_shard *s);
/* Reads tokens [start, start+count) into out (count int32s); every token
 * must be in [0, vocab_size) or it is RT_ERR_FORMAT naming file and index. */
rt_status data_shard_read(data_shard *s, int64_t start, int64_t count, int32_t *out);
/* One window of T positions starting at token `start`: inputs = tokens
 * [start, start+T), targets (NULL to skip) = tokens [start+1, start+T+1),
 * through hyperslab reads, so training and evaluation hold a window, never
 * the shard (a shard of any size costs a rank HDF5's 1 MiB chunk cache).
 * Errors as data_shard_read. */
rt_status data_shard_read_window(data_shard *s, int64_t start, int32_t T, int32_t *inputs,
                                 int32_t *targets);
/* Opens, reads every token into *tokens (free with rt_free_aligned) and
 * closes: memory proportional to the shard, so for tests and small files;
 * training, evaluation and export read windows (data_shard_read_window).
 * vocab_size may be NULL. */
rt_status data_shard_load(const char *path, int32_t **tokens, int64_t *n, int64_t *vocab_size);

/* -------------------------------------------------------------- sampler */

/* Deterministic batch sampler over one shard of n_tokens tokens.
 *
 * The shard holds W = (n_tokens - 1) / seq_len windows; window w covers
 * tokens [w*T, w*T + T + 1): T inputs and the T targets shifted by one.
 * Epoch e is a permutation perm_e of the W windows keyed only by
 * (seed, e): a 6-round Feistel network with splitmix64 round functions over
 * the smallest even bit width covering W, cycle-walked into [0, W), so it
 * is computed per position and nothing per window is stored.
 * With global batch G split over R ranks (b = G / R rows each) there are
 * S = W / G steps per epoch (remaining windows are dropped); global step s
 * is epoch e = s / S, and row i of rank r is window
 *   perm_e[(s % S) * G + r * b + i].
 * Ranks never share a window within an epoch, any (seed, step, rank) is
 * computed without replay, and the windows of a step (in rank order) do not
 * depend on R, so resuming with another rank count keeps the order.
 * Errors: G % R != 0, rank out of range, and S == 0 (the message names
 * `shard_name`, seq_len and batch). */
typedef struct data_sampler data_sampler;

rt_status data_sampler_create(const char *shard_name, int64_t n_tokens, int32_t seq_len,
                              int32_t global_batch, int32_t n_ranks, int32_t rank, uint64_t seed,
                              data_sampler **out);
void data_sampler_destroy(data_sampler *s);
int64_t data_sampler_steps_per_epoch(const data_sampler *s); /* S */
int64_t data_sampler_n_windows(const data_sampler *s);       /* W */
int32_t data_sampler_rows(const data_sampler *s);            /* b = G / R */
/* Token offsets (window * seq_len) of this rank's b rows at `step`. */
rt_status data_sampler_windows(data_sampler *s, int64_t step, int64_t *starts /* (b) */);
/* Token offsets of all G rows of `step`, rank 0's rows first (what every
 * rank's data_sampler_windows returns, concatenated in rank order). */
rt_status data_sampler_global_windows(data_sampler *s, int64_t step,
                                      int64_t *starts /* (G) */);
/* Copies this rank's rows at `step` out of the shard's tokens (n_tokens of
 * them): inputs[i*T + t] = tokens[start_i + t], targets = the next token. */
rt_status data_sampler_fill(data_sampler *s, const int32_t *tokens, int64_t step,
                            int32_t *inputs /* (b, T) */, int32_t *targets /* (b, T) */);
/* The same rows as data_sampler_fill, read from the open shard window by
 * window (data_shard_read_window): what training uses, so that memory does
 * not grow with the shard. The shard must hold the n_tokens the sampler was
 * made for (RT_ERR_MISMATCH otherwise). The sampler's own state is a few
 * round keys, whatever the shard's size. */
rt_status data_sampler_read(data_sampler *s, data_shard *sh, int64_t step,
                            int32_t *inputs /* (b, T) */, int32_t *targets /* (b, T) */);

/* -------------------------------------------------------------- prepare */

typedef struct {
    const char *const *inputs; /* (n_inputs) files or folders (recursed) */
    int n_inputs;
    const char *out_dir;       /* created if missing */
    int64_t vocab_size;        /* tokenizer to train; ignored with tokenizer_dir */
    double val_fraction;       /* in [0, 1): share of documents that go to val */
    const char *tokenizer_dir; /* reuse DIR/vocab.json + merges.txt, or NULL to train */
    int verbose;               /* progress lines and summary on stderr */
} data_prepare_opts;

/* What data_prepare produced. */
typedef struct {
    int64_t n_files, n_docs, n_train_docs, n_val_docs;
    int64_t train_tokens, val_tokens; /* each includes one eot per document */
    int32_t vocab_size;
    double seconds;
} data_prepare_summary;

/* vocab_size 8192, val_fraction 0.05, verbose 1, everything else empty. */
data_prepare_opts data_prepare_defaults(void);

/* Text files -> OUT/vocab.json, OUT/merges.txt, OUT/train.h5, OUT/val.h5.
 *
 * Inputs: each path is a file or a folder walked recursively (names sorted,
 * symlinks followed, each file/folder visited once by device+inode, so
 * fortune's "x.u8 -> x" links and repeated inputs count once). Inside
 * folders, names starting with '.' or ending in ".dat" (fortune's binary
 * index files) are skipped; any file containing a NUL byte is skipped as
 * binary. Documents: one per file, except that a line that
 * is exactly "%" (fortune(6) format) ends a document; whitespace-only
 * documents are dropped. Document k (in walk order) goes to val when
 * splitmix64(k) < val_fraction * 2^64, with two fixes so neither split is
 * needlessly empty: if no document landed in train, document 0 goes to
 * train; if val_fraction > 0 and none landed in val while there are two or
 * more documents, the last document goes to val. The tokenizer is trained
 * on the train documents only. Each document is encoded followed by
 * <|endoftext|>. Every output goes through a temporary file + rename.
 * Errors (one line naming the path or value): a missing input, no text in
 * the inputs, an output folder that cannot be created or written, a vocab
 * size below DATA_MIN_VOCAB, a val_fraction outside [0, 1), and a missing or
 * corrupt vocab.json / merges.txt in tokenizer_dir. `summary` may be NULL. */
rt_status data_prepare(const data_prepare_opts *o, data_prepare_summary *summary);

#endif
