/* The parameter table: names, shapes and offsets of every tensor of the
 * model in the one parameter block. Everything that walks parameters
 * (init, AdamW decay masks, checkpoints, all-reduce) goes through here. */
#include "student.h"

#include <stdio.h>
#include <string.h>

#define STUDENT_ALIGN_FLOATS 16

/* Symbolic extents of a tensor dimension; D_R is the rank of the slot's
 * linear (cfg.rank[linear]). */
enum { D_1, D_C, D_A3, D_A, D_F, D_R };

/* The tensors of one block, in student_block_tensor order. A low-rank
 * linear (cfg.rank[linear] = r > 0) stores W [in, out] as W_a W_b: its
 * weight slot becomes "<name>_a" [in, r] (cols D_R instead of its own) and
 * its second-factor slot "<name>" [r, out] exists; a dense linear has no
 * second-factor slot at all. */
static const struct {
    const char *name; /* after "transformer.h.<l>." */
    int rows, cols;   /* D_*; cols D_1 means a vector */
    int linear;       /* student_linear of a matmul weight, else -1 */
} block_layout[STUDENT_BLOCK_SLOTS] = {
    [STUDENT_LN1W] = {"ln_1.weight", D_C, D_1, -1},
    [STUDENT_LN1B] = {"ln_1.bias", D_C, D_1, -1},
    [STUDENT_QKVW] = {"attn.c_attn.weight", D_C, D_A3, STUDENT_LIN_QKV},
    [STUDENT_QKVB] = {"attn.c_attn.bias", D_A3, D_1, -1},
    [STUDENT_ATTPROJW] = {"attn.c_proj.weight", D_A, D_C, STUDENT_LIN_ATTPROJ},
    [STUDENT_ATTPROJB] = {"attn.c_proj.bias", D_C, D_1, -1},
    [STUDENT_LN2W] = {"ln_2.weight", D_C, D_1, -1},
    [STUDENT_LN2B] = {"ln_2.bias", D_C, D_1, -1},
    [STUDENT_FCW] = {"mlp.c_fc.weight", D_C, D_F, STUDENT_LIN_FC},
    [STUDENT_FCB] = {"mlp.c_fc.bias", D_F, D_1, -1},
    [STUDENT_FCPROJW] = {"mlp.c_proj.weight", D_F, D_C, STUDENT_LIN_FCPROJ},
    [STUDENT_FCPROJB] = {"mlp.c_proj.bias", D_C, D_1, -1},
    [STUDENT_QKVW_B] = {"attn.c_attn.weight_b", D_R, D_A3, STUDENT_LIN_QKV},
    [STUDENT_ATTPROJW_B] = {"attn.c_proj.weight_b", D_R, D_C, STUDENT_LIN_ATTPROJ},
    [STUDENT_FCW_B] = {"mlp.c_fc.weight_b", D_R, D_F, STUDENT_LIN_FC},
    [STUDENT_FCPROJW_B] = {"mlp.c_proj.weight_b", D_R, D_C, STUDENT_LIN_FCPROJ},
};

/* Block slot of the weight of each linear (the inverse of .linear). */
static const student_block_tensor linear_slot[STUDENT_LIN_N] = {
    [STUDENT_LIN_QKV] = STUDENT_QKVW,
    [STUDENT_LIN_ATTPROJ] = STUDENT_ATTPROJW,
    [STUDENT_LIN_FC] = STUDENT_FCW,
    [STUDENT_LIN_FCPROJ] = STUDENT_FCPROJW,
};

rt_status student_config_validate(const student_config *c) {
    const struct { const char *name; int v, max; } f[] = {
        {"n_layer", c->n_layer, STUDENT_MAX_LAYERS},
        {"n_head", c->n_head, STUDENT_MAX_HEADS},
        {"d_model", c->d_model, STUDENT_MAX_D_MODEL},
        {"d_ff", c->d_ff, STUDENT_MAX_D_FF},
        {"vocab_size", c->vocab_size, STUDENT_MAX_VOCAB},
        {"seq_len", c->seq_len, STUDENT_MAX_SEQ_LEN},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].v <= 0)
            return rt_fail(RT_ERR_ARGS, "model.%s must be positive (got %d)", f[i].name, f[i].v);
        if (f[i].v > f[i].max)
            return rt_fail(RT_ERR_ARGS, "model.%s is %d, above retort's maximum of %d", f[i].name,
                           f[i].v, f[i].max);
    }
    if (c->d_head < 0 || c->d_head > STUDENT_MAX_D_MODEL)
        return rt_fail(RT_ERR_ARGS, "model.d_head must be in 1..%d, or 0 for d_model / n_head "
                       "(got %d)", STUDENT_MAX_D_MODEL, c->d_head);
    if (c->d_head == 0 && c->d_model % c->n_head != 0)
        return rt_fail(RT_ERR_ARGS, "model.d_model (%d) must be divisible by model.n_head (%d)",
                       c->d_model, c->n_head);
    for (int k = 0; k < STUDENT_LIN_N; k++) {
        int64_t in, out;
        student_linear_shape(c, (student_linear)k, &in, &out);
        const int64_t mx = in < out ? in : out;
        if (c->rank[k] < 0 || c->rank[k] > mx)
            return rt_fail(RT_ERR_ARGS, "model rank.%s is %d; a low-rank factor's rank must be "
                           "in 1..min(in, out) = %lld, or 0 for a dense weight",
                           student_linear_name((student_linear)k), c->rank[k], (long long)mx);
    }
    return RT_OK;
}

