#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const linear_names[LIN_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};

/* Newer llama2.c exports (export.py version 1/2) start with this magic instead of a header. */
#define LLAMA2C_MAGIC 0x616b3432u

void model_free(model *m) {
    if (!m) return;
    free(m->data);
    free(m->blocks);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m);
}

int model_init_rope(model *m, err *e) {
    const model_config *c = &m->cfg;
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
    if ((uint32_t)h[0] == LLAMA2C_MAGIC)
        return err_set(e, SPARQ_EINPUT, "%s: llama2.c export version 1/2 (magic \"ak42\") is not "
                       "supported; use a legacy (version 0) checkpoint", path);
    for (int i = 0; i < 7; i++) {
        int32_t v = i == 5 ? (h[i] < 0 ? -h[i] : h[i]) : h[i];
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

    model *m = calloc(1, sizeof *m);
    if (!m) { fclose(f); return err_set(e, SPARQ_ERUNTIME, "out of memory"); }
    m->cfg = c;
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
    m->final_norm = p; p += d;
    p += (size_t)c.seq_len * c.head_size;         /* legacy RoPE tables, recomputed instead */
    m->wcls = shared ? m->tok_emb : p;

    size_t hd = (size_t)c.hidden_dim * d;
    for (int l = 0; l < c.n_layers; l++) {
        block *b = &m->blocks[l];
        b->attn_norm = rms_att + l * d;
        b->ffn_norm = rms_ffn + l * d;
        b->lin[LIN_Q] = (linear){wq + l * d * d, c.dim, c.dim};
        b->lin[LIN_K] = (linear){wk + l * kv * d, (int)kv, c.dim};
        b->lin[LIN_V] = (linear){wv + l * kv * d, (int)kv, c.dim};
        b->lin[LIN_O] = (linear){wo + l * d * d, c.dim, c.dim};
        b->lin[LIN_GATE] = (linear){w1 + l * hd, c.hidden_dim, c.dim};
        b->lin[LIN_DOWN] = (linear){w2 + l * hd, c.dim, c.hidden_dim};
        b->lin[LIN_UP] = (linear){w3 + l * hd, c.hidden_dim, c.dim};
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(m->data[i])) {
            double v = m->data[i];
            model_free(m);
            return err_set(e, SPARQ_EINPUT, "%s: weight %zu is not finite (%g)", path, i, v);
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
        for (int k = 0; k < LIN_COUNT; k++)
            n += (uint64_t)m->blocks[l].lin[k].rows * m->blocks[l].lin[k].cols;
    return n;
}

uint64_t model_params(const model *m) {
    const model_config *c = &m->cfg;
    uint64_t n = model_linear_params(m);
    n += (uint64_t)c->vocab_size * c->dim;                    /* embedding          */
    n += (uint64_t)c->n_layers * 2 * c->dim + c->dim;         /* norms              */
    if (!m->shared_cls) n += (uint64_t)c->vocab_size * c->dim;
    return n;
}

int model_save_llama2c(const model *m, const char *path, err *e) {
    const model_config *c = &m->cfg;
    int32_t h[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                    m->shared_cls ? c->vocab_size : -c->vocab_size, c->seq_len};
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int rc = err_set(e, SPARQ_EINPUT, "%s: cannot write: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    /* The data block is the file's payload as loaded (weights in place, legacy RoPE tables
     * untouched), so writing it back gives exactly the llama2.c layout. */
    bool ok = fwrite(h, sizeof h, 1, f) == 1 &&
              fwrite(m->data, sizeof(float), m->data_floats, f) == m->data_floats;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int rc = err_set(e, SPARQ_ERUNTIME, "%s: write failed: %s", path, strerror(errno));
        remove(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    return SPARQ_OK;
}
