/* The staged sweep for big models (issue 17): with eval_shards = K, `sweep --slurm` writes a
 * compress array, an eval array of runs x K tasks and a merge before the report. Run here by a
 * stand-in sbatch that executes every array task in turn, the records must equal an in-memory
 * sweep's bit for bit, a lost task must be redone by a rerun without redoing anything else, and
 * bad values of the key are one line and exit 2. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../core/fileio.h"
#include "../experiments/results.h"
#include "util.h"

/* stories260K, 4 x 64 calibration tokens; two texts (7 documents, 7 windows: shards of 3, 2, 2)
 * and a task, which the compress task scores. */
static const char *write_config(const char *name, const char *out, const char *extra) {
    char text[4096];
    snprintf(text, sizeof text,
             "[sweep]\nmodel = stories260K/stories260K.bin\ntokenizer = stories260K/tok512.bin\n"
             "calib = text/c4-en-train-first1000.jsonl\nnsamples = 4\nseqlen = 64\n"
             "eval.ppl = text/TinyStories-valid-first1000.txt:documents:128, text/wiki.test.raw:windows:64\n"
             "eval.tasks = cloze=text/TinyStories-valid-first1000.txt\neval.limit = 7\nout = %s\n%s\n\n"
             "[grid.p]\nsolver = sparsegpt\nsparsity = 0.5\n\n[grid.q]\nsolver = gptq\nbits = 4\n",
             out, extra);
    const char *p = tmp_path(name);
    cr_assert_eq(write_file(p, text, strlen(text)), 0);
    return p;
}

/* A stand-in for sbatch on the PATH: runs the script's array tasks (#SBATCH --array=0-N) one
 * after another with SLURM_ARRAY_TASK_ID set, except task $SKIP_TASK of eval.slurm (a task
 * killed on the cluster), and prints a job id. Its calls go to $SBATCH_LOG, the tasks' output
 * to $SBATCH_LOG.out; a failing task fails no sbatch, as on a cluster. */
static const char *fake_sbatch =
    "#!/bin/sh\n"
    "dep=-; script=\n"
    "for a; do case \"$a\" in --dependency=*) dep=${a#--dependency=};; -*) ;; *) script=$a;; esac; done\n"
    "echo \"$dep $(basename \"$script\")\" >> \"$SBATCH_LOG\"\n"
    "last=$(sed -n 's/^#SBATCH --array=0-\\([0-9]*\\)$/\\1/p' \"$script\")\n"
    "if [ -z \"$last\" ]; then sh \"$script\" >> \"$SBATCH_LOG.out\" 2>&1 || echo \"$script failed\" >> \"$SBATCH_LOG.out\"\n"
    "else i=0; while [ $i -le $last ]; do\n"
    "  if [ \"$(basename \"$script\")\" != eval.slurm ] || [ \"$i\" != \"${SKIP_TASK:--1}\" ]; then\n"
    "    SLURM_ARRAY_TASK_ID=$i sh \"$script\" >> \"$SBATCH_LOG.out\" 2>&1 || echo \"array task $i failed\" >> \"$SBATCH_LOG.out\"\n"
    "  fi; i=$((i + 1)); done\n"
    "fi\n"
    "wc -l < \"$SBATCH_LOG\" | tr -d ' '   # the job id\n";

/* sh OUT/submit.sh with the stand-in first on the PATH; returns the exit status. */
static int submit(const char *out, const char *bin, const char *log, int skip) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "PATH='%s':\"$PATH\" SBATCH_LOG='%s' SKIP_TASK=%d sh '%s/submit.sh' > /dev/null", bin,
             log, skip, out);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A record without what differs between two runs of the same work (timings, memory). */
static char *stable(const cJSON *rec) {
    cJSON *c = cJSON_Duplicate(rec, 1);
    cJSON_DeleteItemFromObject(c, "seconds");
    cJSON_DeleteItemFromObject(c, "peak_rss_mb");
    for (cJSON *l = cJSON_GetObjectItem(c, "layers")->child; l; l = l->next) cJSON_DeleteItemFromObject(l, "seconds");
    char *s = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return s;
}

