#include "model.h"
#include "stream.h"

#include "clock.h"
#include "family.h"
#include "fileio.h"
#include "gguf.h"
#include "safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const family *family_of(const model_config *c) { return c->family ? c->family : family_default(); }

int model_n_linear(const model *m) { return m->fam->n_linear; }
const char *model_linear_name(const model *m, int k) { return m->fam->linear[k].name; }

static bool alloc_floats(const model_config *c, bool shared, bool blocks, uint64_t *out);

/* Newer llama2.c exports (export.py version 1/2) start with this magic instead of a header. */
#define LLAMA2C_MAGIC 0x616b3432u

void model_free(model *m) {
    if (!m) return;
    model_store_free(m);
    free(m->data);
    free(m->blocks);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m);
}

int model_init_rope(model *m, err *e) {
    const model_config *c = &m->cfg;
    if (!family_of(c)->rope) return SPARQ_OK;
    int half = c->head_size / 2;
    size_t n = (size_t)c->seq_len * half;
    m->rope_cos = malloc(n * sizeof(float));
    m->rope_sin = malloc(n * sizeof(float));
    if (!m->rope_cos || !m->rope_sin)
        return err_set(e, SPARQ_ERUNTIME, "out of memory for RoPE tables (%zu entries)", n);
    for (int pos = 0; pos < c->seq_len; pos++) {
        for (int i = 0; i < half; i++) {
            /* Same float expression as llama2.c run.c, so logits agree to round-off. */
            float freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_size);
            float val = (float)pos * freq;
            m->rope_cos[(size_t)pos * half + i] = cosf(val);
            m->rope_sin[(size_t)pos * half + i] = sinf(val);
        }
    }
    return SPARQ_OK;
}

/* The resource guard: a header may claim any size its fields allow, so the float32 weights and
 * RoPE tables it implies are compared with this machine's memory (or a lower address-space or
 * data limit) before anything is allocated, rather than failing, or swapping, half-way. */
static int check_memory(const char *path, uint64_t floats, int seq_len, int head_size, err *e) {
    double have = clock_memory_bytes();
    uint64_t rope = (uint64_t)seq_len * (uint64_t)head_size;   /* cos and sin of seq_len x head_size/2 */
    double need = 4.0 * ((double)floats + (double)rope);
    if (need > have)
        return err_set(e, SPARQ_EINPUT, "%s: the model needs %.1f GB of memory (%llu weights as float32 "
                       "and RoPE tables for a context of %d), more than the %.1f GB this machine has",
                       path, need / 1e9, (unsigned long long)floats, seq_len, have / 1e9);
    return SPARQ_OK;
}

/* a += b * c with overflow detection; sizes come from an untrusted header. */
static bool add_mul(uint64_t *a, uint64_t b, uint64_t c) {
    if (b != 0 && c > UINT64_MAX / b) return false;
    uint64_t p = b * c;
    if (*a > UINT64_MAX - p) return false;
    *a += p;
    return true;
}

static int check_header(const char *path, const int32_t h[7], err *e) {
    static const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads",
                                   "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) {
        int64_t v = i == 5 && h[i] < 0 ? -(int64_t)h[i] : h[i];   /* -INT32_MIN overflows int32 */
        if (v <= 0 || v > (1 << 24))
            return err_set(e, SPARQ_EINPUT, "%s: header field %s = %d is out of range "
                           "(not a llama2.c checkpoint?)", path, names[i], h[i]);
    }
    if (h[0] % h[3] != 0)
        return err_set(e, SPARQ_EINPUT, "%s: dim %d is not a multiple of n_heads %d", path, h[0], h[3]);
    if (h[4] > h[3] || h[3] % h[4] != 0)
        return err_set(e, SPARQ_EINPUT, "%s: n_heads %d is not a multiple of n_kv_heads %d",
                       path, h[3], h[4]);
    if ((h[0] / h[3]) % 2 != 0)
        return err_set(e, SPARQ_EINPUT, "%s: head size %d is odd; RoPE needs pairs", path, h[0] / h[3]);
    return SPARQ_OK;
}

/* Which tensor float i (counted after the header) of a llama2.c checkpoint belongs to, so that a
 * bad weight is reported by layer and name; the order is the file's (see below). */
static void llama2c_locate(const model_config *c, bool shared, uint64_t i, char *buf, size_t cap) {
    uint64_t d = c->dim, kv = d * c->n_kv_heads / c->n_heads, h = c->hidden_dim, V = c->vocab_size;
    const struct { const char *name; uint64_t size; bool per_layer; } part[] = {
        {"token embedding", V * d, false}, {"attn_norm", d, true}, {"q (wq)", d * d, true},
        {"k (wk)", kv * d, true}, {"v (wv)", kv * d, true}, {"o (wo)", d * d, true},
        {"ffn_norm", d, true}, {"gate (w1)", h * d, true}, {"down (w2)", d * h, true},
        {"up (w3)", h * d, true}, {"final norm", d, false},
        {"legacy RoPE table", (uint64_t)c->seq_len * c->head_size, false},
        {"classifier", shared ? 0 : V * d, false}};
    for (size_t k = 0; k < sizeof part / sizeof part[0]; k++) {
        uint64_t all = part[k].size * (part[k].per_layer ? (uint64_t)c->n_layers : 1);
        if (i < all) {
            if (part[k].per_layer)
                snprintf(buf, cap, "layer %llu %s, element %llu", (unsigned long long)(i / part[k].size),
                         part[k].name, (unsigned long long)(i % part[k].size));
            else
                snprintf(buf, cap, "%s, element %llu", part[k].name, (unsigned long long)i);
            return;
        }
        i -= all;
    }
    snprintf(buf, cap, "past the last tensor");
}

/* ---- llama2.c export.py version 1 (float32) and 2 (Q8_0) -------------------------------------- */

#define LLAMA2C_HEADER 256   /* export.py pads its versioned headers with zeros to 256 bytes */

/* One tensor of a version 1/2 file: where its values go and how a message names it. */
typedef struct {
    const char *name;
    int layer;               /* -1: not per layer */
    float *dst;
    size_t n;
    int kind;                /* LLAMA_Q ... for a linear layer, else -1 */
} ak42_tensor;

