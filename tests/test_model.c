/* Model loading: stories260K's shape, the unshared-classifier layout, and bad files. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/forward.h"
#include "../core/model.h"
#include "../core/family.h"
#include "util.h"

Test(model, loads_stories260k_with_its_header_shapes) {
    model *m = load_stories();
    const model_config *c = &m->cfg;
    cr_assert_eq(c->dim, 64);
    cr_assert_eq(c->hidden_dim, 172);
    cr_assert_eq(c->n_layers, 5);
    cr_assert_eq(c->n_heads, 8);
    cr_assert_eq(c->n_kv_heads, 4);
    cr_assert_eq(c->head_size, 8);
    cr_assert_eq(c->vocab_size, 512);
    cr_assert_eq(c->seq_len, 512);
    cr_assert(m->shared_cls);
    cr_assert_eq(m->wcls, m->tok_emb);
    /* data/README.md: 260032 weights besides the legacy RoPE tables. */
    cr_assert_eq(model_params(m), 260032);
    cr_assert_eq(m->blocks[0].lin[LLAMA_K].rows, 32);
    cr_assert_eq(m->blocks[0].lin[LLAMA_DOWN].rows, 64);
    cr_assert_eq(m->blocks[0].lin[LLAMA_DOWN].cols, 172);
    cr_assert_eq(m->blocks[4].lin[LLAMA_GATE].rows, 172);
    model_free(m);
}

/* The same model written with a negative vocab_size and a separate classifier (a copy of the
 * embedding) must load as unshared and give the same logits. */
Test(model, unshared_classifier_layout_loads_and_matches) {
    size_t n;
    char *b = read_all(data_path("stories260K/stories260K.bin"), &n);
    cr_assert_not_null(b);
    size_t emb = 512 * 64 * sizeof(float);
    char *u = malloc(n + emb);
    memcpy(u, b, n);
    memcpy(u + n, b + 28, emb);
    int neg = -512;
    memcpy(u + 20, &neg, 4);
    const char *p = tmp_path("unshared.bin");
    cr_assert_eq(write_file(p, u, n + emb), 0);
    model *a = load_stories(), *m = NULL;
    err e = {0};
    cr_assert_eq(model_load_llama2c(&m, p, &e), 0, "%s", e.msg);
    cr_assert_not(m->shared_cls);
    cr_assert_neq(m->wcls, m->tok_emb);
    cr_assert_eq(model_params(m), 260032 + 512 * 64);
    float la[512], lb[512];
    fwd_cache *ca, *cb;
    cr_assert_eq(fwd_cache_new(&ca, a, &e), 0);
    cr_assert_eq(fwd_cache_new(&cb, m, &e), 0);
    for (int pos = 0; pos < 3; pos++) {
        int tok = ref_greedy_ids[pos];
        cr_assert_eq(forward_token(a, ca, tok, pos, la, &e), 0);
        cr_assert_eq(forward_token(m, cb, tok, pos, lb, &e), 0);
        cr_assert(memcmp(la, lb, sizeof la) == 0, "logits differ at position %d", pos);
    }
    fwd_cache_free(ca);
    fwd_cache_free(cb);
    model_free(a);
    model_free(m);
    free(u);
    free(b);
}

static void expect_load_error(const char *path, const char *needle) {
    model *m = NULL;
    err e = {0};
    cr_assert_eq(model_load_llama2c(&m, path, &e), SPARQ_EINPUT, "expected an input error for %s", path);
    cr_assert_null(m);
    cr_assert(strstr(e.msg, needle), "message \"%s\" lacks \"%s\"", e.msg, needle);
}

Test(model, bad_files_are_clear_errors) {
    size_t n;
    char *b = read_all(data_path("stories260K/stories260K.bin"), &n);
    cr_assert_not_null(b);
    const char *p = tmp_path("bad.bin");

    cr_assert_eq(write_file(p, b, n - 100), 0);               /* truncated */
    expect_load_error(p, "file is 1056440 bytes");
    expect_load_error(p, "needs 1056540");

    cr_assert_eq(write_file(p, b, 10), 0);                    /* shorter than the header */
    expect_load_error(p, "too short");

    memcpy(b, "24ka", 4);                  /* magic "ak42" and version = hidden_dim: unknown version */
    cr_assert_eq(write_file(p, b, n), 0);
    expect_load_error(p, "ak42");

    int dim = 64, heads = 7;                                  /* dim not divisible by heads */
    memcpy(b, &dim, 4);
    memcpy(b + 12, &heads, 4);
    cr_assert_eq(write_file(p, b, n), 0);
    expect_load_error(p, "multiple of n_heads");

    int huge = 1 << 24, eight = 8;                            /* sizes that would overflow */
    memcpy(b + 12, &eight, 4);
    for (int i = 0; i < 7; i++) if (i != 3 && i != 4) memcpy(b + 4 * i, &huge, 4);
    cr_assert_eq(write_file(p, b, n), 0);
    model *m = NULL;
    err e = {0};
    cr_assert_eq(model_load_llama2c(&m, p, &e), SPARQ_EINPUT);

    free(b);
    b = read_all(data_path("stories260K/stories260K.bin"), &n);
    float nan = NAN;                                          /* a NaN weight */
    memcpy(b + 28 + 4 * 1000, &nan, 4);
    cr_assert_eq(write_file(p, b, n), 0);
    expect_load_error(p, "not finite");

    expect_load_error(tmp_path("missing.bin"), "cannot open");
    free(b);
}
