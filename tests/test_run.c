#define _XOPEN_SOURCE 700   /* realpath */
/* The one run path: `compress --json` and a sweep's record of the same run agree field by field,
 * and sweeps find a model's own tokenizer (a GGUF's vocabulary, a Hugging Face folder's
 * tokenizer.model) with no `tokenizer =`, scoring what the llama2.c original scores. */
#include <cJSON.h>
#include <limits.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../experiments/results.h"
#include "util.h"

/* Data paths made absolute, so the config and the command line name the same files. */
static const char *abs_data(const char *rel) {
    static char buf[16][4096];   /* a ring: callers hold a few at once */
    static int k;
    char *b = buf[k++ % 16];
    cr_assert_not_null(realpath(data_path(rel), b), "%s", data_path(rel));
    return b;
}

#define TEXT "text/TinyStories-valid-first1000.txt"
#define C4 "text/c4-en-train-first1000.jsonl"

/* A sweep of one model (absolute path, no tokenizer unless given) and one grid; its records. */
static cJSON **sweep_records(const char *name, const char *model, const char *tok, const char *grid, int *n) {
    char text[8192], args[4096], out_dir[1024];
    snprintf(out_dir, sizeof out_dir, "%s", tmp_path(name));
    snprintf(text, sizeof text,
             "[sweep]\nmodel = %s\n%s%s%scalib = %s\nnsamples = 4\nseqlen = 64\n"
             "eval.ppl = %s:documents:128\neval.limit = 6\nout = %s\n\n%s",
             model, tok ? "tokenizer = " : "", tok ? tok : "", tok ? "\n" : "", abs_data(C4),
             abs_data(TEXT), out_dir, grid);
    char cfg[1100];
    snprintf(cfg, sizeof cfg, "%s.ini", out_dir);
    cr_assert_eq(write_file(cfg, text, strlen(text)), 0);
    char *o, *er;
    snprintf(args, sizeof args, "sweep '%s'", cfg);
    int st = run_sparq(args, &o, &er);
    cr_assert_eq(st, 0, "sweep over %s: %s", model, er);
    free(o);
    free(er);
    cJSON **recs;
    err e = {0};
    cr_assert_eq(results_load(out_dir, &recs, n, &e), 0, "%s", e.msg);
    return recs;
}

static double dense_ppl(cJSON **recs, int n) {
    for (int i = 0; i < n; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItem(recs[i], "dense")))
            return cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(recs[i], "ppl"),
                                                           "TinyStories-valid-first1000.txt"), "ppl")->valuedouble;
    cr_assert_fail("no dense record");
    return NAN;
}

Test(run, sweeps_find_a_gguf_vocabulary_and_a_hf_folder_tokenizer, .timeout = 120) {
    const char *model = abs_data("stories260K/stories260K.bin");
    char args[4096], *o, *er, gguf[1024], hf[1024];
    snprintf(gguf, sizeof gguf, "%s", tmp_path("s.gguf"));
    snprintf(hf, sizeof hf, "%s", tmp_path("s-hf"));
    snprintf(args, sizeof args, "convert --model '%s' --tokenizer '%s' --out '%s'", model,
             abs_data("stories260K/tok512.bin"), gguf);
    cr_assert_eq(run_sparq(args, &o, &er), 0, "%s", er);
    free(o); free(er);
    snprintf(args, sizeof args, "convert --model '%s' --format safetensors --out '%s'", model, hf);
    cr_assert_eq(run_sparq(args, &o, &er), 0, "%s", er);
    free(o); free(er);
    /* A Hugging Face folder carries its SentencePiece model as tokenizer.model. */
    size_t sz;
    char *spm = read_all(abs_data("stories260K/tok512.model"), &sz), dst[1100];
    cr_assert_not_null(spm);
    snprintf(dst, sizeof dst, "%s/tokenizer.model", hf);
    cr_assert_eq(write_file(dst, spm, sz), 0);
    free(spm);

    int nb, ng, nh;
    const char *grid = "[grid.p]\nsolver = wanda\nsparsity = 0.5\n";
    cJSON **rb = sweep_records("sw-bin", model, abs_data("stories260K/tok512.bin"), grid, &nb);
    cJSON **rg = sweep_records("sw-gguf", gguf, NULL, grid, &ng);
    cJSON **rh = sweep_records("sw-hf", hf, NULL, grid, &nh);
    cr_assert_eq(nb, 2);
    cr_assert_eq(ng, 2);
    cr_assert_eq(nh, 2);
    /* The same weights and the same pieces: the same perplexity from every format (f32 all along). */
    double pb = dense_ppl(rb, nb), pg = dense_ppl(rg, ng), ph = dense_ppl(rh, nh);
    cr_assert(fabs(pg - pb) < 1e-9 * pb, "gguf %.9g vs llama2.c %.9g", pg, pb);
    cr_assert(fabs(ph - pb) < 1e-6 * pb, "hf %.9g vs llama2.c %.9g", ph, pb);
    results_free(rb, nb);
    results_free(rg, ng);
    results_free(rh, nh);
}

