/* The compression engine: calibration sampling, the sequential driver, sparq compress end to
 * end (--out reloads with its zeros and the same perplexity), and requests refused up front. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/blas.h"
#include "../core/text.h"
#include "../experiments/calib.h"
#include "../experiments/compress.h"
#include "../core/family.h"
#include "util.h"

#define MODEL data_path("stories260K/stories260K.bin")
#define C4 data_path("text/c4-en-train-first1000.jsonl")

/* Is needle[0..n) a contiguous run inside hay[0..m)? */
static bool contains(const int *hay, int m, const int *needle, int n) {
    for (int i = 0; i + n <= m; i++)
        if (memcmp(hay + i, needle, n * sizeof(int)) == 0) return true;
    return false;
}

Test(compress, calibration_windows_are_seeded_and_come_from_long_documents) {
    tokenizer *t = load_tok512();
    token_seqs a, b, c;
    err e = {0};
    cr_assert_eq(calib_from_text(t, C4, 8, 100, 0, &a, &e), 0, "%s", e.msg);
    cr_assert_eq(calib_from_text(t, C4, 8, 100, 0, &b, &e), 0);
    cr_assert_eq(calib_from_text(t, C4, 8, 100, 1, &c, &e), 0);
    cr_assert_eq(a.n, 8);
    cr_assert(memcmp(a.tokens, b.tokens, 800 * sizeof(int)) == 0, "same seed, same windows");
    cr_assert(memcmp(a.tokens, c.tokens, 800 * sizeof(int)) != 0, "another seed, other windows");
    /* Every window is a run of 100 tokens of some document tokenized with BOS. */
    text_list docs;
    cr_assert_eq(text_read_documents(C4, &docs, &e), 0);
    int **ids = malloc(docs.n * sizeof(int *)), *lens = malloc(docs.n * sizeof(int));
    for (int d = 0; d < docs.n; d++)
        cr_assert_eq(tokenizer_encode(t, docs.items[d], true, false, &ids[d], &lens[d], &e), 0);
    for (int s = 0; s < a.n; s++) {
        cr_assert_eq(a.lens[s], 100);
        bool found = false;
        for (int d = 0; d < docs.n && !found; d++)
            found = lens[d] > 100 && contains(ids[d], lens[d], a.tokens + a.offs[s], 100);
        cr_assert(found, "window %d is not inside a document longer than 100 tokens", s);
    }
    for (int d = 0; d < docs.n; d++) free(ids[d]);
    free(ids);
    free(lens);
    text_list_free(&docs);
    /* No document long enough: a clear error, not an endless loop. */
    token_seqs_free(&c);
    const char *shortdocs = tmp_path("short.txt"), *txt = "One story.<|endoftext|>Another one.";
    cr_assert_eq(write_file(shortdocs, txt, strlen(txt)), 0);
    cr_assert_eq(calib_from_text(t, shortdocs, 4, 64, 0, &c, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, "more than 64 tokens"), "%s", e.msg);
    token_seqs_free(&a); token_seqs_free(&b);
    tokenizer_free(t);
}

Test(compress, self_calibration_is_seeded_and_thread_independent) {
    model *m = load_stories();
    token_seqs a, b;
    err e = {0};
    blas_set_threads(1);
    cr_assert_eq(calib_from_model(m, 6, 64, 7, &a, &e), 0, "%s", e.msg);
    blas_set_threads(2);
    cr_assert_eq(calib_from_model(m, 6, 64, 7, &b, &e), 0);
    cr_assert(memcmp(a.tokens, b.tokens, 6 * 64 * sizeof(int)) == 0);
    for (int s = 0; s < 6; s++) cr_assert_eq(a.tokens[s * 64], TOKEN_BOS);
    cr_assert(memcmp(a.tokens, a.tokens + 64, 64 * sizeof(int)) != 0, "sequences differ");
    token_seqs_free(&a); token_seqs_free(&b);
    model_free(m);
}

/* The driver compresses all 35 linear layers to the target and leaves embeddings, norms and
 * the classifier alone; true-sequential gives a valid, different result. */