/* The records of dir against ref's: the same keys, every perplexity figure the same double, and
 * every field but timings the same text in the same order. */
static void expect_bit_identical(const char *dir, const char *ref) {
    cJSON **ra, **rb;
    int na, nb;
    err e = {0};
    cr_assert_eq(results_load(dir, &ra, &na, &e), 0, "%s", e.msg);
    cr_assert_eq(results_load(ref, &rb, &nb, &e), 0, "%s", e.msg);
    cr_assert_eq(na, 3, "%d records", na);
    cr_assert_eq(nb, 3);
    static const char *const fields[] = {"ppl", "nll", "nll_stderr", "ppl_stderr", "tokens"};
    for (int i = 0; i < na; i++) {
        const char *key = cJSON_GetObjectItem(ra[i], "key")->valuestring;
        const cJSON *o = results_find(rb, nb, key);
        cr_assert_not_null(o, "record %s is not the in-memory sweep's", key);
        const cJSON *t, *pa = cJSON_GetObjectItem(ra[i], "ppl"), *pb = cJSON_GetObjectItem(o, "ppl");
        cr_assert_eq(cJSON_GetArraySize(pa), 2);
        cJSON_ArrayForEach(t, pa) {
            const cJSON *u = cJSON_GetObjectItem(pb, t->string);
            cr_assert_not_null(u, "%s: no %s", key, t->string);
            for (int f = 0; f < 5; f++) {
                double a = cJSON_GetObjectItem(t, fields[f])->valuedouble, b = cJSON_GetObjectItem(u, fields[f])->valuedouble;
                cr_assert(a == b, "%s %s %s: staged %.17g, in memory %.17g", key, t->string, fields[f], a, b);
            }
            cr_log_info("%-16s %-32s ppl %.17g nll %.17g nll_stderr %.17g ppl_stderr %.17g tokens %g",
                        cJSON_GetObjectItem(ra[i], "label")->valuestring, t->string,
                        cJSON_GetObjectItem(t, "ppl")->valuedouble, cJSON_GetObjectItem(t, "nll")->valuedouble,
                        cJSON_GetObjectItem(t, "nll_stderr")->valuedouble,
                        cJSON_GetObjectItem(t, "ppl_stderr")->valuedouble, cJSON_GetObjectItem(t, "tokens")->valuedouble);
        }
        char *x = stable(ra[i]), *y = stable(o);
        cr_assert_str_eq(x, y, "record %s differs", key);
        free(x);
        free(y);
    }
    results_free(ra, na);
    results_free(rb, nb);
}

static int count_matches(const char *text, const char *s) {
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, s)); p += strlen(s)) n++;
    return n;
}