/* The file's tensors in its order (export.py version1_export/version2_export, runq.c's
 * memory_map_weights): the 2L+1 norms first, then the token embedding, each kind of linear
 * layer across layers (wq wk wv wo w1 w2 w3, llama2.c's w1/w2/w3 being gate/down/up), then the
 * classifier when it is not shared. Versions 1 and 2 share the order; only the encoding of the
 * tensors after the norms differs. t has room for 9L+3; returns the count. */
static size_t ak42_tensors(model *m, ak42_tensor *t) {
    const model_config *c = &m->cfg;
    size_t k = 0, d = (size_t)c->dim, L = (size_t)c->n_layers;
    for (size_t l = 0; l < L; l++) t[k++] = (ak42_tensor){"attn_norm", (int)l, m->blocks[l].p[LLAMA_ATTN_NORM], d, -1};
    for (size_t l = 0; l < L; l++) t[k++] = (ak42_tensor){"ffn_norm", (int)l, m->blocks[l].p[LLAMA_FFN_NORM], d, -1};
    t[k++] = (ak42_tensor){"final norm", -1, m->g[LLAMA_FINAL_NORM], d, -1};
    t[k++] = (ak42_tensor){"token embedding", -1, m->tok_emb, (size_t)c->vocab_size * d, -1};
    static const struct { int kind; const char *name; } lin[] = {
        {LLAMA_Q, "q (wq)"}, {LLAMA_K, "k (wk)"}, {LLAMA_V, "v (wv)"}, {LLAMA_O, "o (wo)"},
        {LLAMA_GATE, "gate (w1)"}, {LLAMA_DOWN, "down (w2)"}, {LLAMA_UP, "up (w3)"}};
    for (size_t j = 0; j < sizeof lin / sizeof lin[0]; j++)
        for (size_t l = 0; l < L; l++) {
            linear *li = &m->blocks[l].lin[lin[j].kind];
            t[k++] = (ak42_tensor){lin[j].name, (int)l, li->w, (size_t)li->rows * li->cols, (int)lin[j].kind};
        }
    if (!m->shared_cls) t[k++] = (ak42_tensor){"classifier", -1, m->wcls, (size_t)c->vocab_size * d, -1};
    return k;
}

static void ak42_name(const ak42_tensor *t, char *buf, size_t cap) {
    if (t->layer >= 0) snprintf(buf, cap, "layer %d %s", t->layer, t->name);
    else snprintf(buf, cap, "%s", t->name);
}

/* Fill the model's weights from the mapped file, checking every float (v1) or scale (v2). The
 * size check before this guarantees the file holds exactly these bytes. */
static int ak42_read(model *m, const unsigned char *p, int version, int gs, const char *path, err *e) {
    size_t L = (size_t)m->cfg.n_layers, cap = 9 * L + 3;
    ak42_tensor *t = malloc(cap * sizeof *t);
    if (!t) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    size_t nt = ak42_tensors(m, t), norms = 2 * L + 1;
    char where[96];
    for (size_t k = 0; k < nt; k++) {
        size_t n = t[k].n;
        if (version == 1 || k < norms) {
            memcpy(t[k].dst, p, n * sizeof(float));
            p += n * sizeof(float);
            for (size_t i = 0; i < n; i++)
                if (!isfinite(t[k].dst[i])) {
                    ak42_name(&t[k], where, sizeof where);
                    double v = t[k].dst[i];
                    free(t);
                    return err_set(e, SPARQ_EINPUT, "%s: %s, element %zu is not finite (%g)", path,
                                   where, i, v);
                }
            continue;
        }
        /* Q8_0 (runq.c): the tensor's n int8 values, then n / gs float32 scales; a weight is
         * exactly (float)q * s, what runq.c's dequantize computes. */
        const int8_t *q = (const int8_t *)p;
        const unsigned char *sp = p + n;
        size_t ng = n / (size_t)gs;
        for (size_t g = 0; g < ng; g++) {
            float s;
            memcpy(&s, sp + g * sizeof(float), sizeof s);
            if (!isfinite(s)) {
                ak42_name(&t[k], where, sizeof where);
                free(t);
                return err_set(e, SPARQ_EINPUT, "%s: %s, scale %zu (group of %d) is not finite (%g)",
                               path, where, g, gs, (double)s);
            }
            float *dst = t[k].dst + g * (size_t)gs;
            const int8_t *qg = q + g * (size_t)gs;
            for (int i = 0; i < gs; i++) dst[i] = (float)qg[i] * s;
        }
        p += n + ng * sizeof(float);
    }
    free(t);
    return SPARQ_OK;
}

/* Version 1/2 header: u32 magic, i32 version, 7 x i32 (dim hidden_dim n_layers n_heads
 * n_kv_heads vocab_size seq_len), u8 shared_classifier, v2: i32 group_size (unaligned, at byte
 * 37), zeros to 256. Fields are read with memcpy: the file is little-endian like its writer. */
