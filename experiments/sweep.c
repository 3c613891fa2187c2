#define _XOPEN_SOURCE 700   /* realpath */
#include "sweep.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/blas.h"
#include "../core/clock.h"
#include "../core/fileio.h"
#include "../core/text.h"
#include "results.h"
#include "run.h"

static const char *const stage_names[] = {"run", "compress", "eval", "merge"};

int sweep_stage_parse(const char *name, sweep_stage *stage, err *e) {
    for (int i = SWEEP_COMPRESS; i <= SWEEP_MERGE; i++)
        if (strcmp(name, stage_names[i]) == 0) return *stage = (sweep_stage)i, SPARQ_OK;
    return err_set(e, SPARQ_EINPUT, "--stage %s: expected compress, eval or merge", name);
}

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

/* ---- the staged path: OUT/staged/KEY/ between a run's tasks ---------------------------------- */

#define STAGED_PATH (SPEC_PATH + 96)

/* OUT/staged/KEY, or a file in it. */
static void staged_path(const sweep_config *cfg, const run_spec *r, const char *file, char *buf) {
    snprintf(buf, STAGED_PATH, "%s/staged/%s%s%s", cfg->out, r->key, file ? "/" : "", file ? file : "");
}

/* The part file of eval.ppl text i, shard k. */
static void part_path(const sweep_config *cfg, const run_spec *r, int i, int k, char *buf) {
    char name[64];
    snprintf(name, sizeof name, "ppl%d-%dof%d.json", i, k, cfg->eval_shards);
    staged_path(cfg, r, name, buf);
}

/* Where the compressed model is saved: in the config model's own format, which holds all its
 * loader read (a llama2.c file has no rope theta to lose; a GGUF or Hugging Face source keeps its
 * metadata), and in float32, the weights exactly as the compression left them in memory, so the
 * shards score what an in-memory run scores. The dense baseline is the config's model itself. */
static model_format staged_model(const sweep_config *cfg, const run_spec *r, char *buf) {
    if (r->dense) {
        snprintf(buf, STAGED_PATH, "%s", cfg->setup.model);
        return MODEL_FORMAT_AUTO;
    }
    model_format f = model_format_for_path(cfg->setup.model);
    staged_path(cfg, r, f == MODEL_FORMAT_GGUF ? "model.gguf" : f == MODEL_FORMAT_SAFETENSORS ? "model"
                        : "model.bin", buf);
    return f;
}

/* rm -r, for a staged folder once its record is in runs.jsonl. What is already gone is fine: two
 * merges may clean up at once. */
static int remove_tree(const char *path, err *e) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? SPARQ_OK : err_set(e, SPARQ_ERUNTIME, "%s: %s", path, strerror(errno));
    int rc = SPARQ_OK;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return err_set(e, SPARQ_ERUNTIME, "%s: %s", path, strerror(errno));
        for (struct dirent *x; !rc && (x = readdir(d));) {
            if (strcmp(x->d_name, ".") == 0 || strcmp(x->d_name, "..") == 0) continue;
            char sub[PATH_MAX];
            snprintf(sub, sizeof sub, "%s/%s", path, x->d_name);
            rc = remove_tree(sub, e);
        }
        closedir(d);
        if (!rc && rmdir(path) != 0 && errno != ENOENT) rc = err_set(e, SPARQ_ERUNTIME, "%s: cannot remove: %s", path, strerror(errno));
    } else if (unlink(path) != 0 && errno != ENOENT) {
        rc = err_set(e, SPARQ_ERUNTIME, "%s: cannot remove: %s", path, strerror(errno));
    }
    return rc;
}

/* Compress stage: the run without perplexities, its model saved (not the baseline's), and its
 * record written last, so that record.json exists only once everything before it does. */