/* Fields measured rather than computed: timings and memory. */
static void drop_measured(cJSON *rec) {
    cJSON_DeleteItemFromObject(rec, "seconds");
    cJSON_DeleteItemFromObject(rec, "peak_rss_mb");
    for (cJSON *l = cJSON_GetObjectItem(rec, "layers")->child; l; l = l->next) cJSON_DeleteItemFromObject(l, "seconds");
}

/* Every field of a that b also has must be equal (recursively); returns how many were compared. */
static int compare_shared(const cJSON *a, const cJSON *b, const char *path) {
    int n = 0;
    if (cJSON_IsObject(a) && cJSON_IsObject(b)) {
        for (const cJSON *x = a->child; x; x = x->next) {
            const cJSON *y = cJSON_GetObjectItem(b, x->string);
            char sub[512];
            snprintf(sub, sizeof sub, "%s.%s", path, x->string);
            if (y) n += compare_shared(x, y, sub);
        }
        return n;
    }
    if (cJSON_IsArray(a) && cJSON_IsArray(b)) {
        cr_assert_eq(cJSON_GetArraySize(a), cJSON_GetArraySize(b), "%s: array sizes differ", path);
        for (int i = 0; i < cJSON_GetArraySize(a); i++) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s[%d]", path, i);
            n += compare_shared(cJSON_GetArrayItem(a, i), cJSON_GetArrayItem(b, i), sub);
        }
        return n;
    }
    char *x = cJSON_PrintUnformatted(a), *y = cJSON_PrintUnformatted(b);
    cr_assert_str_eq(x, y, "%s: compress --json has %s, the sweep record %s", path, x, y);
    free(x);
    free(y);
    return 1;
}

Test(run, compress_json_and_the_sweep_record_agree_on_every_shared_field, .timeout = 120) {
    const char *model = abs_data("stories260K/stories260K.bin");
    int n;
    cJSON **recs = sweep_records("sw-agree", model, NULL,
                                 "[grid.p]\nsolver = sparsegpt+gptq\nsparsity = 0.5\nbits = 4\ngroup = 32\n", &n);
    cr_assert_eq(n, 2);
    cJSON *sw = cJSON_IsTrue(cJSON_GetObjectItem(recs[0], "dense")) ? recs[1] : recs[0];
    char args[4096], *o, *er;
    snprintf(args, sizeof args, "compress --model '%s' --solver sparsegpt+gptq --sparsity 0.5 --bits 4 "
             "--group 32 --calib '%s' --nsamples 4 --calib-seqlen 64 --eval '%s' --protocol documents "
             "--seqlen 128 --limit 6 --json", model, abs_data(C4), abs_data(TEXT));
    cr_assert_eq(run_sparq(args, &o, &er), 0, "%s", er);
    cJSON *cli = cJSON_Parse(o);
    cr_assert_not_null(cli, "not JSON: %s", o);
    free(o);
    free(er);
    drop_measured(cli);
    drop_measured(sw);
    /* The sweep names where a run came from (key, grid); everything else is shared. */
    for (const cJSON *x = sw->child; x; x = x->next)
        if (strcmp(x->string, "key") && strcmp(x->string, "grid"))
            cr_assert_not_null(cJSON_GetObjectItem(cli, x->string), "compress --json lacks %s", x->string);
    int compared = compare_shared(cli, sw, "");
    /* 28 layer reports of 7 fields, the options, storage, perplexity with its stderr, ... */
    cr_assert_gt(compared, 200, "only %d fields compared", compared);
    cr_assert_gt(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(cli, "ppl"),
                 "TinyStories-valid-first1000.txt"), "ppl_stderr")->valuedouble, 0.0);
    cJSON_Delete(cli);
    results_free(recs, n);
}