static int load_llama2c_ak42(model **out, const char *path, err *e) {
    *out = NULL;
    mapped_file mf;
    int rc = mapped_open(&mf, path, "model", e);
    if (rc) return rc;
    const unsigned char *b = mf.data;
    if (mf.size < LLAMA2C_HEADER) {
        mapped_close(&mf);
        return err_set(e, SPARQ_EINPUT, "%s: file is %llu bytes, too short for a llama2.c version 1/2 "
                       "header (256 bytes)", path, (unsigned long long)mf.size);
    }
    int32_t version, h[7], gs = 0;
    memcpy(&version, b + 4, 4);
    memcpy(h, b + 8, sizeof h);
    uint8_t shared_byte = b[36];
    if (version == 2) memcpy(&gs, b + 37, 4);
    if (version != 1 && version != 2)
        rc = err_set(e, SPARQ_EINPUT, "%s: llama2.c export (magic \"ak42\") version %d is not supported "
                     "(1 and 2 are; legacy files have no magic)", path, version);
    else if (shared_byte > 1)
        rc = err_set(e, SPARQ_EINPUT, "%s: header field shared_classifier = %u is not 0 or 1", path,
                     (unsigned)shared_byte);
    else if (h[5] < 0)   /* the versioned headers carry sharing in their own byte */
        rc = err_set(e, SPARQ_EINPUT, "%s: header field vocab_size = %d is out of range", path, h[5]);
    else rc = check_header(path, h, e);
    if (!rc && version == 2 && (gs <= 0 || h[0] % gs != 0))
        /* export.py halves the group until it divides dim; every tensor is then a multiple of
         * dim values, so the groups tile each tensor. */
        rc = err_set(e, SPARQ_EINPUT, "%s: header field group_size = %d does not divide dim %d", path,
                     gs, h[0]);
    if (rc) { mapped_close(&mf); return rc; }

    model_config c = {
        .dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
        .vocab_size = h[5], .seq_len = h[6],
        .head_size = h[0] / h[3], .rope_theta = 10000.0f, .norm_eps = 1e-5f, .rope = ROPE_ADJACENT,
    };
    bool shared = shared_byte == 1;
    uint64_t L = c.n_layers, d = c.dim, kv = (uint64_t)c.dim * c.n_kv_heads / c.n_heads;
    uint64_t norms = 0, lin = 0;   /* float32 norm values; values of the other tensors */
    bool ok = add_mul(&norms, 2 * L + 1, d)
           && add_mul(&lin, c.vocab_size, d) && add_mul(&lin, L * d, 2 * d) && add_mul(&lin, L * kv, 2 * d)
           && add_mul(&lin, L * d, 3 * (uint64_t)c.hidden_dim) && (shared || add_mul(&lin, c.vocab_size, d));
    uint64_t need = LLAMA2C_HEADER;
    ok = ok && add_mul(&need, 4, norms)
            && (version == 1 ? add_mul(&need, 4, lin)
                             : add_mul(&need, 1, lin) && add_mul(&need, 4, lin / (uint64_t)gs));
    if (!ok) { mapped_close(&mf); return err_set(e, SPARQ_EINPUT, "%s: header sizes overflow", path); }
    if (mf.size != need) {
        char gsbuf[32] = "";
        if (version == 2) snprintf(gsbuf, sizeof gsbuf, " group_size=%d", gs);
        rc = err_set(e, SPARQ_EINPUT, "%s: file is %llu bytes, version %d header (dim=%d hidden=%d "
                     "layers=%d heads=%d kv_heads=%d vocab=%d%s seq_len=%d%s) needs %llu", path,
                     (unsigned long long)mf.size, version, c.dim, c.hidden_dim, c.n_layers, c.n_heads,
                     c.n_kv_heads, c.vocab_size, shared ? " shared" : " unshared", c.seq_len, gsbuf,
                     (unsigned long long)need);
        mapped_close(&mf);
        return rc;
    }
    model *m = NULL;
    uint64_t whole;
    rc = model_config_check(&c, path, e);
    if (!rc && !alloc_floats(&c, shared, true, &whole)) rc = err_set(e, SPARQ_EINPUT, "%s: model sizes overflow", path);
    if (!rc) rc = check_memory(path, whole, c.seq_len, c.head_size, e);
    if (!rc) rc = model_alloc(&m, &c, shared, e);
    if (!rc) rc = ak42_read(m, b + LLAMA2C_HEADER, version, gs, path, e);
    mapped_close(&mf);
    if (!rc) rc = model_init_rope(m, e);
    if (rc) { model_free(m); return rc; }
    m->llama2c_version = version;
    m->group_size = gs;
    *out = m;
    return SPARQ_OK;
}

