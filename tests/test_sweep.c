/* The sweep runner: grid expansion and config errors, resume after SIGKILL with the same
 * records, two concurrent shards on one folder, and reports with tables, plots and the Pareto
 * frontier. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/fileio.h"
#include "../core/clock.h"
#include "../experiments/report.h"
#include "../experiments/results.h"
#include "../experiments/run.h"
#include "../experiments/sweep.h"
#include "util.h"

/* A small but real sweep: stories260K, 4 x 64 calibration tokens, 6 documents scored. */
static const char *write_config(const char *name, const char *out, const char *grids) {
    char text[8192];
    snprintf(text, sizeof text,
             "[sweep]\nmodel = stories260K/stories260K.bin\ntokenizer = stories260K/tok512.bin\n"
             "calib = text/c4-en-train-first1000.jsonl\nnsamples = 4\nseqlen = 64\n"
             "eval.ppl = text/TinyStories-valid-first1000.txt:documents:128\neval.limit = 6\nout = %s\n\n%s",
             out, grids);
    const char *p = tmp_path(name);
    cr_assert_eq(write_file(p, text, strlen(text)), 0);
    return p;
}

/* config_load, then the points checked against the model and keyed, as a sweep does. */
static int load_and_prepare(const char *path, sweep_config *cfg, run_spec **r, int *n, err *e) {
    int rc = config_load(path, cfg, r, n, e);
    run_context *ctx = NULL;
    if (!rc) rc = run_context_new(&ctx, &cfg->setup, false, NULL, e);
    if (!rc) rc = sweep_prepare(ctx, *r, *n, e);
    run_context_free(ctx);
    return rc;
}

static const char *grid_small =
    "[grid.prune]\nsolver = magnitude, sparsegpt\nsparsity = 0.5, 0.6\n\n"
    "[grid.q]\nsolver = gptq\nbits = 4, 3\n\n"
    "[grid.nm]\nsolver = wanda\nnm = 2:4\n";

Test(sweep, grid_expands_to_the_expected_runs_and_reports_invalid_points) {
    const char *cfgp = write_config("grid.ini", tmp_path("out-grid"),
        "[grid.a]\nsolver = magnitude, sparsegpt\nsparsity = 0.5, 0.7\nbits = 16, 4\n\n"
        "[grid.b]\nsolver = sparsegpt\nnm = 2:4, 4:8\nsparsity = 0.5, 0.7\n");
    sweep_config cfg;
    run_spec *r;
    int n;
    err e = {0};
    cr_assert_eq(load_and_prepare(cfgp, &cfg, &r, &n, &e), 0, "%s", e.msg);
    /* dense + 2 solvers x 2 sparsities x 2 bit widths + 2 patterns x 2 sparsities. */
    cr_assert_eq(n, 1 + 8 + 4);
    const char *want[] = {"dense", "magnitude s=0.5", "magnitude s=0.5 4-bit", "magnitude s=0.7",
                          "magnitude s=0.7 4-bit", "sparsegpt s=0.5", "sparsegpt s=0.5 4-bit",
                          "sparsegpt s=0.7", "sparsegpt s=0.7 4-bit", "sparsegpt 2:4", "sparsegpt 2:4 s=0.7",
                          "sparsegpt 4:8", "sparsegpt 4:8 s=0.7"};
    for (int i = 0; i < n; i++) cr_assert_str_eq(r[i].label, want[i], "run %d", i);
    cr_assert(r[0].dense);
    /* Parsed as a double, like the reference's Python float: 0.7, not 0.7f. */
    cr_assert_eq(r[3].opts.target.sparsity, 0.7);
    /* magnitude does not quantize; 2:4 and 4:8 with sparsity 0.7 are impossible, and 4:8 does
     * not divide stories260K's down projection (172 inputs). */
    const int invalid[] = {2, 4, 10, 11, 12};   /* 2:4 s=0.7, 4:8, 4:8 s=0.7 are 10, 11, 12 */
    for (int i = 0, k = 0; i < n; i++) {
        bool bad = k < 5 && invalid[k] == i;
        cr_assert_eq(r[i].invalid[0] != '\0', bad, "run %d (%s): invalid = \"%s\"", i, r[i].label, r[i].invalid);
        k += bad;
    }
    cr_assert(strstr(r[10].invalid, "sparsity 0.7 contradicts it"), "%s", r[10].invalid);
    cr_assert(strstr(r[2].invalid, "does not quantize"), "%s", r[2].invalid);
    cr_assert(strstr(r[11].invalid, "does not divide a layer of 172"), "%s", r[11].invalid);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) cr_assert_str_neq(r[i].key, r[j].key, "runs %d and %d share a key", i, j);
    /* Keys are stable: loading again gives the same. */
    run_spec *r2;
    int n2;
    cr_assert_eq(load_and_prepare(cfgp, &cfg, &r2, &n2, &e), 0);
    for (int i = 0; i < n; i++) cr_assert_str_eq(r[i].key, r2[i].key);
    free(r);
    free(r2);
}