Test(slurm, staged_sweep_over_a_job_array_records_exactly_the_in_memory_sweep, .timeout = 240) {
    /* tmp_path's buffers are a ring that run_sparq reuses: every path is copied. */
    char ref[1024], out[1024], refcfg[1024], cfg[1024], bin[1024], log[1024];
    snprintf(ref, sizeof ref, "%s", tmp_path("slurm-ref"));
    snprintf(out, sizeof out, "%s", tmp_path("slurm-out"));
    /* The in-memory sweep's config has no eval_shards: a staged run keeps the same key. */
    snprintf(refcfg, sizeof refcfg, "%s", write_config("slurm-ref.ini", ref, ""));
    snprintf(cfg, sizeof cfg, "%s", write_config("slurm.ini", out, "eval_shards = 3"));
    snprintf(bin, sizeof bin, "%s", tmp_path("slurm-bin"));
    snprintf(log, sizeof log, "%s", tmp_path("sbatch.log"));
    char *o, *er, args[4096], p[4200];
    snprintf(args, sizeof args, "sweep '%s'", refcfg);
    cr_assert_eq(run_sparq(args, &o, &er), 0, "%s", er);
    free(o); free(er);

    snprintf(args, sizeof args, "sweep '%s' --slurm", cfg);
    cr_assert_eq(run_sparq(args, &o, &er), 0, "%s", er);
    cr_assert(strstr(o, "eval.slurm (9 eval tasks: 3 shards a run)"), "%s", o);
    free(o); free(er);
    snprintf(p, sizeof p, "%s/eval.slurm", out);
    char *script = read_all(p, NULL);
    cr_assert(strstr(script, "#SBATCH --array=0-8\n") && strstr(script, "--stage eval --shard \"$SLURM_ARRAY_TASK_ID/9\""),
              "%s", script);
    free(script);
    cr_assert_eq(mkdir(bin, 0755), 0);
    snprintf(p, sizeof p, "%s/sbatch", bin);
    cr_assert_eq(write_file(p, fake_sbatch, strlen(fake_sbatch)), 0);
    cr_assert_eq(chmod(p, 0755), 0);

    /* First submission: eval task 4 (shard 1 of the second run) is lost. The merge records the
     * other two runs, fails naming the third, and the report still runs. */
    cr_assert_eq(submit(out, bin, log, 4), 0);
    char *calls = read_all(log, NULL);
    cr_assert_str_eq(calls, "- sweep.slurm\nafterany:1 eval.slurm\nafterany:2 report.slurm\n", "%s", calls);
    free(calls);
    snprintf(p, sizeof p, "%s.out", log);
    char *said = read_all(p, NULL);
    cr_assert(strstr(said, "2 merged, 0 already recorded, 1 waiting") && strstr(said, "2 of 3 eval shards scored"),
              "%s", said);
    cr_assert_eq(count_matches(said, "report.slurm failed"), 1, "the merge's failure is the report job's: %s", said);
    cr_assert_eq(count_matches(said, "array task"), 0, "no array task failed: %s", said);
    free(said);
    snprintf(p, sizeof p, "%s/runs.jsonl", out);
    char *two = read_all(p, NULL);
    cr_assert_eq(count_matches(two, "\n"), 2);
    free(two);
    snprintf(p, sizeof p, "%s/report.md", out);
    cr_assert(path_exists(p), "no report");

    /* Resubmitted: only the lost task's work is done again. */
    snprintf(p, sizeof p, "%s.out", log);
    cr_assert_eq(write_file(p, "", 0), 0);
    cr_assert_eq(submit(out, bin, log, -1), 0);
    said = read_all(p, NULL);
    cr_assert_eq(count_matches(said, "staged, perplexities pending"), 0, "a compression was redone: %s", said);
    cr_assert_eq(count_matches(said, "scored  "), 1, "one eval shard was to redo: %s", said);
    cr_assert(strstr(said, "1 merged, 2 already recorded, 0 waiting"), "%s", said);
    cr_assert_eq(count_matches(said, "failed"), 0, "%s", said);
    free(said);
    expect_bit_identical(out, ref);
    snprintf(p, sizeof p, "%s/staged", out);
    cr_assert(!path_exists(p), "the staged models are left in %s", p);

    /* Once more: nothing left to do, and the records stay as they are. */
    snprintf(p, sizeof p, "%s/runs.jsonl", out);
    char *before = read_all(p, NULL);
    cr_assert_eq(submit(out, bin, log, -1), 0);
    char *after = read_all(p, NULL);
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
}

/* Every bad value is refused when the config is read: exit 2, one line naming file, line, key
 * and value. */