int model_load_llama2c(model **out, const char *path, err *e) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, SPARQ_EINPUT, "%s: cannot open model: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return err_set(e, SPARQ_EINPUT, "%s: not a regular file", path);
    }
    uint64_t fsize = (uint64_t)st.st_size;
    int32_t h[7];
    if (fsize < sizeof h || fread(h, sizeof h, 1, f) != 1) {
        fclose(f);
        return err_set(e, SPARQ_EINPUT, "%s: file is %llu bytes, too short for a llama2.c header "
                       "(28 bytes)", path, (unsigned long long)fsize);
    }
    if ((uint32_t)h[0] == LLAMA2C_MAGIC) {
        fclose(f);
        return load_llama2c_ak42(out, path, e);
    }
    int rc = check_header(path, h, e);
    if (rc) { fclose(f); return rc; }

    model_config c = {
        .dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
        .vocab_size = h[5] < 0 ? -h[5] : h[5], .seq_len = h[6],
        .head_size = h[0] / h[3], .rope_theta = 10000.0f, .norm_eps = 1e-5f, .rope = ROPE_ADJACENT,
    };
    bool shared = h[5] > 0;
    uint64_t L = c.n_layers, d = c.dim, kv = (uint64_t)c.dim * c.n_kv_heads / c.n_heads;
    uint64_t n = 0;
    bool ok = add_mul(&n, c.vocab_size, d)           /* token embedding          */
           && add_mul(&n, L, d)                      /* rms_att                  */
           && add_mul(&n, L * d, d)                  /* wq                       */
           && add_mul(&n, L * kv, 2 * d)             /* wk, wv                   */
           && add_mul(&n, L * d, d)                  /* wo                       */
           && add_mul(&n, L, d)                      /* rms_ffn                  */
           && add_mul(&n, L * d, 3 * (uint64_t)c.hidden_dim)  /* w1, w2, w3      */
           && add_mul(&n, 1, d)                      /* rms_final                */
           && add_mul(&n, c.seq_len, c.head_size)    /* legacy freq_cis real+imag */
           && (shared || add_mul(&n, c.vocab_size, d));
    if (!ok || n > (UINT64_MAX - 28) / 4) {
        fclose(f);
        return err_set(e, SPARQ_EINPUT, "%s: header sizes overflow", path);
    }
    uint64_t need = 28 + 4 * n;
    if (fsize != need) {
        fclose(f);
        return err_set(e, SPARQ_EINPUT, "%s: file is %llu bytes, header (dim=%d hidden=%d layers=%d "
                       "heads=%d kv_heads=%d vocab=%d%s seq_len=%d) needs %llu", path,
                       (unsigned long long)fsize, c.dim, c.hidden_dim, c.n_layers, c.n_heads,
                       c.n_kv_heads, c.vocab_size, shared ? " shared" : " unshared", c.seq_len,
                       (unsigned long long)need);
    }
    if ((rc = check_memory(path, n, c.seq_len, c.head_size, e))) {
        fclose(f);
        return rc;
    }

    model *m = calloc(1, sizeof *m);
    if (!m) { fclose(f); return err_set(e, SPARQ_ERUNTIME, "out of memory"); }
    c.family = family_default();
    m->cfg = c;
    m->fam = c.family;
    m->shared_cls = shared;
    m->data_floats = n;
    m->data = malloc(n * sizeof(float));
    m->blocks = calloc(c.n_layers, sizeof(block));
    if (!m->data || !m->blocks) {
        fclose(f);
        model_free(m);
        return err_set(e, SPARQ_ERUNTIME, "%s: out of memory for %llu weights", path,
                       (unsigned long long)n);
    }
    if (fread(m->data, sizeof(float), n, f) != n) {
        fclose(f);
        model_free(m);
        return err_set(e, SPARQ_EINPUT, "%s: read failed", path);
    }
    fclose(f);

    /* The file stores each kind of tensor for all layers together, in this order. */
    float *p = m->data;
    m->tok_emb = p; p += (size_t)c.vocab_size * d;
    float *rms_att = p; p += L * d;
    float *wq = p; p += L * d * d;
    float *wk = p; p += L * kv * d;
    float *wv = p; p += L * kv * d;
    float *wo = p; p += L * d * d;
    float *rms_ffn = p; p += L * d;
    float *w1 = p; p += L * c.hidden_dim * d;
    float *w2 = p; p += L * d * c.hidden_dim;
    float *w3 = p; p += L * c.hidden_dim * d;
    m->g[LLAMA_FINAL_NORM] = p; p += d;
    p += (size_t)c.seq_len * c.head_size;         /* legacy RoPE tables, recomputed instead */
    m->wcls = shared ? m->tok_emb : p;

    size_t hd = (size_t)c.hidden_dim * d;
    for (int l = 0; l < c.n_layers; l++) {
        block *b = &m->blocks[l];
        b->p[LLAMA_ATTN_NORM] = rms_att + l * d;
        b->p[LLAMA_FFN_NORM] = rms_ffn + l * d;
        b->lin[LLAMA_Q] = (linear){wq + l * d * d, NULL, c.dim, c.dim};
        b->lin[LLAMA_K] = (linear){wk + l * kv * d, NULL, (int)kv, c.dim};
        b->lin[LLAMA_V] = (linear){wv + l * kv * d, NULL, (int)kv, c.dim};
        b->lin[LLAMA_O] = (linear){wo + l * d * d, NULL, c.dim, c.dim};
        b->lin[LLAMA_GATE] = (linear){w1 + l * hd, NULL, c.hidden_dim, c.dim};
        b->lin[LLAMA_DOWN] = (linear){w2 + l * hd, NULL, c.dim, c.hidden_dim};
        b->lin[LLAMA_UP] = (linear){w3 + l * hd, NULL, c.hidden_dim, c.dim};
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(m->data[i])) {
            double v = m->data[i];
            char where[128];
            llama2c_locate(&c, shared, i, where, sizeof where);
            model_free(m);
            return err_set(e, SPARQ_EINPUT, "%s: %s (weight %zu of the file) is not finite (%g)", path, where,
                           i, v);
        }
    }
    rc = model_init_rope(m, e);
    if (rc) { model_free(m); return rc; }
    *out = m;
    return SPARQ_OK;
}

uint64_t model_linear_params(const model *m) {
    uint64_t n = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < m->fam->n_linear; k++)
            n += (uint64_t)m->blocks[l].lin[k].rows * m->blocks[l].lin[k].cols;
    return n;
}

/* Tensor t of the family table: values of one copy (0: absent from this model) and copies. */
static uint64_t tensor_values(const model_config *c, const family_tensor *t) {
    return (uint64_t)family_size(c, t->rows) * family_size(c, t->cols);
}
static uint64_t tensor_copies(const model_config *c, const family_tensor *t) {
    return family_tensor_per_block(t) ? (uint64_t)c->n_layers : 1;
}

uint64_t model_params(const model *m) {
    uint64_t n = 0;
    for (int i = 0; i < m->fam->n_tensor; i++) {
        const family_tensor *t = &m->fam->tensor[i];
        if (t->slot != SLOT_HEAD || !m->shared_cls) n += tensor_values(&m->cfg, t) * tensor_copies(&m->cfg, t);
    }
    return n;
}

/* ---- llama2.c writer ---------------------------------------------------------------------- */

static void write_rows(atomic_file *a, const float *w, size_t n) { atomic_write(a, w, n * sizeof(float)); }

/* q or k of one layer in the adjacent layout llama2.c's run.c rotates. */
static void write_qk(atomic_file *a, const model *m, const linear *l, int heads, float *tmp) {
    if (m->cfg.rope == ROPE_ADJACENT) {
        write_rows(a, l->w, (size_t)l->rows * l->cols);
        return;
    }
    model_permute_rows(tmp, l->w, heads, m->cfg.head_size, l->cols, m->cfg.rope, ROPE_ADJACENT);
    write_rows(a, tmp, (size_t)l->rows * l->cols);
}

/* The format has no fields for these: run.c derives head_size = dim / n_heads and fixes theta
 * and epsilon, so a model that differs would silently become another model. */
static int check_llama2c_writable(const model *m, const char *path, err *e) {
    const model_config *c = &m->cfg;
    if (!m->fam->llama2c)
        return err_set(e, SPARQ_EINPUT, "%s: llama2.c format holds LLaMA models only; this model is "
                       "%s (use safetensors)", path, m->fam->name);
    if (c->head_size * c->n_heads != c->dim)
        return err_set(e, SPARQ_EINPUT, "%s: llama2.c format needs head_size = dim / n_heads, but "
                       "head_size is %d with dim %d and %d heads", path, c->head_size, c->dim, c->n_heads);
    if (c->rope_theta != 10000.0f)
        return err_set(e, SPARQ_EINPUT, "%s: llama2.c format fixes rope_theta at 10000; this model "
                       "has %g (use safetensors or gguf)", path, (double)c->rope_theta);
    if (c->norm_eps != 1e-5f)
        return err_set(e, SPARQ_EINPUT, "%s: llama2.c format fixes rms_norm_eps at 1e-5; this model "
                       "has %g (use safetensors or gguf)", path, (double)c->norm_eps);
    return SPARQ_OK;
}