/* The number of tokens the dense record (or, !dense, the first other record) scored on `text`. */
static double record_ppl_field(cJSON **recs, int n, bool dense, const char *text, const char *field) {
    for (int i = 0; i < n; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItem(recs[i], "dense")) == dense)
            return cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(recs[i], "ppl"), text),
                                       field)->valuedouble;
    cr_assert_fail("no %s record", dense ? "dense" : "compressed");
    return NAN;
}

/* Issue 20, part 4, in a sweep: `eval.ppl = FILE:llamacpp:L` scores what `sparq eval --protocol
 * llamacpp` scores, and the chunks' unscored first half survives the token cache: a second sweep
 * over the same folder reads the cached chunks and still scores 31 tokens per chunk of 64, not 63. */
Test(run, llamacpp_protocol_in_a_sweep_survives_the_token_cache, .timeout = 120) {
    const char *model = abs_data("stories260K/stories260K.bin"), *tok = abs_data("stories260K/tok512.bin");
    const char *wiki = abs_data("text/wiki.test.raw");
    char out_dir[1024], cfg[1100], text[8192], args[4096], *o, *er;
    snprintf(out_dir, sizeof out_dir, "%s", tmp_path("sw-llamacpp"));
    snprintf(cfg, sizeof cfg, "%s.ini", out_dir);
    cJSON **recs;
    int n = 0;
    err e = {0};
    for (int pass = 0; pass < 2; pass++) {
        snprintf(text, sizeof text,
                 "[sweep]\nmodel = %s\ntokenizer = %s\ncalib = %s\nnsamples = 4\nseqlen = 64\n"
                 "eval.ppl = %s:llamacpp:64\neval.limit = 5\nout = %s\n\n[grid.p]\nsolver = magnitude\n"
                 "sparsity = %s\n", model, tok, abs_data(C4), wiki, out_dir, pass ? "0.5, 0.6" : "0.5");
        cr_assert_eq(write_file(cfg, text, strlen(text)), 0);
        snprintf(args, sizeof args, "sweep '%s'", cfg);
        cr_assert_eq(run_sparq(args, &o, &er), 0, "pass %d: %s", pass, er);
        free(o); free(er);
    }
    cr_assert_eq(results_load(out_dir, &recs, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n, 3, "dense, s=0.5, then s=0.6 from the cache");
    for (int i = 0; i < n; i++) {
        const cJSON *p = cJSON_GetObjectItem(cJSON_GetObjectItem(recs[i], "ppl"), "wiki.test.raw");
        cr_assert_eq(cJSON_GetObjectItem(p, "tokens")->valuedouble, 5 * 31, "record %d: %s", i,
                     cJSON_GetObjectItem(recs[i], "label")->valuestring);
        cr_assert_str_eq(cJSON_GetObjectItem(p, "protocol")->valuestring, "llamacpp");
    }
    snprintf(args, sizeof args, "eval --model '%s' --tokenizer '%s' --text '%s' --protocol llamacpp "
             "--seqlen 64 --limit 5 --json", model, tok, wiki);
    cr_assert_eq(run_sparq(args, &o, &er), 0, "%s", er);
    cJSON *j = cJSON_Parse(o);
    double want = cJSON_GetObjectItem(j, "ppl")->valuedouble;
    double got = record_ppl_field(recs, n, true, "wiki.test.raw", "ppl");
    cr_assert(fabs(got - want) < 1e-12 * want, "sweep %.12g, eval %.12g", got, want);
    cJSON_Delete(j);
    free(o); free(er);
    results_free(recs, n);
}
