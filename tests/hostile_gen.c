/* Crafts hostile files for tests/hostile.sh by editing good ones with the
 * raw HDF5 API (so CI needs no Python): each subcommand makes one kind of
 * lie a careless tool or an attacker could write, with valid checksums
 * where retort would check one, so the reader's own checks are what
 * stops it.
 *
 *   hostile_gen setattr FILE OBJ NAME INT     OBJ's attribute NAME := INT (int64),
 *                                             dropping OBJ's checksum attribute (as a
 *                                             file of another tool would lack it)
 *   hostile_gen edit FILE OBJ NAME INT        the same, keeping the checksum
 *   hostile_gen poke FILE DSET INDEX FLOAT    one float32 element, checksum fixed
 *   hostile_gen forge FILE DSET D0 [D1]       float32 [D0, D1] storing nothing
 *   hostile_gen retype FILE DSET              same shape and values as float64
 *   hostile_gen empty FILE DSET               float32 of shape [0, D1]
 *   hostile_gen rmattr FILE DSET NAME         delete an attribute
 *   hostile_gen shard FILE VOCAB [TOKEN...]   int32 /tokens as given (no checks)
 *   hostile_gen forgeshard FILE N             /tokens of N int32 storing nothing
 *   hostile_gen floatshard FILE               /tokens of float32 */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_internal.h" /* ckpt_crc32c_portable */

static int die(const char *what) {
    fprintf(stderr, "hostile_gen: %s failed\n", what);
    return 1;
}

static void put_crc(hid_t d, const void *data, size_t bytes) {
    uint32_t crc = ckpt_crc32c_portable(0, data, bytes);
    if (H5Aexists(d, "checksum") > 0) H5Adelete(d, "checksum");
    hid_t sc = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(d, "checksum", H5T_STD_U32LE, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_UINT32, &crc);
    H5Aclose(a), H5Sclose(sc);
}

static void put_vocab(hid_t f, int64_t vocab) {
    hid_t sc = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "vocab_size", H5T_STD_I64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &vocab);
    H5Aclose(a), H5Sclose(sc);
}

/* Reads float dataset `name` (n elements, dims into d[2], rank into *nd). */
static float *read_f32(hid_t f, const char *name, size_t *n, hsize_t d[2], int *nd) {
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return NULL;
    hid_t sp = H5Dget_space(ds);
    *nd = H5Sget_simple_extent_ndims(sp);
    d[0] = d[1] = 1;
    H5Sget_simple_extent_dims(sp, d, NULL);
    *n = (size_t)H5Sget_simple_extent_npoints(sp);
    float *x = calloc(*n ? *n : 1, sizeof *x);
    H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Sclose(sp), H5Dclose(ds);
    return x;
}