Test(sweep, unknown_keys_and_sections_name_the_key_and_line) {
    sweep_config cfg;
    run_spec *r;
    int n;
    err e = {0};
    const char *p = write_config("bad1.ini", "x", "[grid.a]\nsolver = sparsegpt\nsparsty = 0.5\n");
    cr_assert_eq(config_load(p, &cfg, &r, &n, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, ":13: unknown key 'sparsty' in [grid.a]"), "%s", e.msg);
    p = write_config("bad2.ini", "x", "[grids.a]\nsolver = sparsegpt\n");
    cr_assert_eq(config_load(p, &cfg, &r, &n, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, ":12: unknown section [grids.a]"), "%s", e.msg);
    p = write_config("bad3.ini", "x", "[grid.a]\nsparsity = 0.5\n");
    cr_assert_eq(config_load(p, &cfg, &r, &n, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, "needs solver"), "%s", e.msg);
    const char *t = "[sweep]\nmodel = stories260K/stories260K.bin\ncalib = self\nnsamples = many\n";
    p = tmp_path("bad4.ini");
    write_file(p, t, strlen(t));
    cr_assert_eq(config_load(p, &cfg, &r, &n, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, ":4: [sweep] nsamples = many"), "%s", e.msg);
}

/* Records without what varies between identical runs (timings, memory). */
static char *stable(const cJSON *rec) {
    cJSON *c = cJSON_Duplicate(rec, 1);
    cJSON_DeleteItemFromObject(c, "seconds");
    cJSON_DeleteItemFromObject(c, "peak_rss_mb");
    for (cJSON *l = cJSON_GetObjectItem(c, "layers")->child; l; l = l->next) cJSON_DeleteItemFromObject(l, "seconds");
    char *s = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return s;
}

static void expect_same_records(const char *a, const char *b, int want) {
    cJSON **ra, **rb;
    int na, nb;
    err e = {0};
    cr_assert_eq(results_load(a, &ra, &na, &e), 0, "%s", e.msg);
    cr_assert_eq(results_load(b, &rb, &nb, &e), 0, "%s", e.msg);
    cr_assert_eq(na, want, "%s has %d records", a, na);
    cr_assert_eq(nb, want, "%s has %d records", b, nb);
    for (int i = 0; i < na; i++) {
        const char *key = cJSON_GetObjectItem(ra[i], "key")->valuestring;
        for (int j = i + 1; j < na; j++)
            cr_assert_str_neq(key, cJSON_GetObjectItem(ra[j], "key")->valuestring, "duplicate record");
        const cJSON *o = results_find(rb, nb, key);
        cr_assert_not_null(o, "record %s missing from %s", key, b);
        char *x = stable(ra[i]), *y = stable(o);
        cr_assert_str_eq(x, y, "record %s differs", key);
        free(x);
        free(y);
    }
    results_free(ra, na);
    results_free(rb, nb);
}