static int stage_compress(run_context *ctx, const sweep_config *cfg, const run_spec *r, err *e) {
    char dir[STAGED_PATH], model_path[STAGED_PATH], rec_path[STAGED_PATH];
    staged_path(cfg, r, NULL, dir);
    staged_path(cfg, r, "record.json", rec_path);
    run_output out = {.path = NULL, .dtype = DTYPE_F32, .skip_ppl = true};
    out.format = staged_model(cfg, r, model_path);
    if (!r->dense) out.path = model_path;
    cJSON *rec = NULL;
    int rc = results_mkdir(dir, e);
    if (!rc) rc = run_execute(ctx, r, &out, NULL, NULL, &rec, e);
    char *txt = rc ? NULL : cJSON_PrintUnformatted(rec);
    if (!rc && !txt) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (!rc) rc = results_write_atomic(rec_path, txt, strlen(txt), e);
    free(txt);
    cJSON_Delete(rec);
    return rc;
}

/* Eval stage, one text: sequences k, k + K, ... of the tokenized text (a copy cut as `eval
 * --shard` cuts, each sequence keeping its index), scored and saved as a part file. */
static int score_part(run_context *ctx, const sweep_config *cfg, const model *m, const char *model_path,
                      int i, int k, const char *part, err *e) {
    const spec_ppl *p = &cfg->setup.ppl[i];
    const token_seqs *all = NULL;
    int seqlen = 0, K = cfg->eval_shards;
    int rc = run_context_ppl(ctx, i, &all, &seqlen, e);
    if (rc) return rc;
    long ntok = 0;
    for (int s = 0; s < all->n; s++) ntok += all->lens[s];
    token_seqs mine = {0};
    size_t cap = (size_t)(all->n > 0 ? all->n : 1);
    ppl_part *parts = malloc(cap * sizeof *parts);
    int *index = malloc(cap * sizeof *index);
    rc = token_seqs_alloc(&mine, all->n, ntok, e);
    if (!rc && (!parts || !index)) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (!rc) {
        long at = 0;
        for (int s = 0; s < all->n; s++) {
            memcpy(mine.tokens + at, all->tokens + all->offs[s], (size_t)all->lens[s] * sizeof(int));
            mine.lens[s] = all->lens[s];
            mine.offs[s] = at;
            at += all->lens[s];
        }
        mine.unscored = all->unscored;
        ppl_shard(&mine, k, K, index);
    }
    /* More shards than sequences: this shard's part is empty, and still says it was done. */
    ppl_result res = {0};
    if (!rc && mine.n > 0) rc = ppl_score_parts(m, &mine, parts, &res, NULL, NULL, e);
    if (!rc) {
        ppl_shard_meta meta = {.seqlen = seqlen, .limit = cfg->setup.limit, .shard = k, .shards = K,
                               .sequences = all->n};
        snprintf(meta.model, sizeof meta.model, "%s", model_path);
        snprintf(meta.text, sizeof meta.text, "%s", p->path);
        snprintf(meta.protocol, sizeof meta.protocol, "%s", ppl_protocol_name(p->protocol));
        rc = results_ppl_part_save(part, &meta, parts, index, mine.n, &res, e);
    }
    free(parts);
    free(index);
    token_seqs_free(&mine);
    return rc;
}

/* Eval stage: shard k of every text of one run, on its saved model; parts already there are kept. */
static int stage_eval(run_context *ctx, const sweep_config *cfg, const run_spec *r, int k, err *e) {
    char rec_path[STAGED_PATH], model_path[STAGED_PATH], part[STAGED_PATH];
    staged_path(cfg, r, "record.json", rec_path);
    if (!path_exists(rec_path))
        return err_set(e, SPARQ_ERUNTIME, "not compressed yet (no %s): its --stage compress task has not "
                       "finished", rec_path);
    staged_model(cfg, r, model_path);
    model *m = NULL;
    int rc = model_load(&m, model_path, e);
    for (int i = 0; !rc && i < cfg->setup.n_ppl; i++) {
        part_path(cfg, r, i, k, part);
        if (!path_exists(part)) rc = score_part(ctx, cfg, m, model_path, i, k, part, e);
    }
    model_free(m);
    return rc;
}

/* Whether shard k of every text of the run is scored. */
static bool parts_done(const sweep_config *cfg, const run_spec *r, int k) {
    char part[STAGED_PATH];
    for (int i = 0; i < cfg->setup.n_ppl; i++) {
        part_path(cfg, r, i, k, part);
        if (!path_exists(part)) return false;
    }
    return true;
}