Test(slurm, bad_eval_shards_are_refused_with_one_line) {
    struct { const char *line, *says; } cases[] = {
        {"eval_shards = 0", ":11: [sweep] eval_shards = 0: expected an integer in [1, 1024]"},
        {"eval_shards = 2.5", ":11: [sweep] eval_shards = 2.5: expected an integer in [1, 1024]"},
        {"eval_shards = three", ":11: [sweep] eval_shards = three: expected an integer in [1, 1024]"},
        {"eval_shards = -1", ":11: [sweep] eval_shards = -1: expected an integer in [1, 1024]"},
        {"eval_shards = 1025", ":11: [sweep] eval_shards = 1025: expected an integer in [1, 1024]"},
        {"eval_shards =", ":11: [sweep] eval_shards = : expected an integer in [1, 1024]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32], args[4096], *o, *er;
        snprintf(name, sizeof name, "bad-shards%zu.ini", i);
        char cfg[1024];
        snprintf(cfg, sizeof cfg, "%s", write_config(name, tmp_path("bad-shards-out"), cases[i].line));
        for (int slurm = 0; slurm < 2; slurm++) {
            snprintf(args, sizeof args, "sweep '%s' %s", cfg, slurm ? "--slurm" : "--dry-run");
            int st = run_sparq(args, &o, &er);
            cr_assert_eq(st, 2, "%s: exit %d: %s", cases[i].line, st, er);
            cr_assert(strstr(er, cases[i].says), "%s: %s", cases[i].line, er);
            cr_assert_eq(count_matches(er, "\n"), 1, "%s: not one line: %s", cases[i].line, er);
            free(o);
            free(er);
        }
    }
    /* Without perplexities there is nothing to shard; stages need the key; --stage and --slurm
     * do not go together. */
    const char *t = "[sweep]\nmodel = stories260K/stories260K.bin\ncalib = self\n"
                    "eval.tasks = cloze=text/TinyStories-valid-first1000.txt\neval_shards = 2\n";
    char tasks_only[1024], plain[1024], staged[1024];
    snprintf(tasks_only, sizeof tasks_only, "%s", tmp_path("tasks-only.ini"));
    cr_assert_eq(write_file(tasks_only, t, strlen(t)), 0);
    snprintf(plain, sizeof plain, "%s", write_config("plain.ini", tmp_path("plain-out"), ""));
    snprintf(staged, sizeof staged, "%s", write_config("staged.ini", tmp_path("staged-out"), "eval_shards = 2"));
    struct { const char *cfg, *flags, *says; } more[] = {
        {tasks_only, "--dry-run", "eval_shards splits the perplexities of eval.ppl, and there are none"},
        {plain, "--stage eval", "--stage eval: "},
        {plain, "--stage merge", "has no eval_shards = K in [sweep]"},
        {staged, "--stage shards", "--stage shards: expected compress, eval or merge"},
        {staged, "--stage eval --slurm", "give one or the other"},
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        char args[4096], *o, *er;
        snprintf(args, sizeof args, "sweep '%s' %s", more[i].cfg, more[i].flags);
        int st = run_sparq(args, &o, &er);
        cr_assert_eq(st, 2, "%s: exit %d: %s", more[i].flags, st, er);
        cr_assert(strstr(er, more[i].says), "%s: %s", more[i].flags, er);
        cr_assert_eq(count_matches(er, "\n"), 1, "not one line: %s", er);
        free(o);
        free(er);
    }
}

/* Part files hold every double exactly: cJSON alone writes 0.1 for the double just above 0.1 (it
 * reads back within a relative DBL_EPSILON), which moved merged standard errors by an ulp. */
Test(slurm, part_files_keep_every_double_exactly) {
    ppl_part parts[2] = {{3, nextafter(0.3, 1), nextafter(0.1, 1), nextafter(0.02, 1)},
                         {2, nextafter(0.7, 0), nextafter(0.35, 1), nextafter(1e-3, 0)}};
    int index[2] = {0, 1};
    ppl_result r = {0}, want, got;
    ppl_shard_meta meta = {.model = "m.bin", .text = "t.txt", .protocol = "windows", .seqlen = 8, .shards = 1,
                           .sequences = 2};
    err e = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s", tmp_path("exact-part.json"));
    cr_assert_eq(results_ppl_part_save(path, &meta, parts, index, 2, &r, &e), 0, "%s", e.msg);
    char *paths[1] = {path};
    cr_assert_eq(results_ppl_parts_merge(paths, 1, &meta, &got, &e), 0, "%s", e.msg);
    cr_assert_eq(ppl_combine(parts, 2, &want, &e), 0);
    cr_assert(got.nll == want.nll && got.nll_stderr == want.nll_stderr && got.ppl_stderr == want.ppl_stderr,
              "nll %.17g / %.17g, nll_stderr %.17g / %.17g", got.nll, want.nll, got.nll_stderr, want.nll_stderr);
}