static pid_t spawn_sweep(const char *cfg, const char *extra) {
    pid_t pid = fork();
    if (pid == 0) {
        const char *bin = getenv("SPARQ_BIN");
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "exec %s sweep '%s' %s 2>/dev/null", bin && *bin ? bin : "./sparq", cfg, extra);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int count_lines(const char *path) {
    char *s = read_all(path, NULL);
    int n = 0;
    for (char *p = s; p && *p; p++) n += *p == '\n';
    free(s);
    return n;
}

Test(sweep, killed_sweep_resumes_to_the_same_records, .timeout = 240) {
    const char *full = tmp_path("full"), *killed = tmp_path("killed");
    const char *cf = write_config("full.ini", full, grid_small), *ck = write_config("killed.ini", killed, grid_small);
    char *out, *er;
    char args[4096];
    snprintf(args, sizeof args, "sweep '%s'", cf);
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    free(out); free(er);
    /* Kill the second sweep once it has recorded two runs (mid-sweep), then rerun it. */
    pid_t pid = spawn_sweep(ck, "");
    char runs[4200];
    snprintf(runs, sizeof runs, "%s/runs.jsonl", killed);
    for (int i = 0; i < 6000 && count_lines(runs) < 2; i++) nanosleep(&(struct timespec){0, 10000000}, NULL);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    int before = count_lines(runs);
    cr_assert(before >= 2 && before < 8, "killed after %d records", before);
    char *txt = read_all(runs, NULL);
    cr_assert(txt[strlen(txt) - 1] == '\n', "partial last line");
    free(txt);
    snprintf(args, sizeof args, "sweep '%s'", ck);
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    cr_assert(strstr(er, "done"), "%s", er);
    free(out); free(er);
    expect_same_records(killed, full, 8);
}

Test(sweep, two_concurrent_shards_produce_the_union_without_duplicates, .timeout = 240) {
    const char *dir = tmp_path("shards"), *ref = tmp_path("ref");
    const char *c = write_config("shards.ini", dir, grid_small), *cr = write_config("ref.ini", ref, grid_small);
    pid_t a = spawn_sweep(c, "--shard 0/2 --threads 1"), b = spawn_sweep(c, "--shard 1/2 --threads 1");
    int sa, sb;
    waitpid(a, &sa, 0);
    waitpid(b, &sb, 0);
    cr_assert(WIFEXITED(sa) && WEXITSTATUS(sa) == 0 && WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
    char *out, *er, args[4096];
    snprintf(args, sizeof args, "sweep '%s' --jobs 2", cr);
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    free(out); free(er);
    /* Thread counts differ between the two sweeps: compare keys and numbers to round-off. */
    cJSON **ra, **rb;
    int na, nb;
    err e = {0};
    cr_assert_eq(results_load(dir, &ra, &na, &e), 0);
    cr_assert_eq(results_load(ref, &rb, &nb, &e), 0);
    cr_assert_eq(na, 8);
    cr_assert_eq(nb, 8);
    for (int i = 0; i < na; i++) {
        const char *key = cJSON_GetObjectItem(ra[i], "key")->valuestring;
        for (int j = i + 1; j < na; j++) cr_assert_str_neq(key, cJSON_GetObjectItem(ra[j], "key")->valuestring);
        const cJSON *o = results_find(rb, nb, key);
        cr_assert_not_null(o);
        double pa = cJSON_GetObjectItem(cJSON_GetObjectItem(ra[i], "ppl")->child, "ppl")->valuedouble;
        double pb = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "ppl")->child, "ppl")->valuedouble;
        cr_assert(fabs(pa / pb - 1) < 1e-3, "%s: %g vs %g", key, pa, pb);
    }
    results_free(ra, na);
    results_free(rb, nb);
}

Test(sweep, pareto_frontier_is_the_non_dominated_set) {
    double x[7] = {0.5, 0.75, 0.75, 0.8125, 0.875, 0.5, 0.9};
    double y[7] = {0.9, 0.95, 0.7, 0.6, 0.6, 0.95, NAN};
    bool f[7];
    report_pareto(x, y, 7, f);
    /* (0.5, .9) and (0.5, .95) are dominated by (0.75, .95); (0.75, .7) by (0.75, .95);
     * (0.8125, .6) by (0.875, .6); NaN is never on it. */
    bool want[7] = {false, true, false, false, true, false, false};
    for (int i = 0; i < 7; i++) cr_assert_eq(f[i], want[i], "point %d", i);
}

static void expect_nonempty(const char *dir, const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    cr_assert(stat(p, &st) == 0 && st.st_size > 0, "%s is missing or empty", p);
}