/* Merge stage, one run: its staged record with each text's parts merged in (the fields and order
 * of an in-memory run's record; eval seconds add the shards'), appended to runs.jsonl. When a
 * part or the record is missing, nothing is written and `missing` names what. */
static int merge_run(const sweep_config *cfg, const run_spec *r, bool dry_run, char *missing, size_t nm,
                     cJSON **merged, err *e) {
    int K = cfg->eval_shards, n_ppl = cfg->setup.n_ppl;
    char rec_path[STAGED_PATH];
    staged_path(cfg, r, "record.json", rec_path);
    *merged = NULL;
    missing[0] = '\0';
    if (!path_exists(rec_path)) return snprintf(missing, nm, "not compressed"), SPARQ_OK;
    int have = 0;
    for (int k = 0; k < K; k++) have += parts_done(cfg, r, k);
    if (have < K) return snprintf(missing, nm, "%d of %d eval shards scored", have, K), SPARQ_OK;
    char *txt = NULL;
    int rc = text_read_file(rec_path, &txt, NULL, e);
    cJSON *rec = rc ? NULL : cJSON_Parse(txt);
    free(txt);
    cJSON *ppl = rec ? cJSON_GetObjectItem(rec, "ppl") : NULL, *sec = rec ? cJSON_GetObjectItem(rec, "seconds") : NULL;
    if (!rc && (!cJSON_IsObject(ppl) || ppl->child || !cJSON_IsObject(sec)))
        rc = err_set(e, SPARQ_EINPUT, "%s: not a staged record (an object with an empty \"ppl\")", rec_path);
    char **paths = calloc((size_t)K, sizeof *paths), *names = malloc((size_t)K * STAGED_PATH);
    for (int k = 0; paths && names && k < K; k++) paths[k] = names + (size_t)k * STAGED_PATH;
    if (!rc && (!paths || !names)) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    double seconds = 0;
    for (int i = 0; !rc && i < n_ppl; i++) {
        for (int k = 0; k < K; k++) part_path(cfg, r, i, k, paths[k]);
        const spec_ppl *p = &cfg->setup.ppl[i];
        ppl_shard_meta meta;
        ppl_result res;
        rc = results_ppl_parts_merge(paths, K, &meta, &res, e);
        if (!rc && strcmp(meta.protocol, ppl_protocol_name(p->protocol)) != 0)
            rc = err_set(e, SPARQ_EINPUT, "%s: protocol %s, the config says %s", paths[0], meta.protocol,
                         ppl_protocol_name(p->protocol));
        if (!rc) results_ppl_fields(cJSON_AddObjectToObject(ppl, p->name), &res, p->protocol, meta.seqlen);
        seconds += res.seconds;
    }
    free(paths);
    free(names);
    if (!rc) {
        cJSON *ev = cJSON_GetObjectItem(sec, "eval"), *tot = cJSON_GetObjectItem(sec, "total");
        if (cJSON_IsNumber(ev)) cJSON_SetNumberHelper(ev, ev->valuedouble + seconds);
        if (cJSON_IsNumber(tot)) cJSON_SetNumberHelper(tot, tot->valuedouble + seconds);
    }
    bool added = false;
    if (!rc && !dry_run) rc = results_append(cfg->out, rec, &added, e);
    if (rc) cJSON_Delete(rec);
    else *merged = rec;
    return rc;
}

/* Merge stage: every valid run of this shard. Folders of runs already recorded go (a merge
 * killed between its append and the removal leaves one). */