Test(compress, driver_compresses_every_linear_layer_and_nothing_else) {
    model *m = load_stories(), *ref = load_stories(), *m2 = load_stories();
    tokenizer *t = load_tok512();
    token_seqs cs;
    err e = {0};
    cr_assert_eq(calib_from_text(t, C4, 16, 64, 0, &cs, &e), 0);
    compress_options o = {.target = target_default()};
    cr_assert_eq(solver_spec_parse("sparsegpt", false, &o.solver, &e), 0);
    o.target.sparsity = 0.5f;
    compress_report r;
    cr_assert_eq(compress_model(m, &cs, &o, &r, NULL, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(r.n, 35);
    cr_assert(fabs(r.sparsity - 0.5) < 0.01, "sparsity %f", r.sparsity);
    for (int l = 0; l < 5; l++)
        for (int k = 0; k < model_n_linear(m); k++) {
            const linear *a = &m->blocks[l].lin[k];
            size_t z = 0, n = (size_t)a->rows * a->cols;
            for (size_t i = 0; i < n; i++) z += a->w[i] == 0.0f;
            cr_assert(z >= n / 2 - 1, "layer %d.%s has %zu zeros of %zu", l, model_linear_name(m, k), z, n);
            cr_assert_eq(r.layers[l * 7 + k].rows, a->rows);
        }
    cr_assert(memcmp(m->tok_emb, ref->tok_emb, 512 * 64 * sizeof(float)) == 0);
    cr_assert(memcmp(m->g[LLAMA_FINAL_NORM], ref->g[LLAMA_FINAL_NORM], 64 * sizeof(float)) == 0);
    for (int l = 0; l < 5; l++) {
        cr_assert(memcmp(m->blocks[l].p[LLAMA_ATTN_NORM], ref->blocks[l].p[LLAMA_ATTN_NORM], 64 * sizeof(float)) == 0);
        cr_assert(memcmp(m->blocks[l].p[LLAMA_FFN_NORM], ref->blocks[l].p[LLAMA_FFN_NORM], 64 * sizeof(float)) == 0);
    }
    cr_assert_str_eq(r.layers[3 * 7 + LLAMA_DOWN].name, "3.down");

    o.true_sequential = true;
    compress_report r2;
    cr_assert_eq(compress_model(m2, &cs, &o, &r2, NULL, NULL, &e), 0, "%s", e.msg);
    cr_assert(fabs(r2.sparsity - 0.5) < 0.01);
    /* Block 0's q/k/v see the same inputs either way; later layers see compressed inputs. */
    cr_assert(memcmp(m->blocks[0].lin[LLAMA_Q].w, m2->blocks[0].lin[LLAMA_Q].w, 64 * 64 * sizeof(float)) == 0);
    cr_assert(memcmp(m->blocks[0].lin[LLAMA_DOWN].w, m2->blocks[0].lin[LLAMA_DOWN].w, 64 * 172 * sizeof(float)) != 0);
    compress_report_free(&r);
    compress_report_free(&r2);
    token_seqs_free(&cs);
    tokenizer_free(t);
    model_free(m); model_free(m2); model_free(ref);
}

static double json_num(const char *out, const char *key) {
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "not JSON: %s", out);
    cJSON *v = cJSON_GetObjectItem(j, key);
    cr_assert(cJSON_IsNumber(v), "no %s in %s", key, out);
    double x = v->valuedouble;
    cJSON_Delete(j);
    return x;
}

Test(compress, written_model_reloads_keeps_zeros_and_perplexity, .timeout = 120) {
    char args[4096], *out, *er;
    const char *dst = tmp_path("pruned.bin");
    const char *text = data_path("text/TinyStories-valid-first1000.txt");
    snprintf(args, sizeof args, "compress --model '%s' --solver sparsegpt --nm 2:4 --calib '%s' "
             "--nsamples 16 --calib-seqlen 64 --out '%s' --eval '%s' --protocol documents --seqlen 128 "
             "--limit 20 --json", MODEL, C4, dst, text);
    int st = run_sparq(args, &out, &er);
    cr_assert_eq(st, 0, "stderr: %s", er);
    /* compress --json prints the run record: perplexities under ppl.<text file>. */
    cJSON *rec = cJSON_Parse(out);
    cr_assert_not_null(rec, "not JSON: %s", out);
    const cJSON *pj = cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "ppl"), "TinyStories-valid-first1000.txt");
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(pj, "ppl")), "no ppl in %s", out);
    double ppl = cJSON_GetObjectItem(pj, "ppl")->valuedouble, sp = json_num(out, "sparsity");
    cJSON_Delete(rec);
    cr_assert_eq(sp, 0.5);
    free(out); free(er);
    snprintf(args, sizeof args, "eval --model '%s' --tokenizer '%s' --text '%s' --protocol documents "
             "--seqlen 128 --limit 20 --json", dst, data_path("stories260K/tok512.bin"), text);
    st = run_sparq(args, &out, &er);
    cr_assert_eq(st, 0, "stderr: %s", er);
    cr_assert_eq(json_num(out, "ppl"), ppl, "reloaded model gives another perplexity");
    free(out); free(er);
    model *m = NULL;
    err e = {0};
    cr_assert_eq(model_load_llama2c(&m, dst, &e), 0, "%s", e.msg);
    for (int l = 0; l < 5; l++)
        for (int k = 0; k < model_n_linear(m); k++) {
            const linear *a = &m->blocks[l].lin[k];
            for (int i = 0; i < a->rows * a->cols; i += 4) {
                int z = 0;
                for (int j = 0; j < 4; j++) z += a->w[i + j] == 0.0f;
                cr_assert_eq(z, 2, "layer %d.%s group %d has %d zeros", l, model_linear_name(m, k), i / 4, z);
            }
        }
    model_free(m);
}