Test(sweep, report_writes_tables_and_plots_from_a_fixture) {
    const char *dir = tmp_path("fixture");
    err e = {0};
    cr_assert_eq(results_mkdir(dir, &e), 0);
    /* Hand-written records: dense, two pruned, two quantized. */
    const char *lines =
        "{\"key\":\"k0\",\"label\":\"dense\",\"grid\":\"dense\",\"dense\":true,\"config\":{\"solver\":\"dense\",\"bits\":16,\"m\":0,\"sparsity\":0,\"group\":-1,\"schedule\":\"uniform\"},\"sparsity\":0,\"bits\":16,\"bits_per_weight\":16,\"bits_per_weight_theoretical\":16,\"bytes_packed\":520000,\"tcr\":0,\"ppl\":{\"ts\":{\"ppl\":4.0}},\"tasks\":{},\"seconds\":{\"total\":1}}\n"
        "{\"key\":\"k1\",\"label\":\"sparsegpt s=0.5\",\"grid\":\"p\",\"dense\":false,\"config\":{\"solver\":\"sparsegpt\",\"bits\":16,\"m\":0,\"sparsity\":0.5,\"group\":-1,\"schedule\":\"uniform\"},\"sparsity\":0.5,\"bits\":16,\"bits_per_weight\":9,\"bits_per_weight_theoretical\":8,\"bytes_packed\":300000,\"tcr\":0.5,\"ppl\":{\"ts\":{\"ppl\":8.0}},\"tasks\":{},\"seconds\":{\"total\":2}}\n"
        "{\"key\":\"k2\",\"label\":\"sparsegpt s=0.7\",\"grid\":\"p\",\"dense\":false,\"config\":{\"solver\":\"sparsegpt\",\"bits\":16,\"m\":0,\"sparsity\":0.7,\"group\":-1,\"schedule\":\"uniform\"},\"sparsity\":0.7,\"bits\":16,\"bits_per_weight\":5.8,\"bits_per_weight_theoretical\":4.8,\"bytes_packed\":200000,\"tcr\":0.7,\"ppl\":{\"ts\":{\"ppl\":40.0}},\"tasks\":{},\"seconds\":{\"total\":2}}\n"
        "{\"key\":\"k3\",\"label\":\"gptq 4-bit\",\"grid\":\"q\",\"dense\":false,\"config\":{\"solver\":\"gptq\",\"bits\":4,\"m\":0,\"sparsity\":0,\"group\":-1,\"schedule\":\"uniform\"},\"sparsity\":0,\"bits\":4,\"bits_per_weight\":4.4,\"bits_per_weight_theoretical\":4,\"bytes_packed\":180000,\"tcr\":0.75,\"ppl\":{\"ts\":{\"ppl\":4.4}},\"tasks\":{},\"seconds\":{\"total\":2}}\n"
        "{\"key\":\"k4\",\"label\":\"gptq 3-bit\",\"grid\":\"q\",\"dense\":false,\"config\":{\"solver\":\"gptq\",\"bits\":3,\"m\":0,\"sparsity\":0,\"group\":-1,\"schedule\":\"uniform\"},\"sparsity\":0,\"bits\":3,\"bits_per_weight\":3.4,\"bits_per_weight_theoretical\":3,\"bytes_packed\":150000,\"tcr\":0.8125,\"ppl\":{\"ts\":{\"ppl\":8.0}},\"tasks\":{},\"seconds\":{\"total\":2}}\n";
    char p[4200];
    snprintf(p, sizeof p, "%s/runs.jsonl", dir);
    cr_assert_eq(write_file(p, lines, strlen(lines)), 0);
    cr_assert_eq(report_write(dir, NULL, NULL, NULL, &e), 0, "%s", e.msg);
    expect_nonempty(dir, "report.md");
    expect_nonempty(dir, "results.csv");
    expect_nonempty(dir, "tables.tex");
    const char *plots[] = {"ppl_vs_sparsity_0", "ppl_vs_bpw_0", "retention_vs_tcr", "srcr"};
    char pd[4200];
    snprintf(pd, sizeof pd, "%s/plots", dir);
    for (int i = 0; i < 4; i++) {
        char f[256];
        snprintf(f, sizeof f, "%s.png", plots[i]);
        expect_nonempty(pd, f);
        snprintf(f, sizeof f, "%s.svg", plots[i]);
        expect_nonempty(pd, f);
    }
    /* Retention = 4 / ppl: dense 1 (TCr 0), gptq 4-bit 0.909 (75%), gptq 3-bit 0.5 (81.25%)
     * and sparsegpt 0.7 0.1 (70%) ... the frontier is dense, gptq 4-bit, gptq 3-bit. */
    snprintf(p, sizeof p, "%s/report.md", dir);
    char *md = read_all(p, NULL);
    cr_assert(strstr(md, "| * dense |"), "%s", md);
    cr_assert(strstr(md, "| * gptq 4-bit |"));
    cr_assert(strstr(md, "| * gptq 3-bit |"));
    cr_assert(strstr(md, "| sparsegpt s=0.5 |"), "sparsegpt 50%% is dominated by gptq 4-bit");
    cr_assert(strstr(md, "| 0.9091 |"), "retention of gptq 4-bit");
    /* SrCr (recon, the default) = Sr / (sqrt(1-s) log2(q)/4): gptq 4-bit 0.9091 / 0.5. */
    cr_assert(strstr(md, "| 0.9091 | 1.8182 |"), "SrCr recon of gptq 4-bit: %s", md);
    free(md);
    /* Another formula by name: ratio = Sr x 16 / (q (1-s)) = 0.9091 x 4; unknown names fail. */
    cr_assert_eq(report_write(dir, NULL, NULL, "ratio", &e), 0, "%s", e.msg);
    md = read_all(p, NULL);
    cr_assert(strstr(md, "| 0.9091 | 3.6364 |"), "SrCr ratio of gptq 4-bit: %s", md);
    cr_assert(strstr(md, "`ratio` formula"));
    free(md);
    cr_assert_eq(report_write(dir, NULL, NULL, "paper", &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, "unknown SrCr formula 'paper'"), "%s", e.msg);
    snprintf(p, sizeof p, "%s/results.csv", dir);
    cr_assert_eq(count_lines(p), 6);
}

