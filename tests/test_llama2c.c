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
