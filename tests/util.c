#include "../core/family.h"
#include "util.h"
#include "../core/stream.h"

#include "../core/fileio.h"
#include "../core/forward.h"
#include "../core/hessian.h"
#include "../eval/perplexity.h"
#include "../experiments/calib.h"

#include <cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char *data_path(const char *rel) {
    static char ring[8][4096];
    static int k;
    char root[2048];
    err e = {0};
    cr_assert_eq(data_root(root, sizeof root, &e), SPARQ_OK, "%s", e.msg);
    char *b = ring[k++ % 8];
    snprintf(b, sizeof ring[0], "%s/%s", root, rel);
    return b;
}

const char *tmp_path(const char *name) {
    static char dir[256];
    static char ring[8][512];
    static int k;
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/sparq-test-XXXXXX", t && *t ? t : "/tmp");
        cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    }
    char *b = ring[k++ % 8];
    snprintf(b, sizeof ring[0], "%s/%s", dir, name);
    return b;
}

int write_file(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(buf, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
    fclose(f);
    if (b) b[sz] = '\0';
    if (n) *n = (size_t)sz;
    return b;
}

int run_sparq(const char *args, char **out, char **errout) {
    return run_sparq_in(NULL, args, out, errout);
}

int run_sparq_in(const char *dir, const char *args, char **out, char **errout) {
    const char *bin = getenv("SPARQ_BIN");
    if (!bin || !*bin) bin = "./sparq";
    char abs[4096], cwd[2048];
    if (dir && bin[0] != '/') {
        cr_assert_not_null(getcwd(cwd, sizeof cwd));
        snprintf(abs, sizeof abs, "%s/%s", cwd, bin);
        bin = abs;
    }
    const char *o = tmp_path("run.out"), *e = tmp_path("run.err");
    char *cmd = malloc(strlen(args) + (dir ? strlen(dir) : 0) + 8192);
    sprintf(cmd, "%s%s%s%s %s >'%s' 2>'%s'", dir ? "cd '" : "", dir ? dir : "", dir ? "' && " : "", bin,
            args, o, e);
    int st = system(cmd);
    free(cmd);
    if (out) *out = read_all(o, NULL);
    if (errout) *errout = read_all(e, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

model *load_stories(void) {
    model *m = NULL;
    err e = {0};
    int rc = model_load_llama2c(&m, data_path("stories260K/stories260K.bin"), &e);
    cr_assert_eq(rc, 0, "loading stories260K: %s", e.msg);
    return m;
}

tokenizer *load_tok512(void) {
    tokenizer *t = NULL;
    err e = {0};
    int rc = tokenizer_load(&t, data_path("stories260K/tok512.bin"), &e);
    cr_assert_eq(rc, 0, "loading tok512: %s", e.msg);
    return t;
}

const int ref_greedy_ids[257] = {
    1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396,
    267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261,
    370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267,
    414, 270, 333, 415, 426, 13, 438, 310, 439, 419, 357, 336, 432, 313, 438, 310, 432, 278, 316,
    439, 419, 298, 414, 267, 265, 282, 295, 433, 426, 436, 317, 286, 296, 418, 269, 279, 292, 416,
    439, 413, 409, 416, 327, 263, 415, 294, 267, 400, 426, 338, 336, 432, 313, 442, 391, 267, 337,
    335, 364, 420, 268, 388, 432, 398, 359, 280, 303, 439, 413, 272, 417, 264, 312, 426, 436, 13,
    438, 310, 286, 296, 418, 269, 279, 292, 416, 439, 413, 409, 416, 327, 263, 415, 294, 267, 400,
    426, 338, 336, 432, 313, 442, 439, 423, 262, 304, 420, 422, 432, 317, 426, 359, 279, 292, 416,
    439, 413, 409, 416, 327, 263, 415, 294, 267, 400, 426, 436, 13, 438, 310, 279, 292, 416, 439,
    413, 391, 267, 281, 421, 427, 311, 357, 432, 384, 358, 336, 432, 313, 442, 439, 423, 262, 304,
    420, 422, 432, 357, 426, 359, 279, 292, 416, 439, 413, 409, 416, 327, 263, 415, 294, 267, 400,
    426, 436, 320, 285, 357, 336, 432, 313, 455, 289, 439, 413, 263, 304, 420, 422, 432, 317, 426,
    410, 448, 411, 280, 303, 281, 421, 427, 364, 426,
};

const char *ref_story_256 =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. "
    "She said, \"I want to play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to "
    "do.\"\n"
    "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" "
    "Her mom said, \"Don't worry, Lily. We can help you.";

/* Dense Hessians of every block input of stories260K on real calibration data: H[l][input]
 * with input 0 = q/k/v, 1 = o, 2 = gate/up, 3 = down. */
real_h *real_hessians(int nsamples, int seqlen) {
    model *m = load_stories();
    tokenizer *t = load_tok512();
    token_seqs cs;
    err e = {0};
    cr_assert_eq(calib_from_text(t, data_path("text/c4-en-train-first1000.jsonl"), nsamples, seqlen, 0,
                                 &cs, &e), 0, "%s", e.msg);
    real_h *r = calloc(1, sizeof *r);
    int w[4] = {64, 64, 64, 172}, n = nsamples * seqlen;
    memcpy(r->width, w, sizeof w);
    float *X = malloc((size_t)n * 64 * sizeof(float)), *xc = malloc((size_t)n * 64 * sizeof(float));
    float *cap[4];
    for (int k = 0; k < 4; k++) cap[k] = malloc((size_t)n * w[k] * sizeof(float));
    fwd_scratch *s = fwd_scratch_new();
    fwd_batch b = {.n_seq = cs.n, .lens = cs.lens, .n_tok = n};
    cr_assert_eq(forward_embed(m, cs.tokens, &b, X, &e), 0);
    for (int l = 0; l < 5; l++) {
        memcpy(xc, X, (size_t)n * 64 * sizeof(float));
        block_inputs bi = {{cap[0], cap[1], cap[2], cap[3]}};
        cr_assert_eq(forward_block(m, l, xc, &b, &bi, s, &e), 0);
        for (int k = 0; k < 4; k++) {
            hessian h;
            cr_assert_eq(hessian_init(&h, w[k], &e), 0);
            hessian_accumulate(&h, cap[k], n);
            hessian_finish(&h, nsamples);
            r->H[l][k] = h.H;
        }
        cr_assert_eq(forward_block(m, l, X, &b, NULL, s, &e), 0);
    }
    for (int k = 0; k < 4; k++) free(cap[k]);
    free(X); free(xc);
    fwd_scratch_free(s);
    token_seqs_free(&cs);
    tokenizer_free(t);
    model_free(m);
    return r;
}

void real_h_free(real_h *r) {
    for (int l = 0; l < 5; l++) for (int k = 0; k < 4; k++) free(r->H[l][k]);
    free(r);
}


const int linear_input[7] = {0, 0, 0, 1, 2, 2, 3};

/* ---- the families/ fixtures -------------------------------------------------------------- */

cJSON *fixture_ref_json(const char *fixture) {
    char rel[128];
    snprintf(rel, sizeof rel, "families/%s/ref.json", fixture);
    char *s = read_all(data_path(rel), NULL);
    cr_assert(s, "cannot read %s", rel);
    cJSON *j = cJSON_Parse(s);
    free(s);
    cr_assert(j);
    return j;
}

int json_ints(const cJSON *a, int *out, int cap) {
    int n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        cr_assert(n < cap);
        out[n++] = x->valueint;
    }
    return n;
}

float *model_flat(const model *m) {
    float *out = malloc(model_params(m) * sizeof(float) + 1), *p = out;
    cr_assert_not_null(out);
    err e = {0};
    for (int i = 0; i < m->fam->n_tensor; i++) {
        const family_tensor *t = &m->fam->tensor[i];
        if (!model_has_tensor(m, t)) continue;
        size_t v = family_size(&m->cfg, t->rows) * family_size(&m->cfg, t->cols);
        bool per_block = family_tensor_per_block(t);
        for (int l = 0; l < (per_block ? m->cfg.n_layers : 1); l++) {
            if (per_block) cr_assert_eq(model_block_acquire(m, l, &e), 0, "%s", e.msg);
            memcpy(p, model_tensor_ptr(m, t, l), v * sizeof(float));
            p += v;
            if (per_block) model_block_release(m, l);
        }
    }
    cr_assert_eq((size_t)(p - out), (size_t)model_params(m));
    return out;
}

bool model_weights_equal(const model *a, const model *b) {
    size_t n = model_params(a);
    if (n != model_params(b)) return false;
    float *x = model_flat(a), *y = model_flat(b);
    bool eq = memcmp(x, y, n * sizeof(float)) == 0;
    free(x);
    free(y);
    return eq;
}

void model_pin(model *m) {
    err e = {0};
    cr_assert_eq(model_blocks_acquire_all(m, &e), 0, "%s", e.msg);
}

model *fixture_model(const char *fixture) {
    char rel[128];
    snprintf(rel, sizeof rel, "families/%s", fixture);
    model *m = NULL;
    err e = {0};
    cr_assert_eq(model_load(&m, data_path(rel), &e), 0, "%s: %s", fixture, e.msg);
    model_pin(m);
    return m;
}

float *fixture_floats(const char *fixture, const char *file, size_t want) {
    char rel[160];
    snprintf(rel, sizeof rel, "families/%s/%s", fixture, file);
    size_t n = 0;
    char *b = read_all(data_path(rel), &n);
    cr_assert(b && n == want * sizeof(float), "%s: %zu bytes", rel, n);
    return (float *)b;
}

const char *fixture_bad_copy(const char *fixture, const char *name, const char *key, const char *value) {
    const char *dir = tmp_path(name);
    mkdir(dir, 0777);
    char p[4096], rel[160];
    snprintf(rel, sizeof rel, "families/%s/config.json", fixture);
    char *cfg = read_all(data_path(rel), NULL);
    cJSON *j = cJSON_Parse(cfg);
    free(cfg);
    cJSON_DeleteItemFromObject(j, key);
    if (value) cJSON_AddItemToObject(j, key, cJSON_Parse(value));
    char *s = cJSON_Print(j);
    snprintf(p, sizeof p, "%s/config.json", dir);
    cr_assert_eq(write_file(p, s, strlen(s)), 0);
    free(s);
    cJSON_Delete(j);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    snprintf(rel, sizeof rel, "families/%s/model.safetensors", fixture);
    cr_assert_eq(symlink(data_path(rel), p), 0);
    return dir;
}

double ppl_of_ids(const model *m, const char *ids_path) {
    token_seqs s;
    err e = {0};
    cr_assert_eq(ppl_prepare_ids(ids_path, PPL_WINDOWS, 64, 0, m->cfg.vocab_size, &s, &e), 0, "%s", e.msg);
    ppl_result r;
    cr_assert_eq(ppl_score(m, &s, &r, NULL, NULL, &e), 0, "%s", e.msg);
    token_seqs_free(&s);
    return r.ppl;
}
