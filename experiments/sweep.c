#include "sweep.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/blas.h"
#include "../core/clock.h"
#include "results.h"
#include "run.h"

static void note(const sweep_options *o, sweep_note_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note(const sweep_options *o, sweep_note_kind kind, const char *fmt, ...) {
    if (!o->note) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->note(o->note_ctx, kind, line);
}

/* A short summary of a record for the progress line: the first perplexity. */
static void summary(const cJSON *rec, char *buf, size_t n) {
    const cJSON *ppl = cJSON_GetObjectItem(rec, "ppl");
    const cJSON *first = ppl ? ppl->child : NULL;
    if (first) snprintf(buf, n, "%s ppl %.4g", first->string, cJSON_GetObjectItem(first, "ppl")->valuedouble);
    else buf[0] = '\0';
}

/* Worker: the plan entries with position % jobs == worker. Returns the number of failed runs. */
static int work(run_context *ctx, const sweep_config *cfg, const run_spec *runs, const int *plan, int np,
                int worker, int jobs, const sweep_options *o) {
    int failed = 0, done = 0, mine = 0;
    for (int p = worker; p < np; p += jobs) mine++;
    double t0 = clock_seconds();
    for (int p = worker; p < np; p += jobs) {
        const run_spec *r = &runs[plan[p]];
        cJSON *rec = NULL;
        err re = {0};
        double a = clock_seconds();
        int x = run_execute(ctx, r, NULL, NULL, NULL, &rec, &re);
        bool added = false;
        if (!x) x = results_append(cfg->out, rec, &added, &re);
        done++;
        double el = clock_seconds() - t0, eta = el / done * (mine - done);
        if (x) {
            failed++;
            note(o, SWEEP_NOTE_PROGRESS, "[%d/%d] FAILED %s: %s", done, mine, r->label, re.msg);
        } else {
            char s[128];
            summary(rec, s, sizeof s);
            note(o, SWEEP_NOTE_PROGRESS, "[%d/%d]%s %-40s %s  %.1f s, eta %.0f s%s", done, mine,
                 jobs > 1 ? " worker" : "", r->label, s, clock_seconds() - a, eta,
                 added ? "" : " (already recorded by another shard)");
        }
        cJSON_Delete(rec);
    }
    return failed;
}

/* Keys and checks need the model: every point against every layer of it, so that e.g. 4:8 on
 * a layer of 172 inputs is reported before anything runs. */
int sweep_prepare(run_context *ctx, run_spec *runs, int n, err *e) {
    for (int i = 0; i < n; i++) {
        err ce = {0};
        if (!runs[i].invalid[0] && run_check(ctx, &runs[i], &ce))
            snprintf(runs[i].invalid, sizeof runs[i].invalid, "%.255s", ce.msg);
        int rc = run_key(ctx, &runs[i], e);
        if (rc) return rc;
    }
    return SPARQ_OK;
}

int sweep_execute(const sweep_config *cfg, run_spec *runs, int n, const sweep_options *o, err *e) {
    int threads = o->threads > 0 ? o->threads : blas_threads();
    /* Forked workers inherit the context loaded here, so the model is loaded once. libgomp does
     * not survive a fork once its thread pool exists: with workers, the parent loads on one
     * thread and each child widens to its share after the fork. */
    blas_set_threads(o->jobs > 1 ? 1 : threads);
    char cache[SPEC_PATH + 16];
    snprintf(cache, sizeof cache, "%s/cache", cfg->out);
    run_context *ctx = NULL;
    int rc = run_context_new(&ctx, &cfg->setup, true, o->dry_run ? NULL : cache, e);
    if (!rc) rc = sweep_prepare(ctx, runs, n, e);
    cJSON **recs = NULL;
    int nrec = 0;
    if (!rc && !o->dry_run) rc = results_mkdir(cfg->out, e);   /* a dry run writes nothing */
    if (!rc) rc = results_load(cfg->out, &recs, &nrec, e);
    int *plan = rc ? NULL : malloc((size_t)(n > 0 ? n : 1) * sizeof(int)), np = 0, ninvalid = 0, ndone = 0;
    if (!rc && !plan) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (rc) { results_free(recs, nrec); run_context_free(ctx); return rc; }
    for (int i = 0; i < n; i++) {
        bool mine = i % o->shard_n == o->shard_i;
        bool done = results_find(recs, nrec, runs[i].key) != NULL;
        const char *status = runs[i].invalid[0] ? "invalid" : done ? "done" : mine ? "pending" : "other shard";
        if (o->dry_run)
            note(o, SWEEP_NOTE_PLAN, "%4d  %s  %-11s  %-44s %s", i, runs[i].key, status, runs[i].label,
                 runs[i].invalid);
        if (runs[i].invalid[0]) {
            ninvalid++;
            if (!o->dry_run)
                note(o, SWEEP_NOTE_PROGRESS, "invalid: [grid.%s] %s: %s", runs[i].grid, runs[i].label,
                     runs[i].invalid);
        } else if (done) {
            ndone++;
        } else if (mine) {
            plan[np++] = i;
        }
    }
    results_free(recs, nrec);
    if (o->dry_run) {
        note(o, SWEEP_NOTE_PLAN, "%d runs: %d done, %d to run in this shard, %d invalid", n, ndone, np, ninvalid);
        free(plan);
        run_context_free(ctx);
        return SPARQ_OK;
    }
    note(o, SWEEP_NOTE_PROGRESS, "sweep %s: %d runs, %d done, %d to run here (shard %d/%d, %d jobs), %d invalid -> %s",
         cfg->source, n, ndone, np, o->shard_i, o->shard_n, o->jobs, ninvalid, cfg->out);
    int jobs = o->jobs < np ? o->jobs : (np > 0 ? np : 1);
    int failed = 0;
    if (jobs <= 1) {
        blas_set_threads(threads);
        failed = work(ctx, cfg, runs, plan, np, 0, 1, o);
    } else {
        /* Each worker has its share of the threads; records meet in runs.jsonl under its lock,
         * so the workers need nothing else in common. */
        pid_t *pids = calloc((size_t)jobs, sizeof(pid_t));
        for (int w = 0; pids && w < jobs; w++) {
            pid_t pid = fork();
            if (pid == 0) {
                blas_set_threads(threads / jobs > 0 ? threads / jobs : 1);
                int f = work(ctx, cfg, runs, plan, np, w, jobs, o);
                _exit(f > 250 ? 250 : f);     /* the exit status carries the failure count */
            }
            pids[w] = pid;
        }
        if (!pids) failed = np;
        for (int w = 0; pids && w < jobs; w++) {
            int st = 0;
            if (pids[w] > 0 && waitpid(pids[w], &st, 0) > 0)
                failed += WIFEXITED(st) ? WEXITSTATUS(st) : 1;
            if (pids[w] < 0) failed++;
        }
        free(pids);
    }
    free(plan);
    run_context_free(ctx);
    if (failed) return err_set(e, SPARQ_ERUNTIME, "%d run%s failed (see the lines above); the others are recorded",
                               failed, failed > 1 ? "s" : "");
    return SPARQ_OK;
}

int sweep_write_slurm(const sweep_config *cfg, int n, const char *config_path, err *e) {
    int rc = results_mkdir(cfg->out, e);
    if (rc) return rc;
    char path[SPEC_PATH + 32], text[8192];
    snprintf(path, sizeof path, "%s/sweep.slurm", cfg->out);
    snprintf(text, sizeof text,
             "#!/bin/sh\n"
             "# One grid point per array task; records meet in %s/runs.jsonl (flock-protected).\n"
             "#SBATCH --job-name=sparq-sweep\n#SBATCH --array=0-%d\n#SBATCH --cpus-per-task=2\n"
             "#SBATCH --output=%s/slurm-%%A_%%a.log\n"
             "sparq sweep '%s' --out '%s' --shard \"$SLURM_ARRAY_TASK_ID/%d\"\n",
             cfg->out, n - 1, cfg->out, config_path, cfg->out, n);
    rc = results_write_atomic(path, text, strlen(text), e);
    snprintf(path, sizeof path, "%s/report.slurm", cfg->out);
    snprintf(text, sizeof text,
             "#!/bin/sh\n#SBATCH --job-name=sparq-report\n#SBATCH --output=%s/slurm-report.log\n"
             "sparq report '%s'\n", cfg->out, cfg->out);
    if (!rc) rc = results_write_atomic(path, text, strlen(text), e);
    snprintf(path, sizeof path, "%s/submit.sh", cfg->out);
    snprintf(text, sizeof text,
             "#!/bin/sh\n# Submit the sweep array, then the report once every task has ended.\nset -e\n"
             "jid=$(sbatch --parsable '%s/sweep.slurm')\n"
             "sbatch --dependency=afterany:\"$jid\" '%s/report.slurm'\n", cfg->out, cfg->out);
    if (!rc) rc = results_write_atomic(path, text, strlen(text), e);
    return rc;
}