/* Records of dir/runs.jsonl: whole lines only, each a record, no key twice. Returns the count. */
static int check_records_file(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/runs.jsonl", dir);
    size_t n = 0;
    char *txt = read_all(p, &n);
    if (txt && n) cr_assert(txt[n - 1] == '\n', "%s ends in a partial line", p);
    free(txt);
    cJSON **r;
    int nr;
    err e = {0};
    cr_assert_eq(results_load(dir, &r, &nr, &e), 0, "%s", e.msg);
    for (int i = 0; i < nr; i++)
        for (int j = i + 1; j < nr; j++)
            cr_assert_str_neq(cJSON_GetObjectItem(r[i], "key")->valuestring,
                              cJSON_GetObjectItem(r[j], "key")->valuestring, "duplicate record");
    results_free(r, nr);
    return nr;
}

/* SIGKILL at 10 seeded random moments, each continuing what the previous left: delays are drawn
 * in [0, T/3] of an uninterrupted sweep's time T, so that the kills fall all along the sweep
 * (startup, calibration, solving, evaluation); every third waits instead for the record's
 * temporary file, to kill while a record is being written. */
Test(sweep, sweep_killed_at_ten_random_points_ends_with_the_uninterrupted_records, .timeout = 300) {
    const char *full = tmp_path("rk-full"), *killed = tmp_path("rk-killed");
    const char *cf = write_config("rk-full.ini", full, grid_small);
    char ck[2048];
    snprintf(ck, sizeof ck, "%s", write_config("rk-killed.ini", killed, grid_small));
    char *out, *er, args[4096];
    snprintf(args, sizeof args, "sweep '%s'", cf);
    double t0 = clock_seconds();
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    double T = clock_seconds() - t0;
    free(out); free(er);
    uint64_t rng = 0x9e3779b97f4a7c15ull;    /* xorshift64, fixed seed: the same kill times each run */
    for (int k = 0; k < 10; k++) {
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
        double delay = (double)(rng >> 11) / 9007199254740992.0 * T / 3;
        pid_t pid = spawn_sweep(ck, "");
        char tmp[4300];
        snprintf(tmp, sizeof tmp, "%s/runs.jsonl.tmp.%ld", killed, (long)pid);
        double start = clock_seconds();
        struct stat st;
        while (clock_seconds() - start < delay && !(k % 3 == 2 && stat(tmp, &st) == 0))
            if (k % 3 != 2) nanosleep(&(struct timespec){0, 1000000}, NULL);
        bool writing = stat(tmp, &st) == 0;
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0),
                  "kill %d: the sweep failed on its own (status %d)", k, status);
        int have = check_records_file(killed);
        cr_log_info("kill %d after %.0f ms (%s%s): %d records", k, 1e3 * (clock_seconds() - start),
                    WIFSIGNALED(status) ? "killed" : "had finished", writing ? ", writing a record" : "", have);
    }
    snprintf(args, sizeof args, "sweep '%s'", ck);
    cr_assert_eq(run_sparq(args, &out, &er), 0, "%s", er);
    free(out); free(er);
    cr_assert_eq(check_records_file(killed), 8);
    expect_same_records(killed, full, 8);
}