int model_save_llama2c(const model *m, const char *path, err *e) {
    const model_config *c = &m->cfg;
    int rc0 = check_llama2c_writable(m, path, e);
    if (rc0) return rc0;
    int32_t h[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                    m->shared_cls ? c->vocab_size : -c->vocab_size, c->seq_len};
    size_t half = (size_t)c->head_size / 2, rows_max = (size_t)c->dim;
    float *tmp = malloc(rows_max * c->dim * sizeof(float) + 1);
    if (!tmp) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    /* llama2.c interleaves the layers kind by kind: a streamed model has every block as float32
     * while it is written (this format is float32 anyway; safetensors is written block by block). */
    int rc = model_blocks_acquire_all(m, e);
    if (rc) { free(tmp); return rc; }
    atomic_file a;
    rc = atomic_open(&a, path, e);
    if (rc) { free(tmp); model_blocks_release_all(m); return rc; }
    /* llama2.c stores each kind of tensor for all layers together, in this order. */
    size_t d = (size_t)c->dim;
    atomic_write(&a, h, sizeof h);
    write_rows(&a, m->tok_emb, (size_t)c->vocab_size * d);
    for (int l = 0; l < c->n_layers; l++) write_rows(&a, m->blocks[l].p[LLAMA_ATTN_NORM], d);
    for (int l = 0; l < c->n_layers; l++) write_qk(&a, m, &m->blocks[l].lin[LLAMA_Q], c->n_heads, tmp);
    for (int l = 0; l < c->n_layers; l++) write_qk(&a, m, &m->blocks[l].lin[LLAMA_K], c->n_kv_heads, tmp);
    static const int rest[] = {LLAMA_V, LLAMA_O};
    for (int k = 0; k < 2; k++)
        for (int l = 0; l < c->n_layers; l++) {
            const linear *li = &m->blocks[l].lin[rest[k]];
            write_rows(&a, li->w, (size_t)li->rows * li->cols);
        }
    for (int l = 0; l < c->n_layers; l++) write_rows(&a, m->blocks[l].p[LLAMA_FFN_NORM], d);
    static const int ffn[] = {LLAMA_GATE, LLAMA_DOWN, LLAMA_UP};   /* w1, w2, w3 */
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < c->n_layers; l++) {
            const linear *li = &m->blocks[l].lin[ffn[k]];
            write_rows(&a, li->w, (size_t)li->rows * li->cols);
        }
    write_rows(&a, m->g[LLAMA_FINAL_NORM], d);
    /* Legacy freq_cis_real / freq_cis_imag [seq_len][head_size/2]: run.c ignores them; they are
     * cos and sin of the same angles for either layout (frequency i serves pair i). */
    write_rows(&a, m->rope_cos, (size_t)c->seq_len * half);
    write_rows(&a, m->rope_sin, (size_t)c->seq_len * half);
    if (!m->shared_cls) write_rows(&a, m->wcls, (size_t)c->vocab_size * d);
    free(tmp);
    model_blocks_release_all(m);
    return atomic_commit(&a, e);
}

/* export.py's Q8_0 of one group: scale = max|w| / 127, q = round-half-even(w / scale). An
 * all-zero group (export.py would divide by zero) gets scale 0 and zeros. */
static void quantize_group(const float *w, int gs, int8_t *q, float *s) {
    float wmax = 0.0f;
    for (int i = 0; i < gs; i++) wmax = fmaxf(wmax, fabsf(w[i]));
    *s = wmax / 127.0f;
    for (int i = 0; i < gs; i++) q[i] = *s > 0.0f ? (int8_t)rintf(w[i] / *s) : 0;
}

/* The group size a version 2 file gets: the one the model was read with, else export.py's 64,
 * halved until it divides dim (every tensor is a multiple of dim values). */
static int llama2c_group_size(const model *m) {
    if (m->group_size > 0 && m->cfg.dim % m->group_size == 0) return m->group_size;
    int gs = 64;
    while (m->cfg.dim % gs != 0) gs /= 2;
    return gs;
}

int model_save_llama2c_version(const model *m, const char *path, int version, err *e) {
    if (version == 0) return model_save_llama2c(m, path, e);
    if (version != 1 && version != 2)
        return err_set(e, SPARQ_EINPUT, "%s: llama2.c version %d: expected 0 (legacy), 1 (float32) or "
                       "2 (Q8_0)", path, version);
    int rc = check_llama2c_writable(m, path, e);
    if (rc) return rc;
    const model_config *c = &m->cfg;
    int gs = version == 2 ? llama2c_group_size(m) : 0;
    unsigned char hdr[LLAMA2C_HEADER] = {0};
    uint32_t magic = LLAMA2C_MAGIC;
    int32_t h[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
                    c->seq_len};
    memcpy(hdr, &magic, 4);
    memcpy(hdr + 4, &version, 4);
    memcpy(hdr + 8, h, sizeof h);
    hdr[36] = m->shared_cls ? 1 : 0;
    if (version == 2) memcpy(hdr + 37, &gs, 4);

    size_t L = (size_t)c->n_layers, most = (size_t)c->vocab_size * c->dim;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < m->fam->n_linear; k++) {
            size_t n = (size_t)m->blocks[l].lin[k].rows * m->blocks[l].lin[k].cols;
            if (n > most) most = n;
        }
    ak42_tensor *t = malloc((9 * L + 3) * sizeof *t);
    float *tmp = malloc(most * sizeof(float));
    int8_t *q = version == 2 ? malloc(most) : NULL;
    float *sc = version == 2 ? malloc(most / gs * sizeof(float)) : NULL;
    if (!t || !tmp || (version == 2 && (!q || !sc))) {
        free(t); free(tmp); free(q); free(sc);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    rc = model_blocks_acquire_all(m, e);   /* as in model_save_llama2c */
    if (rc) {
        free(t); free(tmp); free(q); free(sc);
        return rc;
    }
    size_t nt = ak42_tensors((model *)m, t), norms = 2 * L + 1;   /* only read: the list names the weights */
    atomic_file a;
    rc = atomic_open(&a, path, e);
    if (!rc) {
        atomic_write(&a, hdr, sizeof hdr);
        for (size_t k = 0; k < nt; k++) {
            const float *w = t[k].dst;
            if ((t[k].kind == LLAMA_Q || t[k].kind == LLAMA_K) && c->rope != ROPE_ADJACENT) {
                int heads = t[k].kind == LLAMA_Q ? c->n_heads : c->n_kv_heads;
                model_permute_rows(tmp, w, heads, c->head_size, c->dim, c->rope, ROPE_ADJACENT);
                w = tmp;
            }
            if (version == 1 || k < norms) {
                write_rows(&a, w, t[k].n);
                continue;
            }
            size_t ng = t[k].n / (size_t)gs;
            for (size_t g = 0; g < ng; g++) quantize_group(w + g * gs, gs, q + g * gs, &sc[g]);
            atomic_write(&a, q, t[k].n);
            atomic_write(&a, sc, ng * sizeof(float));
        }
        rc = atomic_commit(&a, e);
    }
    model_blocks_release_all(m);
    free(t); free(tmp); free(q); free(sc);
    return rc;
}

