/* llama2.c export.py version 1 (float32) and version 2 (Q8_0) checkpoints, on stories3M-q80.bin
 * (shared/data/stories3M/README.md): loading, exactness of the dequantised model against llama2.c's
 * float path, round trips through the writers, and malformed version 2 files. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/forward.h"
#include "util.h"

#define Q80 "stories3M/stories3M-q80.bin"

static model *load_q80(void) {
    model *m = NULL;
    err e = {0};
    cr_assert_eq(model_load_llama2c(&m, data_path(Q80), &e), 0, "%s", e.msg);
    return m;
}

Test(llama2c, version2_header_and_first_weights_dequantise_exactly) {
    model *m = load_q80();
    const model_config *c = &m->cfg;
    cr_assert_eq(c->dim, 192);
    cr_assert_eq(c->hidden_dim, 512);
    cr_assert_eq(c->n_layers, 6);
    cr_assert_eq(c->n_heads, 6);
    cr_assert_eq(c->n_kv_heads, 2);
    cr_assert_eq(c->vocab_size, 4096);
    cr_assert_eq(c->seq_len, 512);
    cr_assert(m->shared_cls);
    cr_assert_eq(m->llama2c_version, 2);
    cr_assert_eq(m->group_size, 64);
    /* Read the token embedding's first group straight from the file: int8 values after the
     * 256-byte header and 13 float32 norms of 192, scales after all V*dim int8 values. */
    size_t n;
    unsigned char *b = (unsigned char *)read_all(data_path(Q80), &n);
    cr_assert_not_null(b);
    size_t q0 = 256 + 4 * 13 * 192, s0 = q0 + (size_t)4096 * 192;
    float s[2];
    memcpy(s, b + s0, sizeof s);
    for (int i = 0; i < 128; i++) {
        float want = (float)(int8_t)b[q0 + i] * s[i / 64];
        cr_assert(m->tok_emb[i] == want, "tok_emb[%d] = %g, want %g", i, m->tok_emb[i], want);
    }
    float norm0;
    memcpy(&norm0, b + 256, 4);
    cr_assert(m->blocks[0].attn_norm[0] == norm0);
    free(b);
    model_free(m);
}

static void assert_same_weights(const model *a, const model *b, const char *what) {
    cr_assert(memcmp(&a->cfg, &b->cfg, sizeof a->cfg) == 0, "%s: configurations differ", what);
    cr_assert_eq(a->shared_cls, b->shared_cls, "%s", what);
    /* model_alloc and the legacy loader lay the weights out differently (the latter keeps the
     * legacy RoPE tables in its allocation), so compare tensor by tensor. */
    size_t d = (size_t)a->cfg.dim;
    cr_assert(memcmp(a->tok_emb, b->tok_emb, (size_t)a->cfg.vocab_size * d * 4) == 0, "%s: embedding", what);
    cr_assert(memcmp(a->final_norm, b->final_norm, d * 4) == 0, "%s: final norm", what);
    for (int l = 0; l < a->cfg.n_layers; l++) {
        cr_assert(memcmp(a->blocks[l].attn_norm, b->blocks[l].attn_norm, d * 4) == 0, "%s", what);
        cr_assert(memcmp(a->blocks[l].ffn_norm, b->blocks[l].ffn_norm, d * 4) == 0, "%s", what);
        for (int k = 0; k < LIN_COUNT; k++) {
            const linear *x = &a->blocks[l].lin[k], *y = &b->blocks[l].lin[k];
            cr_assert_eq(x->rows, y->rows);
            cr_assert_eq(x->cols, y->cols);
            cr_assert(memcmp(x->w, y->w, (size_t)x->rows * x->cols * 4) == 0, "%s: layer %d %s differs",
                      what, l, linear_names[k]);
        }
    }
}

Test(llama2c, version2_to_version1_and_legacy_keeps_every_weight_and_back_to_version2_is_the_same_file) {
    model *m = load_q80(), *v1 = NULL, *v0 = NULL, *v2 = NULL;
    err e = {0};
    const char *p1 = tmp_path("s3m-v1.bin"), *p0 = tmp_path("s3m-v0.bin"), *p2 = tmp_path("s3m-v2.bin");
    cr_assert_eq(model_save_llama2c_version(m, p1, 1, &e), 0, "%s", e.msg);
    cr_assert_eq(model_save_llama2c_version(m, p0, 0, &e), 0, "%s", e.msg);
    cr_assert_eq(model_load_llama2c(&v1, p1, &e), 0, "%s", e.msg);
    cr_assert_eq(model_load_llama2c(&v0, p0, &e), 0, "%s", e.msg);
    cr_assert_eq(v1->llama2c_version, 1);
    cr_assert_eq(v0->llama2c_version, 0);
    assert_same_weights(m, v1, "v2 -> v1");
    assert_same_weights(m, v0, "v2 -> legacy");
    /* Requantizing int8 x scale gives back the int8 values and scales: export.py's scale is
     * max|w| / 127 and each group's largest weight is 127 x its scale. */
    cr_assert_eq(model_save_llama2c_version(v1, p2, 2, &e), 0, "%s", e.msg);
    size_t na, nb;
    char *a = read_all(data_path(Q80), &na), *b = read_all(p2, &nb);
    cr_assert(a && b && na == nb && memcmp(a, b, na) == 0, "v1 -> v2 is not the original file");
    cr_assert_eq(model_load_llama2c(&v2, p2, &e), 0, "%s", e.msg);
    assert_same_weights(m, v2, "v1 -> v2");
    free(a);
    free(b);
    model_free(v2);
    model_free(v1);
    model_free(v0);
    model_free(m);
}

Test(llama2c, convert_writes_version1_on_request_and_legacy_by_default) {
    const char *p1 = tmp_path("cli-v1.bin"), *p0 = tmp_path("cli-v0.bin");
    char *out = NULL, *errs = NULL;
    char args[4096];
    snprintf(args, sizeof args, "convert --model '%s' --out '%s' --llama2c-version 1", data_path(Q80), p1);
    cr_assert_eq(run_sparq(args, &out, &errs), 0, "%s", errs);
    free(out); free(errs);
    snprintf(args, sizeof args, "convert --model '%s' --out '%s'", data_path(Q80), p0);
    cr_assert_eq(run_sparq(args, &out, &errs), 0, "%s", errs);
    free(out); free(errs);
    snprintf(args, sizeof args, "inspect --model '%s' --json", p1);
    cr_assert_eq(run_sparq(args, &out, &errs), 0, "%s", errs);
    cr_assert(strstr(out, "\"llama2c_version\":1"), "%s", out);
    free(out); free(errs);
    snprintf(args, sizeof args, "inspect --model '%s' --json", p0);
    cr_assert_eq(run_sparq(args, &out, &errs), 0, "%s", errs);
    cr_assert(strstr(out, "\"llama2c_version\":0"), "%s", out);
    free(out); free(errs);
    snprintf(args, sizeof args, "inspect --model '%s'", data_path(Q80));
    cr_assert_eq(run_sparq(args, &out, &errs), 0, "%s", errs);
    cr_assert(strstr(out, "llama2.c version 2 (Q8_0, group size 64)"), "%s", out);
    free(out); free(errs);
}