static int stage_merge(const sweep_config *cfg, const run_spec *runs, int n, cJSON **recs, int nrec,
                       const sweep_options *o, err *e) {
    int merged = 0, waiting = 0, failed = 0, recorded = 0;
    for (int i = 0; i < n; i++) {
        const run_spec *r = &runs[i];
        if (r->invalid[0] || i % o->shard_n != o->shard_i) continue;
        char dir[STAGED_PATH], missing[128];
        staged_path(cfg, r, NULL, dir);
        err re = {0};
        int rc = SPARQ_OK;
        cJSON *rec = NULL;
        if (results_find(recs, nrec, r->key)) {
            recorded++;
            if (!o->dry_run) rc = remove_tree(dir, &re);
        } else {
            rc = merge_run(cfg, r, o->dry_run, missing, sizeof missing, &rec, &re);
            if (!rc && !rec) {
                waiting++;
                note(o, o->dry_run ? SWEEP_NOTE_PLAN : SWEEP_NOTE_PROGRESS, "waiting  %s  %-40s %s", r->key,
                     r->label, missing);
            }
            if (!rc && rec) {
                char s[128];
                summary(rec, s, sizeof s);
                note(o, o->dry_run ? SWEEP_NOTE_PLAN : SWEEP_NOTE_PROGRESS, "%s  %s  %-40s %s",
                     o->dry_run ? "ready " : "merged", r->key, r->label, s);
                merged++;
                if (!o->dry_run) rc = remove_tree(dir, &re);
            }
            cJSON_Delete(rec);
        }
        if (rc) {
            failed++;
            note(o, SWEEP_NOTE_PROGRESS, "FAILED %s: %s", r->label, re.msg);
        }
    }
    char staged[SPEC_PATH + 16];
    snprintf(staged, sizeof staged, "%s/staged", cfg->out);
    if (!o->dry_run) rmdir(staged);     /* once empty: no run is staged any more */
    note(o, o->dry_run ? SWEEP_NOTE_PLAN : SWEEP_NOTE_PROGRESS, "merge %s: %d %s, %d already recorded, "
         "%d waiting", cfg->source, merged, o->dry_run ? "ready" : "merged", recorded, waiting);
    if (failed) return err_set(e, SPARQ_ERUNTIME, "%d run%s failed to merge (see the lines above)", failed,
                               failed > 1 ? "s" : "");
    if (waiting && !o->dry_run)
        return err_set(e, SPARQ_ERUNTIME, "%d run%s not finished (see the lines above): rerun the "
                       "compress and eval stages (submit.sh), then merge again", waiting, waiting > 1 ? "s are" : " is");
    return SPARQ_OK;
}

/* ---- work items ------------------------------------------------------------------------------ */

/* Item w of the stage: its run, and its eval shard (SWEEP_EVAL). */
static int item_run(const sweep_config *cfg, const sweep_options *o, int w, int *k) {
    int K = o->stage == SWEEP_EVAL ? cfg->eval_shards : 1;
    *k = w % K;
    return w / K;
}

/* What is left of item w: "pending" when it is to be done, else why not. */
static const char *item_status(const sweep_config *cfg, const sweep_options *o, const run_spec *runs,
                               cJSON **recs, int nrec, int w) {
    int k, i = item_run(cfg, o, w, &k);
    const run_spec *r = &runs[i];
    if (r->invalid[0]) return "invalid";
    if (results_find(recs, nrec, r->key)) return "done";
    char rec_path[STAGED_PATH];
    staged_path(cfg, r, "record.json", rec_path);
    if (o->stage == SWEEP_COMPRESS && path_exists(rec_path)) return "compressed";
    if (o->stage == SWEEP_EVAL && parts_done(cfg, r, k)) return "scored";
    return "pending";
}

static void item_label(const sweep_config *cfg, const sweep_options *o, const run_spec *runs, int w,
                       char *buf, size_t n) {
    int k, i = item_run(cfg, o, w, &k);
    if (o->stage == SWEEP_EVAL) snprintf(buf, n, "%s [eval %d/%d]", runs[i].label, k, cfg->eval_shards);
    else snprintf(buf, n, "%s", runs[i].label);
}

/* One item of the stage; `said` gets what the progress line shows. */
static int do_item(run_context *ctx, const sweep_config *cfg, const sweep_options *o, const run_spec *runs,
                   int w, char *said, size_t n, err *e) {
    int k, i = item_run(cfg, o, w, &k);
    const run_spec *r = &runs[i];
    said[0] = '\0';
    if (o->stage == SWEEP_COMPRESS) {
        int rc = stage_compress(ctx, cfg, r, e);
        if (!rc) snprintf(said, n, "staged, perplexities pending");
        return rc;
    }
    if (o->stage == SWEEP_EVAL) {
        int rc = stage_eval(ctx, cfg, r, k, e);
        if (!rc) snprintf(said, n, "scored");
        return rc;
    }
    cJSON *rec = NULL;
    bool added = false;
    int rc = run_execute(ctx, r, NULL, NULL, NULL, &rec, e);
    if (!rc) rc = results_append(cfg->out, rec, &added, e);
    if (!rc) {
        summary(rec, said, n);
        if (!added) snprintf(said + strlen(said), n - strlen(said), " (already recorded by another shard)");
    }
    cJSON_Delete(rec);
    return rc;
}

