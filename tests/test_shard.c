/* Sharded perplexity (issue 17, past one machine): `eval --shard I/N --out PART` on every shard,
 * then `eval --merge PART...`, gives exactly the unsharded figures; bad sets of part files are
 * one clear error. */
#include <criterion/criterion.h>
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "util.h"

#define EVAL_ARGS "eval --model '%s' --text '%s' --seqlen 128 --limit 45 --threads 2"

static cJSON *run_json(const char *args) {
    char *out, *er;
    int st = run_sparq(args, &out, &er);
    cr_assert_eq(st, 0, "%s: %s", args, er);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "%s", out);
    free(out);
    free(er);
    return j;
}

static const char *part(int i) {
    char name[32];
    snprintf(name, sizeof name, "part%d.json", i);
    return tmp_path(name);
}

Test(shard, merged_parts_equal_the_unsharded_run_exactly) {
    const char *m = data_path("stories260K/stories260K.bin"), *w = data_path("text/wiki.test.raw");
    char args[4096];
    snprintf(args, sizeof args, EVAL_ARGS " --json", m, w);
    cJSON *full = run_json(args);
    char merge[8192] = "eval --merge";
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, EVAL_ARGS " --shard %d/4 --out '%s' --json", m, w, i, part(i));
        cJSON *p = run_json(args);
        /* windows i, i + 4, ...: 12, 11, 11, 11 of 45 */
        cr_assert_eq(cJSON_GetObjectItem(p, "sequences")->valueint, i == 0 ? 12 : 11);
        cJSON_Delete(p);
        snprintf(merge + strlen(merge), sizeof merge - strlen(merge), " '%s'", part(3 - i));
    }
    strcat(merge, " --json");
    cJSON *all = run_json(merge);
    const char *keys[] = {"ppl", "nll", "nll_stderr", "ppl_stderr", "tokens", "sequences"};
    for (int k = 0; k < 6; k++) {
        double a = cJSON_GetObjectItem(full, keys[k])->valuedouble, b = cJSON_GetObjectItem(all, keys[k])->valuedouble;
        cr_assert(a == b, "%s: unsharded %.17g, merged %.17g", keys[k], a, b);
    }
    cr_assert_eq(cJSON_GetObjectItem(all, "sequences")->valueint, 45);
    cJSON_Delete(full);
    cJSON_Delete(all);
}

Test(shard, bad_part_sets_are_one_clear_error) {
    const char *m = data_path("stories260K/stories260K.bin"), *w = data_path("text/wiki.test.raw");
    char args[8192], *out, *er;
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, EVAL_ARGS " --shard %d/2 --out '%s'", m, w, i, part(i));
        cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
        free(out);
        free(er);
    }
    /* the same evaluation at another seqlen: a different evaluation */
    snprintf(args, sizeof args, "eval --model '%s' --text '%s' --seqlen 64 --limit 45 --shard 1/2 --out '%s'", m, w, part(7));
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    free(out);
    free(er);
    const char *junk = tmp_path("junk.json");
    cr_assert_eq(write_file(junk, "{\"a\": 1}", 8), 0);
    struct { const char *files, *says; } cases[4];
    char f0[4200], f1[4200], f2[4200], f3[4200];
    snprintf(f0, sizeof f0, "'%s'", part(0));
    snprintf(f1, sizeof f1, "'%s' '%s'", part(0), part(0));
    snprintf(f2, sizeof f2, "'%s' '%s'", part(0), part(7));
    snprintf(f3, sizeof f3, "'%s'", junk);
    cases[0].files = f0; cases[0].says = "shard 1/2 is missing";
    cases[1].files = f1; cases[1].says = "is given twice";
    cases[2].files = f2; cases[2].says = "another evaluation";
    cases[3].files = f3; cases[3].says = "not a part file";
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "eval --merge %s", cases[i].files);
        int st = run_sparq(args, &out, &er);
        cr_assert_eq(st, 2, "%s: exit %d", cases[i].says, st);
        cr_assert(strstr(er, cases[i].says), "\"%s\" lacks \"%s\"", er, cases[i].says);
        free(out);
        free(er);
    }
    snprintf(args, sizeof args, EVAL_ARGS " --shard 2/2 --out x.json", m, w);
    cr_assert_eq(run_sparq(args, &out, &er), 2);
    cr_assert(strstr(er, "expected I/N"), "%s", er);
    free(out);
    free(er);
}

/* A disk that fills while writing (a file-size limit here): exit 1, one line, and neither the
 * file nor its temporary left behind, for every writer. */