/* ---- every format ------------------------------------------------------------------------- */

/* Weights model_alloc holds for c, or false on overflow. */
static bool alloc_floats(const model_config *c, bool shared, bool blocks, uint64_t *out) {
    const family *f = family_of(c);
    uint64_t n = 0;
    bool ok = true;
    /* Every size is at most 2^24 (model_config_check), so a tensor's rows x cols fits 64 bits
     * and only the sums and the copies can overflow. */
    for (int i = 0; i < f->n_tensor && ok; i++) {
        const family_tensor *t = &f->tensor[i];
        if ((t->slot == SLOT_HEAD && shared) || (!blocks && family_tensor_per_block(t))) continue;
        ok = add_mul(&n, tensor_values(c, t), tensor_copies(c, t));
    }
    *out = n;
    return ok && n <= SIZE_MAX / sizeof(float);
}

int model_config_check(const model_config *c, const char *path, err *e) {
    const struct { const char *name; int v; } f[] = {
        {"dim", c->dim}, {"hidden_dim", c->hidden_dim}, {"n_layers", c->n_layers},
        {"n_heads", c->n_heads}, {"n_kv_heads", c->n_kv_heads}, {"vocab_size", c->vocab_size},
        {"seq_len", c->seq_len}, {"head_size", c->head_size}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v <= 0 || f[i].v > (1 << 24))
            return err_set(e, SPARQ_EINPUT, "%s: %s = %d is out of range", path, f[i].name, f[i].v);
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0)
        return err_set(e, SPARQ_EINPUT, "%s: n_heads %d is not a multiple of n_kv_heads %d", path,
                       c->n_heads, c->n_kv_heads);
    bool rope = family_of(c)->rope;
    if (rope && c->head_size % 2 != 0)
        return err_set(e, SPARQ_EINPUT, "%s: head size %d is odd; RoPE needs pairs", path, c->head_size);
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps))
        return err_set(e, SPARQ_EINPUT, "%s: norm epsilon %g is not a positive number", path,
                       (double)c->norm_eps);
    if (c->state_size < 0 || c->state_size > (1 << 24) || c->conv_kernel < 0 ||
        c->conv_kernel > (1 << 24) || c->dt_rank < 0 || c->dt_rank > (1 << 24))
        return err_set(e, SPARQ_EINPUT, "%s: state size %d, conv kernel %d or dt rank %d is out of "
                       "range", path, c->state_size, c->conv_kernel, c->dt_rank);
    if (c->embed_dim < 0 || c->embed_dim > (1 << 24) || c->n_pos < 0 || c->n_pos > (1 << 24))
        return err_set(e, SPARQ_EINPUT, "%s: embedding width %d or position count %d is out of range",
                       path, c->embed_dim, c->n_pos);
    if (rope && (!(c->rope_theta > 1.0f) || !isfinite(c->rope_theta)))
        return err_set(e, SPARQ_EINPUT, "%s: rope_theta %g is not a number above 1", path,
                       (double)c->rope_theta);
    uint64_t n, rest;
    if (!alloc_floats(c, false, true, &n) || (uint64_t)c->seq_len * c->head_size > SIZE_MAX / 8)
        return err_set(e, SPARQ_EINPUT, "%s: model sizes overflow", path);
    /* What a streamed model holds at least (stream.h): everything but the blocks, and two blocks
     * (the one worked on and the one written back). A resident loader checks the whole. */
    alloc_floats(c, false, false, &rest);
    uint64_t block = (n - rest) / (uint64_t)c->n_layers;
    return check_memory(path, rest + 2 * block, rope ? c->seq_len : 0, c->head_size, e);
}

int model_check_tensor_total(const model_config *c, bool shared, double have, const char *path,
                             const char *source, err *e) {
    const family *f = family_of(c);
    double need = 0;
    for (int i = 0; i < f->n_tensor; i++) {
        const family_tensor *t = &f->tensor[i];
        if (t->slot != SLOT_HEAD || !shared)
            need += (double)family_size(c, t->rows) * (double)family_size(c, t->cols) *
                    (double)tensor_copies(c, t);
    }
    /* A small shortfall is left to the tensor shape checks, whose message names the tensor. */
    if (need > have && need > (double)(1 << 24))
        return err_set(e, SPARQ_EINPUT, "%s: %s describes a model of %.0f weights, but the file's "
                       "tensors hold only %.0f values", path, source, need, have);
    return SPARQ_OK;
}

/* The pointers of block l's tensors into base: the linear weights in the family's linear order
 * (LLaMA's q, k, v and gate, up back to back, so the forward can take each group as one GEMM),
 * then the biases, then the vectors. A streamed block's one allocation (stream.c). */