static void expect_refused(const char *extra, const char *needle) {
    char args[4096], *out, *er;
    snprintf(args, sizeof args, "compress --model '%s' --calib '%s' %s", MODEL, C4, extra);
    int st = run_sparq(args, &out, &er);
    cr_assert_eq(st, 2, "status %d for %s: %s", st, extra, er);
    cr_assert(strstr(er, needle), "stderr \"%s\" lacks \"%s\"", er, needle);
    cr_assert_eq(strchr(er, '\n'), er + strlen(er) - 1, "one line: %s", er);
    free(out); free(er);
}

Test(compress, impossible_requests_fail_before_any_work) {
    expect_refused("--solver sparsegpt --sparsity 1.0", "--sparsity 1.0: expected a number in [0, 1)");
    expect_refused("--solver sparsegpt --sparsity -0.1", "expected a number in [0, 1)");
    expect_refused("--solver sparsegpt --nm 2:4 --sparsity 0.7", "contradicts");
    expect_refused("--solver sparsegpt --nm 4:4", "N < M");
    expect_refused("--solver wanda --nm 2:8", "does not divide a layer of 172");
    expect_refused("--solver obc --sparsity 0.5", "unknown solver 'obc'");
    expect_refused("--solver wanda --sparsity 0.5 --bits 4", "does not quantize");
    expect_refused("--solver sparsegpt --sparsity 0.5 --bits 9", "bits 9");
    expect_refused("--solver sparsegpt --sparsity 0.5 --calib-seqlen 1000", "larger than the model's context");
    expect_refused("--solver magnitude --sparsity 0.5 --scope column", "expected layer or row");
}

/* Issue 20, part 2, end to end: `compress --json` counts a symmetric grid with its fp16 scale only
 * (its zero is the fixed midpoint). RTN at g32: 8 + 16/32 = 8.5, 5.5, 4.5 (asymmetric: 9, 6, 5).
 * SparseGPT 50% + 4-bit sym per row on stories260K: bitmask 1 + kept values (1 - s) 4 + one fp16
 * scale per row: per block 34304 weights in rows of 64 (q k v o gate up) and 11008 in rows of
 * 172 (down), so 5 x (34304/64 + 11008/172) x 16 = 48000 bits over 226560 weights. */
Test(compress, symmetric_grids_are_counted_without_a_zero_point, .timeout = 120) {
    static const struct { const char *flags; double bpw; } runs[] = {
        {"--solver rtn --bits 8 --group 32 --sym", 8.5},
        {"--solver rtn --bits 5 --group 32 --sym", 5.5},
        {"--solver rtn --bits 4 --group 32 --sym", 4.5},
        {"--solver rtn --bits 4 --group 32", 5.0},
        {"--solver sparsegpt --sparsity 0.5 --bits 4 --sym", -1},   /* by the formula above */
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char args[4096], *out, *er;
        snprintf(args, sizeof args, "compress --model '%s' --tokenizer '%s' --calib '%s' --nsamples 4 "
                 "--calib-seqlen 32 %s --json", MODEL, data_path("stories260K/tok512.bin"), C4, runs[i].flags);
        cr_assert_eq(run_sparq(args, &out, &er), 0, "%s: %s", runs[i].flags, er);
        double bpw = json_num(out, "bits_per_weight"), want = runs[i].bpw;
        if (want < 0) want = 1.0 + (1.0 - json_num(out, "sparsity")) * 4 + 48000.0 / 226560;
        cr_assert(fabs(bpw - want) < 1e-9, "%s: bits_per_weight %.12g, hand count %.12g", runs[i].flags, bpw, want);
        free(out); free(er);
    }
}