/* Worker: the plan entries with position % jobs == worker. Returns the number of failed items. */
static int work(run_context *ctx, const sweep_config *cfg, const run_spec *runs, const int *plan, int np,
                int worker, int jobs, const sweep_options *o) {
    int failed = 0, done = 0, mine = 0;
    for (int p = worker; p < np; p += jobs) mine++;
    double t0 = clock_seconds();
    for (int p = worker; p < np; p += jobs) {
        char label[256], said[256];
        item_label(cfg, o, runs, plan[p], label, sizeof label);
        err re = {0};
        double a = clock_seconds();
        int x = do_item(ctx, cfg, o, runs, plan[p], said, sizeof said, &re);
        done++;
        double el = clock_seconds() - t0, eta = el / done * (mine - done);
        if (x) {
            failed++;
            note(o, SWEEP_NOTE_PROGRESS, "[%d/%d] FAILED %s: %s", done, mine, label, re.msg);
        } else {
            note(o, SWEEP_NOTE_PROGRESS, "[%d/%d]%s %-40s %s  %.1f s, eta %.0f s", done, mine,
                 jobs > 1 ? " worker" : "", label, said, clock_seconds() - a, eta);
        }
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
    if (o->stage != SWEEP_RUN && cfg->eval_shards < 1)
        return err_set(e, SPARQ_EINPUT, "--stage %s: %s has no eval_shards = K in [sweep]", stage_names[o->stage],
                       cfg->source);
    int threads = o->threads > 0 ? o->threads : blas_threads();
    /* Forked workers inherit the context loaded here, so the model is loaded once. libgomp does
     * not survive a fork once its thread pool exists: with workers, the parent loads on one
     * thread and each child widens to its share after the fork. */
    blas_set_threads(o->jobs > 1 ? 1 : threads);
    char cache[SPEC_PATH + 16];
    snprintf(cache, sizeof cache, "%s/cache", cfg->out);
    /* Only stages that compress change the context's model, and need its pristine copy. */
    bool reuse = o->stage == SWEEP_RUN || o->stage == SWEEP_COMPRESS;
    run_context *ctx = NULL;
    int rc = run_context_new(&ctx, &cfg->setup, reuse, o->dry_run ? NULL : cache, e);
    if (!rc) rc = sweep_prepare(ctx, runs, n, e);
    /* The eval stage loads each model it scores (the dense baseline's too): the config's model,
     * needed until here for the keys and checks, need not be held beside a big saved one. */
    if (!rc && o->stage == SWEEP_EVAL) run_context_release_model(ctx);
    cJSON **recs = NULL;
    int nrec = 0;
    if (!rc && !o->dry_run) rc = results_mkdir(cfg->out, e);   /* a dry run writes nothing */
    if (!rc) rc = results_load(cfg->out, &recs, &nrec, e);
    if (!rc && o->stage == SWEEP_MERGE) {
        rc = stage_merge(cfg, runs, n, recs, nrec, o, e);
        results_free(recs, nrec);
        run_context_free(ctx);
        return rc;
    }
    long items = (long)n * (o->stage == SWEEP_EVAL ? cfg->eval_shards : 1);
    if (!rc && items > 1 << 30) rc = err_set(e, SPARQ_EINPUT, "%ld work items", items);
    int *plan = rc ? NULL : malloc((size_t)(items > 0 ? items : 1) * sizeof(int)), np = 0, ninvalid = 0, ndone = 0;
    if (!rc && !plan) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (rc) { results_free(recs, nrec); run_context_free(ctx); return rc; }
    for (int w = 0; w < (int)items; w++) {
        bool mine = w % o->shard_n == o->shard_i;
        const char *status = item_status(cfg, o, runs, recs, nrec, w);
        bool pending = strcmp(status, "pending") == 0;
        int k, i = item_run(cfg, o, w, &k);
        if (o->dry_run) {
            char label[256];
            item_label(cfg, o, runs, w, label, sizeof label);
            note(o, SWEEP_NOTE_PLAN, "%4d  %s  %-11s  %-44s %s", w, runs[i].key,
                 pending && !mine ? "other shard" : status, label, runs[i].invalid);
        }
        if (runs[i].invalid[0]) {
            ninvalid++;
            if (!o->dry_run && k == 0)
                note(o, SWEEP_NOTE_PROGRESS, "invalid: [grid.%s] %s: %s", runs[i].grid, runs[i].label,
                     runs[i].invalid);
        } else if (!pending) {
            ndone++;
        } else if (mine) {
            plan[np++] = w;
        }
    }
    results_free(recs, nrec);
    const char *what = o->stage == SWEEP_EVAL ? "eval shards" : "runs";
    char stage[32] = "";
    if (o->stage != SWEEP_RUN) snprintf(stage, sizeof stage, " --stage %s", stage_names[o->stage]);
    if (o->dry_run) {
        note(o, SWEEP_NOTE_PLAN, "%d %s: %d done, %d to run in this shard, %d invalid", (int)items, what, ndone, np,
             ninvalid);
        free(plan);
        run_context_free(ctx);
        return SPARQ_OK;
    }
    note(o, SWEEP_NOTE_PROGRESS, "sweep %s%s: %d %s, %d done, %d to run here (shard %d/%d, %d jobs), %d invalid -> %s",
         cfg->source, stage, (int)items, what, ndone, np, o->shard_i, o->shard_n, o->jobs, ninvalid, cfg->out);
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
    if (failed) return err_set(e, SPARQ_ERUNTIME, "%d %s failed (see the lines above); the others are recorded",
                               failed, o->stage == SWEEP_EVAL ? "eval shards" : failed > 1 ? "runs" : "run");
    return SPARQ_OK;
}

/* ---- SLURM scripts ---------------------------------------------------------------------------- */

/* s in single quotes for sh ('\'' for a quote inside); the result is cut at n bytes. */
static const char *sh_quote(const char *s, char *buf, size_t n) {
    size_t w = 0;
    if (n < 3) return "''";
    buf[w++] = '\'';
    for (; *s && w + 6 < n; s++) {
        if (*s == '\'') { memcpy(buf + w, "'\\''", 4); w += 4; }
        else buf[w++] = *s;
    }
    buf[w++] = '\'';
    buf[w] = '\0';
    return buf;
}

/* The absolute form of a path that exists (tasks may start in any folder); as given otherwise. */
static void absolute(const char *path, char *buf) {
    char r[PATH_MAX];
    snprintf(buf, PATH_MAX, "%s", realpath(path, r) ? r : path);
}

/* Room for a script: its text and up to five paths, three of them quoted (each quote 4 bytes). */
#define SCRIPT_MAX (16 * PATH_MAX)

/* One script, written atomically. */
static int write_script(const char *dir, const char *name, const char *text, err *e) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return results_write_atomic(path, text, strlen(text), e);
}