/* Relative data paths in a config resolve against the data root: without $SPARQ_DATA that is the
 * shared/data folder beside the binary's checkout, whatever the working folder (issue 13). */
Test(sweep, finds_the_data_beside_the_checkout_from_another_folder_without_sparq_data) {
    unsetenv("SPARQ_DATA");
    if (!path_exists(data_path("stories260K/stories260K.bin")))
        cr_skip_test("no data beside the checkout (%s): $SPARQ_DATA points elsewhere", data_path(""));
    const char *cfg = write_config("elsewhere.ini", tmp_path("out-elsewhere"), grid_small);
    const char *cwd = tmp_path("elsewhere");
    cr_assert_eq(mkdir(cwd, 0755), 0);
    char *out, *er, args[4096];
    snprintf(args, sizeof args, "sweep '%s' --dry-run", cfg);
    cr_assert_eq(run_sparq_in(cwd, args, &out, &er), 0, "%s", er);
    cr_assert(strstr(out, "8 runs: 0 done"), "%s", out);
    free(out); free(er);
}

Test(sweep, missing_data_folder_is_named_in_the_error) {
    const char *missing = tmp_path("no-such-data");
    setenv("SPARQ_DATA", missing, 1);
    const char *cfg = write_config("missing-data.ini", tmp_path("out-missing-data"), grid_small);
    char *out, *er, args[4096];
    snprintf(args, sizeof args, "sweep '%s' --dry-run", cfg);
    cr_assert_eq(run_sparq_in(tmp_path(""), args, &out, &er), 2, "%s", er);
    char want[4200];
    snprintf(want, sizeof want, "%s/stories260K/stories260K.bin: cannot open", missing);
    cr_assert(strstr(er, want), "expected \"%s\" in: %s", want, er);
    free(out); free(er);
}

/* eval.ppl and eval.tasks continue on indented lines: long task lists fit inih's 200-byte lines. */
Test(sweep, eval_lists_continue_on_indented_lines) {
    const char *t = "[sweep]\nmodel = stories260K/stories260K.bin\ncalib = self\n"
                    "eval.tasks = cloze=text/TinyStories-valid-first1000.txt\n"
                    "    ending=text/TinyStories-valid-first1000.txt\n"
                    "eval.ppl = text/TinyStories-valid-first1000.txt:documents:128,\n"
                    "    text/wiki.test.raw:windows:64\n";
    const char *p = tmp_path("continued.ini");
    cr_assert_eq(write_file(p, t, strlen(t)), 0);
    sweep_config *cfg = calloc(1, sizeof *cfg);
    run_spec *r = NULL;
    int n = 0;
    err e = {0};
    cr_assert_eq(config_load(p, cfg, &r, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(cfg->setup.n_tasks, 2);
    cr_assert_str_eq(cfg->setup.tasks[1].name, "ending");
    cr_assert_eq(cfg->setup.n_ppl, 2);
    cr_assert_eq(cfg->setup.ppl[1].seqlen, 64);
    free(r);
    free(cfg);
}