int main(int argc, char **argv) {
    if (argc < 3) return die("usage (see the source)");
    const char *op = argv[1], *file = argv[2];
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const int is_shard = strstr(op, "shard") != NULL;
    hid_t f = is_shard ? H5Fcreate(file, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)
                       : H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return die("opening the file");
    int rc = 0;
    if ((strcmp(op, "setattr") == 0 || strcmp(op, "edit") == 0) && argc == 6) {
        hid_t o = H5Oopen(f, argv[3], H5P_DEFAULT);
        if (o < 0) return die("opening the object");
        if (H5Aexists(o, argv[4]) > 0) H5Adelete(o, argv[4]);
        if (op[0] == 's' && H5Aexists(o, "checksum") > 0) H5Adelete(o, "checksum");
        long long v = strtoll(argv[5], NULL, 0);
        hid_t sc = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(o, argv[4], H5T_STD_I64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
        rc = a < 0 || H5Awrite(a, H5T_NATIVE_LLONG, &v) < 0;
        H5Aclose(a), H5Sclose(sc), H5Oclose(o);
    } else if (strcmp(op, "poke") == 0 && argc == 6) {
        size_t n;
        hsize_t d[2];
        int nd;
        float *x = read_f32(f, argv[3], &n, d, &nd);
        size_t i = strtoull(argv[4], NULL, 10);
        if (!x || i >= n) return die("reading the dataset");
        x[i] = strtof(argv[5], NULL);
        hid_t ds = H5Dopen2(f, argv[3], H5P_DEFAULT);
        rc = H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0;
        put_crc(ds, x, n * sizeof *x);
        H5Dclose(ds);
        free(x);
    } else if ((strcmp(op, "forge") == 0 && (argc == 5 || argc == 6)) ||
               (strcmp(op, "forgeshard") == 0 && argc == 4)) {
        const int shard = op[5] == 's';
        hsize_t dims[2] = {strtoull(argv[shard ? 3 : 4], NULL, 0), argc == 6 ? strtoull(argv[5], NULL, 0) : 1};
        const int nd = argc == 6 ? 2 : 1;
        hsize_t maxd[2] = {H5S_UNLIMITED, H5S_UNLIMITED}, chunk[2] = {64, 1};
        const char *name = shard ? "tokens" : argv[3];
        if (!shard && H5Lexists(f, name, H5P_DEFAULT) > 0) H5Ldelete(f, name, H5P_DEFAULT);
        hid_t sp = H5Screate_simple(nd, dims, maxd), dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(dcpl, nd, chunk);
        hid_t ds = H5Dcreate2(f, name, shard ? H5T_STD_I32LE : H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                              dcpl, H5P_DEFAULT);
        rc = ds < 0;
        if (!shard) put_crc(ds, "", 0);
        else put_vocab(f, 300);
        H5Dclose(ds), H5Pclose(dcpl), H5Sclose(sp);
    } else if ((strcmp(op, "retype") == 0 || strcmp(op, "empty") == 0) && argc == 4) {
        size_t n;
        hsize_t d[2];
        int nd;
        float *x = read_f32(f, argv[3], &n, d, &nd);
        if (!x) return die("reading the dataset");
        const int empty = op[0] == 'e';
        if (empty) d[0] = 0, n = 0;
        double *y = calloc(n ? n : 1, sizeof *y);
        for (size_t i = 0; i < n; i++) y[i] = x[i];
        H5Ldelete(f, argv[3], H5P_DEFAULT);
        hid_t sp = H5Screate_simple(nd, d, NULL);
        hid_t ds = H5Dcreate2(f, argv[3], empty ? H5T_IEEE_F32LE : H5T_IEEE_F64LE, sp,
                              H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        rc = ds < 0;
        if (!empty && n) rc |= H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) < 0;
        put_crc(ds, empty ? (const void *)"" : (const void *)y, empty ? 0 : n * sizeof *y);
        H5Dclose(ds), H5Sclose(sp);
        free(x), free(y);
    } else if (strcmp(op, "rmattr") == 0 && argc == 5) {
        rc = H5Adelete_by_name(f, argv[3], argv[4], H5P_DEFAULT) < 0;
    } else if (strcmp(op, "shard") == 0 && argc >= 4) {
        hsize_t n = (hsize_t)(argc - 4);
        int32_t *t = calloc(n ? n : 1, sizeof *t);
        for (hsize_t i = 0; i < n; i++) t[i] = (int32_t)strtol(argv[4 + i], NULL, 0);
        hid_t sp = H5Screate_simple(1, &n, NULL);
        hid_t ds = H5Dcreate2(f, "tokens", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        rc = ds < 0 || (n && H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, t) < 0);
        put_vocab(f, strtoll(argv[3], NULL, 0));
        H5Dclose(ds), H5Sclose(sp);
        free(t);
    } else if (strcmp(op, "floatshard") == 0 && argc == 3) {
        hsize_t n = 64;
        float t[64] = {0};
        hid_t sp = H5Screate_simple(1, &n, NULL);
        hid_t ds = H5Dcreate2(f, "tokens", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        rc = ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t) < 0;
        put_vocab(f, 300);
        H5Dclose(ds), H5Sclose(sp);
    } else {
        H5Fclose(f);
        return die("usage (see the source)");
    }
    if (H5Fclose(f) < 0) rc = 1;
    return rc ? die(op) : 0;
}