int sweep_write_slurm(const sweep_config *cfg, int n, const char *config_path, const char *sparq_path,
                      err *e) {
    int rc = results_mkdir(cfg->out, e);
    if (rc) return rc;
    char out_abs[PATH_MAX], cfg_abs[PATH_MAX], bin_abs[PATH_MAX];
    absolute(cfg->out, out_abs);
    absolute(config_path, cfg_abs);
    absolute(sparq_path, bin_abs);
    char qo[2 * PATH_MAX], qc[2 * PATH_MAX], qb[2 * PATH_MAX];
    sh_quote(out_abs, qo, sizeof qo);
    sh_quote(cfg_abs, qc, sizeof qc);
    sh_quote(bin_abs, qb, sizeof qb);
    int K = cfg->eval_shards;
    char *text = malloc(SCRIPT_MAX);
    if (!text) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    /* The log folder is the results folder: SLURM opens --output before the task runs. */
    if (!K) {
        snprintf(text, SCRIPT_MAX,
                 "#!/bin/sh\n"
                 "# One grid point per array task; records meet in %s/runs.jsonl (flock-protected).\n"
                 "#SBATCH --job-name=sparq-sweep\n#SBATCH --array=0-%d\n#SBATCH --cpus-per-task=2\n"
                 "#SBATCH --output=%s/slurm-%%A_%%a.log\n"
                 "exec %s sweep %s --out %s --shard \"$SLURM_ARRAY_TASK_ID/%d\"\n",
                 out_abs, n - 1, out_abs, qb, qc, qo, n);
        rc = write_script(out_abs, "sweep.slurm", text, e);
    } else {
        snprintf(text, SCRIPT_MAX,
                 "#!/bin/sh\n"
                 "# Stage 1 of 3: compress one grid point per array task and save it, with its record\n"
                 "# but the perplexities, to %s/staged/KEY/ (done points are skipped).\n"
                 "#SBATCH --job-name=sparq-compress\n#SBATCH --array=0-%d\n#SBATCH --cpus-per-task=2\n"
                 "#SBATCH --output=%s/slurm-%%A_%%a.log\n"
                 "exec %s sweep %s --out %s --stage compress --shard \"$SLURM_ARRAY_TASK_ID/%d\"\n",
                 out_abs, n - 1, out_abs, qb, qc, qo, n);
        rc = write_script(out_abs, "sweep.slurm", text, e);
        snprintf(text, SCRIPT_MAX,
                 "#!/bin/sh\n"
                 "# Stage 2 of 3: task T scores eval shard T %% %d of grid point T / %d (sequences\n"
                 "# shard, shard + %d, ... of every eval.ppl text) on the saved model into a part file.\n"
                 "#SBATCH --job-name=sparq-eval\n#SBATCH --array=0-%ld\n#SBATCH --cpus-per-task=2\n"
                 "#SBATCH --output=%s/slurm-%%A_%%a.log\n"
                 "exec %s sweep %s --out %s --stage eval --shard \"$SLURM_ARRAY_TASK_ID/%ld\"\n",
                 K, K, K, (long)n * K - 1, out_abs, qb, qc, qo, (long)n * K);
        if (!rc) rc = write_script(out_abs, "eval.slurm", text, e);
    }
    /* The report is made of whatever is recorded, even when a run is missing: the merge's
     * status is the job's. */
    char merge[6 * PATH_MAX + 128] = "";
    if (K) snprintf(merge, sizeof merge, "# Stage 3 of 3: each run's parts merged into its record in runs.jsonl.\n"
                    "%s sweep %s --out %s --stage merge\nst=$?\n", qb, qc, qo);
    snprintf(text, SCRIPT_MAX,
             "#!/bin/sh\n#SBATCH --job-name=sparq-report\n#SBATCH --output=%s/slurm-report.log\n"
             "%s%s report %s || exit 1\nexit %s\n", out_abs, merge, qb, qo, K ? "$st" : "0");
    if (!rc) rc = write_script(out_abs, "report.slurm", text, e);
    /* afterany, not afterok: one failed task must not hold back every other run (afterok would
     * leave the later jobs pending forever). A run whose task failed fails its later tasks by
     * name, and rerunning this script redoes only what is missing. --parsable may print
     * "id;cluster". */
    if (!K)
        snprintf(text, SCRIPT_MAX,
                 "#!/bin/sh\n# Submit the sweep array, then the report once every task has ended.\nset -e\n"
                 "jid=$(sbatch --parsable %s/sweep.slurm)\n"
                 "sbatch --dependency=afterany:\"${jid%%%%;*}\" %s/report.slurm\n", qo, qo);
    else
        snprintf(text, SCRIPT_MAX,
                 "#!/bin/sh\n# Submit the compress array, the eval array once it has ended, then the merge and\n"
                 "# the report. Rerunning it redoes only what is missing.\nset -e\n"
                 "cjid=$(sbatch --parsable %s/sweep.slurm)\n"
                 "ejid=$(sbatch --parsable --dependency=afterany:\"${cjid%%%%;*}\" %s/eval.slurm)\n"
                 "sbatch --dependency=afterany:\"${ejid%%%%;*}\" %s/report.slurm\n", qo, qo, qo);
    if (!rc) rc = write_script(out_abs, "submit.sh", text, e);
    free(text);
    return rc;
}