void model_block_point(model *m, int l, float *base) {
    const model_config *c = &m->cfg;
    static const tensor_slot order[] = {SLOT_WEIGHT, SLOT_BIAS, SLOT_PARAM};
    for (int o = 0; o < 3; o++) {
        int n = order[o] == SLOT_PARAM ? MODEL_MAX_PARAM : MODEL_MAX_LINEAR;
        for (int idx = 0; idx < n; idx++)
            for (int i = 0; i < m->fam->n_tensor; i++) {
                const family_tensor *t = &m->fam->tensor[i];
                size_t v = (size_t)tensor_values(c, t);
                if (t->slot != order[o] || t->index != idx || v == 0) continue;
                float *q = base;
                if (base) base += v;
                if (t->slot == SLOT_PARAM) m->blocks[l].p[idx] = q;
                else if (t->slot == SLOT_WEIGHT) m->blocks[l].lin[idx].w = q;
                else m->blocks[l].lin[idx].b = q;
            }
    }
}

size_t model_block_floats(const model *m) {
    size_t n = 0;
    for (int i = 0; i < m->fam->n_tensor; i++)
        if (family_tensor_per_block(&m->fam->tensor[i])) n += (size_t)tensor_values(&m->cfg, &m->fam->tensor[i]);
    return n;
}

int model_alloc(model **out, const model_config *c, bool shared, err *e) {
    return model_alloc_parts(out, c, shared, true, e);
}

int model_alloc_parts(model **out, const model_config *c, bool shared, bool blocks, err *e) {
    *out = NULL;
    uint64_t n;
    if (!alloc_floats(c, shared, blocks, &n)) return err_set(e, SPARQ_EINPUT, "model sizes overflow");
    model *m = calloc(1, sizeof *m);
    if (!m) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    m->cfg = *c;
    m->cfg.family = m->fam = family_of(c);
    m->shared_cls = shared;
    m->data_floats = (size_t)n;
    m->llama2c_version = -1;
    /* calloc: large blocks come as untouched zero pages, so the loader's writes are the only
     * time the memory is touched. */
    m->data = calloc((size_t)n, sizeof(float));
    m->blocks = calloc((size_t)c->n_layers, sizeof(block));
    if (!m->data || !m->blocks) {
        model_free(m);
        return err_set(e, SPARQ_ERUNTIME, "out of memory for %llu weights (%.1f GB)",
                       (unsigned long long)n, n * 4.0 / 1e9);
    }
    /* Walk the family's table in order, each per-block tensor for all blocks together. */
    float *p = m->data;
    for (int i = 0; i < m->fam->n_tensor; i++) {
        const family_tensor *t = &m->fam->tensor[i];
        size_t v = (size_t)tensor_values(c, t), copies = (size_t)tensor_copies(c, t);
        if (v == 0 || (t->slot == SLOT_HEAD && shared)) continue;
        bool per_block = family_tensor_per_block(t);
        for (size_t l = 0; l < copies; l++) {
            float *q = per_block && !blocks ? NULL : p + l * v;   /* streamed: set on acquire */
            linear *li = t->slot == SLOT_WEIGHT || t->slot == SLOT_BIAS ? &m->blocks[l].lin[t->index] : NULL;
            switch (t->slot) {
            case SLOT_EMBED: m->tok_emb = q; break;
            case SLOT_HEAD: m->wcls = q; break;
            case SLOT_GLOBAL: m->g[t->index] = q; break;
            case SLOT_PARAM: m->blocks[l].p[t->index] = q; break;
            case SLOT_WEIGHT:
                li->w = q;
                li->rows = (int)family_size(c, t->rows);
                li->cols = (int)family_size(c, t->cols);
                break;
            case SLOT_BIAS: li->b = q; break;
            }
        }
        if (!per_block || blocks) p += v * copies;
    }
    if (shared) m->wcls = m->tok_emb;
    *out = m;
    return SPARQ_OK;
}

model_format model_format_for_path(const char *path) {
    if (path_has_suffix(path, ".safetensors") || path_has_suffix(path, ".safetensors.index.json") ||
        path_is_dir(path) || path_has_suffix(path, "/"))
        return MODEL_FORMAT_SAFETENSORS;
    if (path_has_suffix(path, ".gguf")) return MODEL_FORMAT_GGUF;
    return MODEL_FORMAT_LLAMA2C;
}

int model_format_parse(const char *name, model_format *f, err *e) {
    if (strcmp(name, "llama2c") == 0 || strcmp(name, "llama2.c") == 0) *f = MODEL_FORMAT_LLAMA2C;
    else if (strcmp(name, "safetensors") == 0 || strcmp(name, "hf") == 0) *f = MODEL_FORMAT_SAFETENSORS;
    else if (strcmp(name, "gguf") == 0) *f = MODEL_FORMAT_GGUF;
    else return err_set(e, SPARQ_EINPUT, "--format %s: expected llama2c, safetensors or gguf", name);
    return SPARQ_OK;
}

const char *model_format_name(model_format f) {
    switch (f) {
    case MODEL_FORMAT_LLAMA2C: return "llama2c";
    case MODEL_FORMAT_SAFETENSORS: return "safetensors";
    case MODEL_FORMAT_GGUF: return "gguf";
    case MODEL_FORMAT_AUTO: break;
    }
    return "auto";
}

int model_load(model **out, const char *path, err *e) {
    *out = NULL;
    if (!path_exists(path))
        return err_set(e, SPARQ_EINPUT, "%s: cannot open model: %s", path, strerror(ENOENT));
    if (model_format_for_path(path) == MODEL_FORMAT_SAFETENSORS) return safetensors_load_model(out, path, e);
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t got = fread(magic, 1, 4, f);
        fclose(f);
        if (got == 4 && memcmp(magic, "GGUF", 4) == 0) return gguf_load_model(out, path, e);
    }
    if (path_has_suffix(path, ".gguf")) return gguf_load_model(out, path, e);
    return model_load_llama2c(out, path, e);
}