const char *student_linear_name(student_linear which) {
    static const char *const names[STUDENT_LIN_N] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                      "mlp.c_proj"};
    RT_ASSERT(which >= 0 && which < STUDENT_LIN_N);
    return names[which];
}

int student_is_lowrank(const student_config *c) {
    for (int k = 0; k < STUDENT_LIN_N; k++)
        if (c->rank[k] > 0) return 1;
    return 0;
}

void student_linear_shape(const student_config *c, student_linear which, int64_t *in,
                          int64_t *out) {
    const int64_t C = c->d_model, F = c->d_ff, A = student_attn_width(c);
    *in = which == STUDENT_LIN_FCPROJ ? F : which == STUDENT_LIN_ATTPROJ ? A : C;
    *out = which == STUDENT_LIN_QKV ? 3 * A : which == STUDENT_LIN_FC ? F : C;
}

/* Factored linears per block, and the position of linear k's second
 * factor among them (its slot's place after the blocks). */
static int n_factored(const student_config *c) {
    int n = 0;
    for (int k = 0; k < STUDENT_LIN_N; k++) n += c->rank[k] > 0;
    return n;
}

static int factor_pos(const student_config *c, int k) {
    int n = 0;
    for (int j = 0; j < k; j++) n += c->rank[j] > 0;
    return n;
}

int student_head_dim(const student_config *c) {
    return c->d_head > 0 ? c->d_head : c->d_model / c->n_head;
}

int student_attn_width(const student_config *c) { return c->n_head * student_head_dim(c); }

int student_tensor_count(const student_config *c) {
    return 2 + (STUDENT_BLOCK_TENSORS + n_factored(c)) * c->n_layer + 2;
}

int student_block_slot(const student_config *c, int index, int *layer) {
    const int base = 2 + STUDENT_BLOCK_TENSORS * c->n_layer, nf = n_factored(c);
    if (index < 2 || index >= base + nf * c->n_layer) return -1;
    if (index < base) {
        if (layer) *layer = (index - 2) / STUDENT_BLOCK_TENSORS;
        return (index - 2) % STUDENT_BLOCK_TENSORS;
    }
    const int j = (index - base) % nf;
    if (layer) *layer = (index - base) / nf;
    for (int k = 0; k < STUDENT_LIN_N; k++)
        if (c->rank[k] > 0 && factor_pos(c, k) == j) return STUDENT_BLOCK_TENSORS + k;
    RT_ASSERT(0 && "unreachable");
    return -1;
}

int student_linear_tensor(const student_config *c, int layer, student_linear which) {
    RT_ASSERT(layer >= 0 && layer < c->n_layer && which >= 0 && which < STUDENT_LIN_N);
    return student_block_index(layer, linear_slot[which]);
}

int student_linear_factor(const student_config *c, int layer, student_linear which) {
    RT_ASSERT(layer >= 0 && layer < c->n_layer && which >= 0 && which < STUDENT_LIN_N);
    if (c->rank[which] <= 0) return -1;
    return 2 + STUDENT_BLOCK_TENSORS * c->n_layer + layer * n_factored(c) + factor_pos(c, which);
}

int student_prune_target(const student_config *c, int index, int *layer) {
    int l;
    const int k = student_block_slot(c, index, &l);
    if (k < 0 || block_layout[k].linear < 0) return -1;
    if (layer) *layer = l;
    return block_layout[k].linear;
}

static int64_t extent(const student_config *c, int k, int d) {
    switch (d) {
    case D_R: return c->rank[block_layout[k].linear];
    case D_C: return c->d_model;
    case D_A3: return 3 * (int64_t)student_attn_width(c);
    case D_A: return student_attn_width(c);
    case D_F: return c->d_ff;
    default: return 1;
    }
}

static size_t round_up(size_t n) { return (n + STUDENT_ALIGN_FLOATS - 1) / STUDENT_ALIGN_FLOATS * STUDENT_ALIGN_FLOATS; }

/* Rows and columns of slot k under c: a factored linear's weight slot is
 * its first factor [in, r]. */
static void slot_shape(const student_config *c, int k, int64_t *rows, int64_t *cols) {
    const int lin = block_layout[k].linear;
    *rows = extent(c, k, block_layout[k].rows);
    *cols = lin >= 0 && k < STUDENT_BLOCK_TENSORS && c->rank[lin] > 0
                ? c->rank[lin]
                : extent(c, k, block_layout[k].cols);
}

static size_t slot_numel(const student_config *c, int k) {
    int64_t r, cl;
    slot_shape(c, k, &r, &cl);
    return (size_t)r * (size_t)cl;
}

