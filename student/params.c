/* The parameter table: names, shapes and offsets of every tensor of the
 * model in the one parameter block. Everything that walks parameters
 * (init, AdamW decay masks, checkpoints, all-reduce) goes through here. */
#include "student.h"

#include <stdio.h>
#include <string.h>

#define STUDENT_ALIGN_FLOATS 16

enum { PER_LAYER = 12 };

static const char *const layer_names[PER_LAYER] = {
    "ln_1.weight",      "ln_1.bias",      "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight",      "ln_2.bias",
    "mlp.c_fc.weight",  "mlp.c_fc.bias",  "mlp.c_proj.weight",  "mlp.c_proj.bias",
};

rt_status student_config_validate(const student_config *c) {
    const struct { const char *name; int v; } f[] = {
        {"n_layer", c->n_layer}, {"n_head", c->n_head},         {"d_model", c->d_model},
        {"d_ff", c->d_ff},       {"vocab_size", c->vocab_size}, {"seq_len", c->seq_len},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v <= 0)
            return rt_fail(RT_ERR_ARGS, "model.%s must be positive (got %d)", f[i].name, f[i].v);
    if (c->d_head < 0)
        return rt_fail(RT_ERR_ARGS, "model.d_head must be positive or 0 for d_model / n_head (got %d)",
                       c->d_head);
    if (c->d_head == 0 && c->d_model % c->n_head != 0)
        return rt_fail(RT_ERR_ARGS, "model.d_model (%d) must be divisible by model.n_head (%d)",
                       c->d_model, c->n_head);
    return RT_OK;
}

int student_head_dim(const student_config *c) {
    return c->d_head > 0 ? c->d_head : c->d_model / c->n_head;
}

int student_attn_width(const student_config *c) { return c->n_head * student_head_dim(c); }

int student_tensor_count(const student_config *c) { return 2 + PER_LAYER * c->n_layer + 2; }

static void shape_of(const student_config *c, int index, student_tensor *t) {
    const int64_t C = c->d_model, F = c->d_ff, A = student_attn_width(c);
    int n = student_tensor_count(c);
    t->decay = 0;
    if (index == 0) {
        snprintf(t->name, sizeof t->name, "transformer.wte.weight");
        t->ndim = 2, t->shape[0] = c->vocab_size, t->shape[1] = C;
        return;
    }
    if (index == 1) {
        snprintf(t->name, sizeof t->name, "transformer.wpe.weight");
        t->ndim = 2, t->shape[0] = c->seq_len, t->shape[1] = C;
        return;
    }
    if (index >= n - 2) {
        snprintf(t->name, sizeof t->name, "transformer.ln_f.%s", index == n - 2 ? "weight" : "bias");
        t->ndim = 1, t->shape[0] = C, t->shape[1] = 1;
        return;
    }
    int l = (index - 2) / PER_LAYER, k = (index - 2) % PER_LAYER;
    snprintf(t->name, sizeof t->name, "transformer.h.%d.%s", l, layer_names[k]);
    switch (k) {
    case 2: t->ndim = 2, t->shape[0] = C, t->shape[1] = 3 * A, t->decay = 1; break;
    case 3: t->ndim = 1, t->shape[0] = 3 * A; break;
    case 4: t->ndim = 2, t->shape[0] = A, t->shape[1] = C, t->decay = 1; break;
    case 8: t->ndim = 2, t->shape[0] = C, t->shape[1] = F, t->decay = 1; break;
    case 9: t->ndim = 1, t->shape[0] = F; break;
    case 10: t->ndim = 2, t->shape[0] = F, t->shape[1] = C, t->decay = 1; break;
    default: t->ndim = 1, t->shape[0] = C; break; /* LayerNorm params and C-wide biases */
    }
    if (t->ndim == 1) t->shape[1] = 1;
}

static size_t round_up(size_t n) { return (n + STUDENT_ALIGN_FLOATS - 1) / STUDENT_ALIGN_FLOATS * STUDENT_ALIGN_FLOATS; }

void student_tensor_info(const student_config *c, int index, student_tensor *out) {
    RT_ASSERT(index >= 0 && index < student_tensor_count(c));
    size_t off = 0;
    for (int i = 0; i <= index; i++) {
        shape_of(c, i, out);
        out->numel = (size_t)out->shape[0] * (size_t)(out->ndim == 2 ? out->shape[1] : 1);
        out->offset = off;
        off += round_up(out->numel);
    }
}

int student_tensor_find(const student_config *c, const char *name) {
    student_tensor t;
    for (int i = 0; i < student_tensor_count(c); i++) {
        shape_of(c, i, &t);
        if (strcmp(t.name, name) == 0) return i;
    }
    return -1;
}

size_t student_block_floats(const student_config *c) {
    student_tensor t;
    int n = student_tensor_count(c);
    student_tensor_info(c, n - 1, &t);
    return t.offset + round_up(t.numel);
}

size_t student_param_count(const student_config *c) {
    size_t total = 0;
    student_tensor t;
    for (int i = 0; i < student_tensor_count(c); i++) {
        shape_of(c, i, &t);
        total += (size_t)t.shape[0] * (size_t)(t.ndim == 2 ? t.shape[1] : 1);
    }
    return total;
}
