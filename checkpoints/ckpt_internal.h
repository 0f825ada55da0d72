/* Internals shared by the files of checkpoints/: HDF5 type mapping, file
 * access properties and the portable CRC-32C (exposed so the tests can
 * check it against the hardware one). HDF5 error messages come from
 * data/rt_h5.h, atomic durable writes from data/fsutil.h. */
#ifndef CKPT_INTERNAL_H
#define CKPT_INTERNAL_H

#include <hdf5.h>

#include "ckpt.h"
#include "rt_h5.h"

/* Longest path this module builds. */
#define CKPT_PATH_MAX 4096

/* A dataset attribute holding the CRC-32C of the raw bytes. */
#define CKPT_CHECKSUM_ATTR "checksum"
/* Suffix of the attribute holding the CRC-32C of a string attribute. */
#define CKPT_STR_CHECKSUM_SUFFIX "_checksum"

uint32_t ckpt_crc32c_portable(uint32_t crc, const void *data, size_t n);

hid_t ckpt_file_type(ckpt_dtype t); /* little-endian file type */
hid_t ckpt_mem_type(ckpt_dtype t);  /* native memory type */
/* The ckpt_dtype whose file representation `type` is; -1 if none. */
int ckpt_dtype_of(hid_t type);

/* File access properties both sides use: HDF5 1.8+ format (checksummed
 * metadata), no file locking (files are immutable once renamed, and
 * locking fails on some shared file systems). Close with H5Pclose. */
hid_t ckpt_fapl(void);

/* The reader's open file (owned by the reader); H5I_INVALID_HID for a
 * Hugging Face folder, whose weights ckpt_reader_hf gives (else NULL). */
hid_t ckpt_reader_file(const ckpt_reader *r);
struct ckpt_hf *ckpt_reader_hf(const ckpt_reader *r);

/* ckpt_read_params into a block laid out for mc: the file's config, or the
 * same with a smaller seq_len (the first mc->seq_len rows of wpe). */
rt_status ckpt_read_params_for(ckpt_reader *r, const student_config *mc, float *block);

/* Whether /config carries d_head: only when it is set and differs from
 * d_model / n_head (a model whose heads were removed). */
int ckpt_config_has_d_head(const student_config *c);

/* /config's own checksum (its "checksum" attribute, uint32): CRC-32C of
 * the int64 values n_layer, n_head, d_model, d_ff, vocab_size, seq_len,
 * d_head (0 when absent) as stored, so an edited or flipped shape
 * attribute is caught before the model is read as a different one. A
 * low-rank model adds its four ranks (attributes "rank.<linear>", written
 * only then), so the checksum of every other file is what it was. */
enum { CKPT_CONFIG_FIELDS = 7, CKPT_CONFIG_FIELDS_LOWRANK = 7 + STUDENT_LIN_N };
uint32_t ckpt_config_crc(const int64_t *v, int n);

#endif