Test(shard, a_full_disk_leaves_no_half_written_file) {
    static const char *const outs[] = {"x.bin", "x.safetensors", "x.gguf"};
    const char *dir = tmp_path("fsz");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    cr_assert_eq(system(cmd), 0);
    struct rlimit old, lim;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    for (int i = 0; i < 3; i++) {
        char args[4096], *out = NULL, *er = NULL;
        snprintf(args, sizeof args, "convert --model '%s' --tokenizer '%s' --out '%s/%s'",
                 data_path("stories260K/stories260K.bin"), data_path("stories260K/tok512.bin"), dir, outs[i]);
        lim = old;
        lim.rlim_cur = 200 * 1024;          /* the model is 1 MB in every format */
        cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
        int st = run_sparq(args, &out, &er);
        cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
        cr_assert_eq(st, 1, "%s: exit %d (%s)", outs[i], st, er);
        cr_assert(strstr(er, "write failed: File too large"), "%s: %s", outs[i], er);
        cr_assert(strchr(er, '\n') == er + strlen(er) - 1, "%s: not one line: %s", outs[i], er);
        free(out);
        free(er);
    }
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", dir);
    cr_assert_eq(system(cmd), 0, "files were left in %s", dir);
}

/* compress estimates its peak from the shapes and refuses what cannot fit before calibrating. */
Test(shard, compress_refuses_what_would_not_fit) {
    const char *m = data_path("stories260K/stories260K.bin"), *c = data_path("text/c4-en-train-first1000.jsonl");
    struct { const char *extra, *says; int st; } cases[] = {
        {"--max-memory 20M", "but --max-memory allows 0.02 GB", 2},
        {"--nsamples 1000000 --calib-seqlen 256", "calibration activations 65.6", 2},
        {"--max-memory 12x", "--max-memory 12x: expected a size such as 20G or 512M", 2},
        {"--max-memory 100M --nsamples 4 --calib-seqlen 64", NULL, 0},
    };
    for (int i = 0; i < 4; i++) {
        char args[4096], *out, *er;
        snprintf(args, sizeof args, "compress --model '%s' --calib '%s' --solver sparsegpt --sparsity 0.5 %s",
                 m, c, cases[i].extra);
        int st = run_sparq(args, &out, &er);
        cr_assert_eq(st, cases[i].st, "%s: exit %d: %s", cases[i].extra, st, er);
        if (cases[i].says) cr_assert(strstr(er, cases[i].says), "%s: %s", cases[i].extra, er);
        free(out);
        free(er);
    }
}

/* --json reports where each block's time went; the parts add up within the block's total. */
Test(shard, compress_json_reports_per_block_seconds) {
    char args[4096], *out, *er;
    snprintf(args, sizeof args, "compress --model '%s' --calib '%s' --solver sparsegpt --sparsity 0.5 "
             "--nsamples 4 --calib-seqlen 64 --json", data_path("stories260K/stories260K.bin"),
             data_path("text/c4-en-train-first1000.jsonl"));
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    cJSON *j = cJSON_Parse(out), *b;
    cJSON *sec = cJSON_GetObjectItem(j, "seconds");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(sec, "blocks")), 5);
    double sum = 0;
    int i = 0;
    cJSON_ArrayForEach(b, cJSON_GetObjectItem(sec, "blocks")) {
        double f = cJSON_GetObjectItem(b, "forward")->valuedouble, h = cJSON_GetObjectItem(b, "hessians")->valuedouble;
        double s = cJSON_GetObjectItem(b, "solve")->valuedouble, t = cJSON_GetObjectItem(b, "seconds")->valuedouble;
        cr_assert_eq(cJSON_GetObjectItem(b, "block")->valueint, i++);
        cr_assert(f > 0 && h > 0 && s > 0 && f + h + s <= t * 1.001 + 1e-4, "block %d: %g + %g + %g > %g", i, f, h, s, t);
        sum += t;
    }
    cr_assert(sum <= cJSON_GetObjectItem(sec, "compress")->valuedouble * 1.001 + 1e-4);
    cJSON_Delete(j);
    free(out);
    free(er);
}

/* A Hugging Face folder is cut into shards with their index (as save_pretrained's
 * max_shard_size), and the shards reload to the same weights. */
Test(shard, safetensors_folders_are_sharded_and_reload) {
    const char *dir = tmp_path("sharded");
    char args[4096], *out, *er;
    snprintf(args, sizeof args, "convert --model '%s' --out '%s' --format safetensors --max-shard-size 0.3M",
             data_path("stories260K/stories260K.bin"), dir);
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    free(out);
    free(er);
    char p[4200];
    for (int k = 1; k <= 4; k++) {
        snprintf(p, sizeof p, "%s/model-%05d-of-00004.safetensors", dir, k);
        size_t n = 0;
        char *b = read_all(p, &n);
        cr_assert(b && n <= 300000 + 16 * 172 * 4, "%s: %zu bytes", p, n);
        free(b);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    cr_assert_null(read_all(p, NULL), "a single file beside the shards");
    model *a = load_stories(), *b = NULL;
    err e = {0};
    cr_assert_eq(model_load(&b, dir, &e), 0, "%s", e.msg);
    model_pin(b);
    cr_assert_eq(model_params(a), model_params(b));
    for (int l = 0; l < 5; l++)
        for (int k = 0; k < model_n_linear(a); k++)
            cr_assert(memcmp(a->blocks[l].lin[k].w, b->blocks[l].lin[k].w,
                             (size_t)a->blocks[l].lin[k].rows * a->blocks[l].lin[k].cols * 4) == 0);
    model_free(a);
    model_free(b);
}
