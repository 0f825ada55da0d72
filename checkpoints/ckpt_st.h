/* safetensors files (Hugging Face's weight format), read and written here
 * without any outside library but jansson for the JSON header.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON
 *   {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]},
 *    ..., "__metadata__": {"k": "v"}}
 * then the data block; tensor bytes [b, e) of it, row-major, little-endian.
 *
 * Reading trusts nothing: the header length is bounded by the file size and
 * CKPT_ST_MAX_HEADER, every shape product is overflow-checked and must equal
 * (e - b) / dtype size, offsets must lie inside the data block and no two
 * tensors may overlap. The header is parsed from memory (ckpt_st_parse) so
 * a fuzzer can drive it without files; tensor data is then read in place
 * with pread straight into the caller's float buffer (f32), or through a
 * small bounce buffer (f16, bf16), so no second copy of the weights is
 * ever held. */
#ifndef CKPT_ST_H
#define CKPT_ST_H

#include <stddef.h>
#include <stdint.h>

#include "rt_status.h"

/* Largest JSON header read (the reference implementation's limit too). */
#define CKPT_ST_MAX_HEADER (100u << 20)
/* Most tensors and dimensions per file retort accepts. */
#define CKPT_ST_MAX_TENSORS 100000
#define CKPT_ST_MAX_DIMS 8

typedef enum { CKPT_ST_F32, CKPT_ST_F16, CKPT_ST_BF16 } ckpt_st_dtype;

/* "F32", "F16", "BF16". */
const char *ckpt_st_dtype_name(ckpt_st_dtype t);
size_t ckpt_st_dtype_size(ckpt_st_dtype t);

typedef struct {
    char *name;
    ckpt_st_dtype dtype;
    int ndim;
    int64_t shape[CKPT_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end; /* byte range inside the data block */
} ckpt_st_tensor;

typedef struct ckpt_st_file ckpt_st_file;

/* Validates a header (the `hlen` JSON bytes after the 8-byte length) of a
 * file of `file_size` bytes named `name` (for messages). Tensors of an
 * unsupported but known dtype (F64, I64, ...) are an error naming it, as
 * are unknown dtypes. *out owns no file: only ckpt_st_tensors works on it. */
rt_status ckpt_st_parse(const char *name, const uint8_t *header, size_t hlen, uint64_t file_size,
                        ckpt_st_file **out);

/* Opens `path`, reads and validates its header (ckpt_st_parse). Errors name
 * the path: missing, truncated, header length past the end of the file,
 * malformed JSON, bad dtype/shape/offsets. */
rt_status ckpt_st_open(const char *path, ckpt_st_file **out);
void ckpt_st_close(ckpt_st_file *f); /* NULL-safe */

const char *ckpt_st_path(const ckpt_st_file *f);
int ckpt_st_count(const ckpt_st_file *f);
const ckpt_st_tensor *ckpt_st_tensor_at(const ckpt_st_file *f, int i);
/* The tensor named `name`, or NULL. */
const ckpt_st_tensor *ckpt_st_find(const ckpt_st_file *f, const char *name);

/* Reads elements [first, first + count) (within numel) of tensor t as
 * float32 into dst; f16 and bf16 are converted exactly. RT_ERR_IO naming
 * the file when the read comes up short. */
rt_status ckpt_st_read_f32(const ckpt_st_file *f, const ckpt_st_tensor *t, size_t first,
                           size_t count, float *dst);

/* The conversions, exposed for the export side and the tests:
 * f16/bf16 -> f32 is exact; f32 -> f16/bf16 rounds to nearest even (NaN
 * stays NaN, overflow becomes infinity). */
float ckpt_f16_to_f32(uint16_t h);
float ckpt_bf16_to_f32(uint16_t h);
uint16_t ckpt_f32_to_f16(float f);
uint16_t ckpt_f32_to_bf16(float f);

/* --------------------------------------------------------------- writing */

/* One tensor to write: float32 data converted to `dtype` on the way out. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[2];
    const float *data; /* prod(shape) floats */
} ckpt_st_out;

/* Writes the n tensors to `path` atomically (temporary file, fsync,
 * rename), in the given order, as `dtype`, with __metadata__ {"format":
 * "pt"} (what transformers expects). */
rt_status ckpt_st_write(const char *path, const ckpt_st_out *t, int n, ckpt_st_dtype dtype);

#endif
