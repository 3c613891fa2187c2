/* The registry of model families and the sizes their tables refer to. */
#include "family.h"

#include <stdio.h>
#include <string.h>

/* One line per family; the first is the default (llama2.c checkpoints, configs without a type). */
static const family *const registry[] = {&family_llama, &family_opt, &family_mamba};
#define N_FAMILIES (sizeof registry / sizeof registry[0])

const family *family_default(void) { return registry[0]; }

const family *family_find(const char *name) {
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (strcmp(registry[i]->name, name) == 0 || strcmp(registry[i]->hf_arch, name) == 0)
            return registry[i];
    return NULL;
}

const char *family_names(char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_FAMILIES && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", registry[i]->name);
    return buf;
}

size_t family_size(const model_config *c, size_kind k) {
    int embed = c->embed_dim ? c->embed_dim : c->dim;
    switch (k) {
    case SZ_ONE: return 1;
    case SZ_DIM: return (size_t)c->dim;
    case SZ_HIDDEN: return (size_t)c->hidden_dim;
    case SZ_QDIM: return (size_t)c->n_heads * c->head_size;
    case SZ_KVDIM: return (size_t)c->n_kv_heads * c->head_size;
    case SZ_VOCAB: return (size_t)c->vocab_size;
    case SZ_EMBED: return (size_t)embed;
    case SZ_POS: return (size_t)c->n_pos;
    case SZ_PROJ: return embed != c->dim ? (size_t)embed : 0;
    case SZ_HIDDEN2: return 2 * (size_t)c->hidden_dim;
    case SZ_STATE: return (size_t)c->state_size;
    case SZ_CONV: return (size_t)c->conv_kernel;
    case SZ_DTRANK: return (size_t)c->dt_rank;
    case SZ_XPROJ: return (size_t)c->dt_rank + 2 * (size_t)c->state_size;
    case SZ_CONV_BIAS: return c->conv_bias ? (size_t)c->hidden_dim : 0;
    case SZ_HIDDEN2_BIAS: return c->linear_bias ? 2 * (size_t)c->hidden_dim : 0;
    case SZ_DIM_BIAS: return c->linear_bias ? (size_t)c->dim : 0;
    }
    return 0;
}

float *model_tensor_ptr(const model *m, const family_tensor *t, int l) {
    switch (t->slot) {
    case SLOT_EMBED: return m->tok_emb;
    case SLOT_HEAD: return m->shared_cls ? NULL : m->wcls;
    case SLOT_GLOBAL: return m->g[t->index];
    case SLOT_PARAM: return m->blocks[l].p[t->index];
    case SLOT_WEIGHT: return m->blocks[l].lin[t->index].w;
    case SLOT_BIAS: return m->blocks[l].lin[t->index].b;
    }
    return NULL;
}

bool model_has_tensor(const model *m, const family_tensor *t) {
    if (t->slot == SLOT_HEAD && m->shared_cls) return false;
    return family_size(&m->cfg, t->rows) * family_size(&m->cfg, t->cols) != 0;
}

bool family_tensor_per_block(const family_tensor *t) {
    return t->slot == SLOT_PARAM || t->slot == SLOT_WEIGHT || t->slot == SLOT_BIAS;
}