int model_save(const model *m, const char *path, err *e) {
    model_save_options o = {MODEL_FORMAT_AUTO, DTYPE_F32, NULL, 0, 0, NULL, NULL, false};
    return model_save_opts(m, path, &o, e);
}

model_format model_save_format(const model *m, const char *path, model_format requested) {
    if (requested != MODEL_FORMAT_AUTO) return requested;
    model_format f = model_format_for_path(path);
    /* A family llama2.c cannot hold goes to a Hugging Face folder unless .bin was asked for. */
    if (f == MODEL_FORMAT_LLAMA2C && !m->fam->llama2c && !path_has_suffix(path, ".bin"))
        f = MODEL_FORMAT_SAFETENSORS;
    return f;
}

int model_save_check(const model *m, const char *path, const model_save_options *o, err *e) {
    switch (model_save_format(m, path, o->format)) {
    case MODEL_FORMAT_SAFETENSORS:
        if (o->dtype != DTYPE_F32 && o->dtype != DTYPE_F16 && o->dtype != DTYPE_BF16)
            return err_set(e, SPARQ_EINPUT, "%s: safetensors output is f32, f16 or bf16, not %s", path,
                           dtype_name(o->dtype));
        return SPARQ_OK;
    case MODEL_FORMAT_GGUF:
        if (!m->fam->gguf_arch || strcmp(m->fam->gguf_arch, "llama") != 0)
            return err_set(e, SPARQ_EINPUT, "%s: GGUF output holds llama.cpp's \"llama\" architecture; this "
                           "model is %s (use safetensors)", path, m->fam->name);
        return SPARQ_OK;
    default:
        if (o->dtype != DTYPE_F32)
            return err_set(e, SPARQ_EINPUT, "%s: llama2.c checkpoints are float32 only, not %s (a folder "
                           "or .safetensors path writes Hugging Face safetensors)", path, dtype_name(o->dtype));
        return check_llama2c_writable(m, path, e);
    }
}

int model_save_opts(const model *m, const char *path, const model_save_options *o, err *e) {
    model_format f = model_save_format(m, path, o->format);
    switch (f) {
    case MODEL_FORMAT_SAFETENSORS: return safetensors_save_model(m, path, o->dtype, o->shard_bytes, e);
    case MODEL_FORMAT_GGUF: return gguf_save_model_blocks(m, o->tok, path, o->dtype, o->grids, o->pure, o->info, e);
    default:
        if (o->dtype != DTYPE_F32)
            return model_save_check(m, path, o, e);
        return model_save_llama2c_version(m, path, o->llama2c_version, e);
    }
}

void model_permute_rows(float *dst, const float *src, int n_heads, int hs, int cols,
                        rope_layout from, rope_layout to) {
    size_t rowb = (size_t)cols * sizeof(float), half = (size_t)hs / 2;
    for (size_t h = 0; h < (size_t)n_heads; h++) {
        const float *s = src + h * hs * (size_t)cols;
        float *d = dst + h * hs * (size_t)cols;
        for (size_t j = 0; j < half; j++)
            for (size_t k = 0; k < 2; k++) {
                /* Pair j's two rows: 2j, 2j+1 adjacent; j, j + hs/2 rotate-half. */
                size_t adj = 2 * j + k, hf = k * half + j;
                size_t si = from == ROPE_ADJACENT ? adj : hf, di = to == ROPE_ADJACENT ? adj : hf;
                memcpy(d + di * cols, s + si * cols, rowb);
            }
    }
}

int model_set_rope_layout(model *m, rope_layout to, err *e) {
    if (m->cfg.rope == to) return SPARQ_OK;
    const model_config *c = &m->cfg;
    size_t most = (size_t)c->n_heads * c->head_size * c->dim;
    float *tmp = malloc(most * sizeof(float));
    if (!tmp) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    for (int i = 0; i < m->fam->n_tensor; i++) {
        const family_tensor *t = &m->fam->tensor[i];
        if (t->slot != SLOT_WEIGHT || (t->layout != TL_ROPE_Q && t->layout != TL_ROPE_K)) continue;
        for (int l = 0; l < c->n_layers; l++) {
            linear *li = &m->blocks[l].lin[t->index];
            int heads = t->layout == TL_ROPE_Q ? c->n_heads : c->n_kv_heads;
            model_permute_rows(tmp, li->w, heads, c->head_size, li->cols, c->rope, to);
            memcpy(li->w, tmp, (size_t)li->rows * li->cols * sizeof(float));
        }
    }
    free(tmp);
    m->cfg.rope = to;
    return SPARQ_OK;
}

uint64_t linear_distinct(const linear *l) {
    size_t n = (size_t)l->rows * l->cols;
    if (n == 0) return 0;
    uint32_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!a || !b) { free(a); free(b); return 0; }
    for (size_t i = 0; i < n; i++) {
        float v = l->w[i] == 0.0f ? 0.0f : l->w[i];   /* -0 == 0 */
        memcpy(&a[i], &v, 4);
    }
    /* LSD radix sort of the bit patterns, two 16-bit passes: equal values become neighbours. */
    size_t *cnt = calloc(65536, sizeof *cnt);
    if (!cnt) { free(a); free(b); return 0; }
    for (int pass = 0; pass < 2; pass++) {
        int sh = 16 * pass;
        memset(cnt, 0, 65536 * sizeof *cnt);
        for (size_t i = 0; i < n; i++) cnt[(a[i] >> sh) & 0xffffu]++;
        size_t sum = 0;
        for (size_t k = 0; k < 65536; k++) { size_t c = cnt[k]; cnt[k] = sum; sum += c; }
        for (size_t i = 0; i < n; i++) b[cnt[(a[i] >> sh) & 0xffffu]++] = a[i];
        uint32_t *t = a; a = b; b = t;
    }
    uint64_t d = 1;
    for (size_t i = 1; i < n; i++) d += a[i] != a[i - 1];
    free(cnt); free(a); free(b);
    return d;
}

double linear_sparsity(const linear *l) {
    size_t n = (size_t)l->rows * l->cols, z = 0;
    for (size_t i = 0; i < n; i++) z += l->w[i] == 0.0f;
    return n ? (double)z / n : 0.0;
}
