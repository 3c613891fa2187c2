/* Seed generator for the fuzz corpora (not a harness; built with the ordinary library):
 *   mkseeds tiny OUTDIR [TOKENIZER]   tiny random models in OUTDIR/llama2c, OUTDIR/safetensors
 *                                     (packed) and OUTDIR/gguf, each in several weight types
 *   mkseeds pack CONFIG.JSON FILE.safetensors OUT   one fuzz_safetensors input
 * Packed safetensors inputs are [u32 LE length of config.json][config.json][model.safetensors]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../core/gguf.h"
#include "../../core/model.h"
#include "../../core/safetensors.h"
#include "../../core/tokenizer.h"

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(size > 0 ? (size_t)size : 1);
    if (buf && size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *n = size > 0 ? (size_t)size : 0;
    return buf;
}

static int pack(const char *cfg, const char *st, const char *out) {
    size_t nc, ns;
    char *c = slurp(cfg, &nc), *s = slurp(st, &ns);
    FILE *f = fopen(out, "wb");
    int ok = c && s && f;
    if (ok) {
        unsigned char len[4] = {nc & 255, nc >> 8 & 255, nc >> 16 & 255, nc >> 24 & 255};
        ok = fwrite(len, 1, 4, f) == 4 && fwrite(c, 1, nc, f) == nc && fwrite(s, 1, ns, f) == ns;
    }
    if (f && fclose(f) != 0) ok = 0;
    free(c);
    free(s);
    if (!ok) fprintf(stderr, "mkseeds: cannot pack %s + %s into %s\n", cfg, st, out);
    return ok ? 0 : 1;
}

static model *tiny(int vocab, int kv_heads, int shared, err *e) {
    model_config c = {.dim = 8, .hidden_dim = 16, .n_layers = 2, .n_heads = 2, .n_kv_heads = kv_heads,
                      .vocab_size = vocab, .seq_len = 8, .head_size = 4, .rope_theta = 10000.0f,
                      .norm_eps = 1e-5f, .rope = ROPE_ADJACENT};
    model *m;
    if (model_alloc(&m, &c, shared, e)) return NULL;
    unsigned x = 12345;
    for (size_t i = 0; i < m->data_floats; i++) {
        x = x * 1103515245u + 12345u;
        m->data[i] = (float)((int)(x >> 16 & 0xff) - 128) / 256.0f;
    }
    if (model_init_rope(m, e)) {
        model_free(m);
        return NULL;
    }
    return m;
}

static int fail(const err *e) {
    fprintf(stderr, "mkseeds: %s\n", e->msg);
    return 1;
}

static int make_tiny(const char *out, const char *tokpath) {
    char p[2048], q[4096], r[4096];
    err e = {0};
    const char *sub[] = {"llama2c", "safetensors", "gguf", "tmp"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", out, sub[i]);
        mkdir(p, 0755);
    }
    model *m = tiny(32, 1, 1, &e), *u = m ? tiny(32, 2, 0, &e) : NULL;
    if (!u) return fail(&e);
    int rc = 0;
    snprintf(p, sizeof p, "%s/llama2c/tiny-shared.bin", out);
    rc = rc || model_save_llama2c(m, p, &e);
    snprintf(p, sizeof p, "%s/llama2c/tiny-unshared.bin", out);
    rc = rc || model_save_llama2c(u, p, &e);
    const dtype dts[3] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    const char *dn[3] = {"f32", "f16", "bf16"};
    for (int i = 0; !rc && i < 3; i++) {
        for (int k = 0; !rc && k < 2; k++) {
            snprintf(p, sizeof p, "%s/tmp/st-%s-%d", out, dn[i], k);
            rc = safetensors_save_model(k ? u : m, p, dts[i], 0, &e);
            snprintf(q, sizeof q, "%s/config.json", p);
            snprintf(r, sizeof r, "%s/model.safetensors", p);
            char o[4200];
            snprintf(o, sizeof o, "%s/safetensors/tiny-%s-%s", out, dn[i], k ? "unshared" : "shared");
            if (!rc && pack(q, r, o)) return 1;
            snprintf(p, sizeof p, "%s/gguf/tiny-%s-%s.gguf", out, dn[i], k ? "unshared" : "shared");
            if (!rc) rc = gguf_save_model(k ? u : m, NULL, p, dts[i], &e);
        }
    }
    model_free(m);
    model_free(u);
    if (rc) return fail(&e);
    /* With an embedded vocabulary: the model's vocabulary size must match the tokenizer's. */
    tokenizer *t = NULL;
    if (tokpath && tokenizer_load(&t, tokpath, &e) == SPARQ_OK) {
        m = tiny(tokenizer_vocab_size(t), 1, 1, &e);
        snprintf(p, sizeof p, "%s/gguf/tiny-vocab-f16.gguf", out);
        rc = !m || gguf_save_model(m, t, p, DTYPE_F16, &e);
        model_free(m);
        tokenizer_free(t);
        if (rc) return fail(&e);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "tiny") == 0) return make_tiny(argv[2], argc > 3 ? argv[3] : NULL);
    if (argc == 5 && strcmp(argv[1], "pack") == 0) return pack(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: mkseeds tiny OUTDIR [TOKENIZER] | mkseeds pack CONFIG ST OUT\n");
    return 2;
}