/* Floats (with padding) of the second factors of one block. */
static size_t factor_floats(const student_config *c) {
    size_t n = 0;
    for (int k = 0; k < STUDENT_LIN_N; k++)
        if (c->rank[k] > 0) n += round_up(slot_numel(c, STUDENT_BLOCK_TENSORS + k));
    return n;
}

/* Floats (with padding) of the two embeddings, and of one block. */
static size_t head_floats(const student_config *c) {
    return round_up((size_t)c->vocab_size * (size_t)c->d_model) +
           round_up((size_t)c->seq_len * (size_t)c->d_model);
}

static size_t layer_floats(const student_config *c) {
    size_t n = 0;
    for (int k = 0; k < STUDENT_BLOCK_TENSORS; k++) n += round_up(slot_numel(c, k));
    return n;
}

void student_tensor_info(const student_config *c, int index, student_tensor *t) {
    const int n = student_tensor_count(c);
    RT_ASSERT(index >= 0 && index < n);
    const int64_t C = c->d_model;
    t->decay = 0;
    int l;
    const int k = student_block_slot(c, index, &l);
    if (k >= 0) {
        const int lin = block_layout[k].linear;
        const int first = lin >= 0 && k < STUDENT_BLOCK_TENSORS && c->rank[lin] > 0;
        snprintf(t->name, sizeof t->name, "transformer.h.%d.%s%s", l, block_layout[k].name,
                 first ? "_a" : "");
        slot_shape(c, k, &t->shape[0], &t->shape[1]);
        t->ndim = block_layout[k].cols == D_1 ? 1 : 2;
        t->decay = lin >= 0;
        if (k < STUDENT_BLOCK_TENSORS) {
            t->offset = head_floats(c) + (size_t)l * layer_floats(c);
            for (int j = 0; j < k; j++) t->offset += round_up(slot_numel(c, j));
        } else { /* second factors: after every block, before ln_f */
            t->offset = head_floats(c) + (size_t)c->n_layer * layer_floats(c) +
                        (size_t)l * factor_floats(c);
            for (int j = STUDENT_BLOCK_TENSORS; j < k; j++)
                if (c->rank[block_layout[j].linear] > 0) t->offset += round_up(slot_numel(c, j));
        }
    } else if (index == 0) {
        snprintf(t->name, sizeof t->name, "transformer.wte.weight");
        t->ndim = 2, t->shape[0] = c->vocab_size, t->shape[1] = C;
        t->offset = 0;
    } else if (index == 1) {
        snprintf(t->name, sizeof t->name, "transformer.wpe.weight");
        t->ndim = 2, t->shape[0] = c->seq_len, t->shape[1] = C;
        t->offset = round_up((size_t)c->vocab_size * (size_t)C);
    } else {
        snprintf(t->name, sizeof t->name, "transformer.ln_f.%s", index == n - 2 ? "weight" : "bias");
        t->ndim = 1, t->shape[0] = C, t->shape[1] = 1;
        t->offset = head_floats(c) + (size_t)c->n_layer * (layer_floats(c) + factor_floats(c)) +
                    (index == n - 1 ? round_up((size_t)C) : 0);
    }
    t->numel = (size_t)t->shape[0] * (size_t)t->shape[1];
}

int student_tensor_find(const student_config *c, const char *name) {
    /* Names outside the blocks, then "transformer.h.<l>.<slot>": parse l,
     * then compare with the canonical name so that "h.01." or "h.+1." do
     * not match. */
    const int n = student_tensor_count(c);
    student_tensor t;
    const int fixed[4] = {0, 1, n - 2, n - 1};
    for (int i = 0; i < 4; i++) {
        student_tensor_info(c, fixed[i], &t);
        if (strcmp(t.name, name) == 0) return fixed[i];
    }
    static const char prefix[] = "transformer.h.";
    if (strncmp(name, prefix, sizeof prefix - 1) != 0) return -1;
    const char *p = name + sizeof prefix - 1;
    long l = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 10; p++, digits++) l = l * 10 + (*p - '0');
    if (digits == 0 || *p != '.' || l >= c->n_layer) return -1;
    for (int k = 0; k < STUDENT_BLOCK_SLOTS; k++) {
        const int i = k < STUDENT_BLOCK_TENSORS
                          ? student_block_index((int)l, (student_block_tensor)k)
                          : student_linear_factor(c, (int)l, block_layout[k].linear);
        if (i < 0) continue;
        student_tensor_info(c, i, &t);
        if (strcmp(t.name, name) == 0) return i;
    }
    return -1;
}

size_t student_block_floats(const student_config *c) {
    return head_floats(c) + (size_t)c->n_layer * (layer_floats(c) + factor_floats(c)) +
           2 * round_up((size_t)c->d_model);
}

size_t student_param_count(const student_config *c) {
    size_t per_layer = 0;
    for (int k = 0; k < STUDENT_BLOCK_SLOTS; k++)
        if (k < STUDENT_BLOCK_TENSORS || c->rank[block_layout[k].linear] > 0)
            per_layer += slot_numel(c, k);
    return ((size_t)c->vocab_size + (size_t)c->seq_len + 2) * (size_t)c->d_model +
           (size_t)c->n_layer * per_layer;
}
