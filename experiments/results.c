#include "results.h"

#include "../core/text.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/clock.h"
#include "../eval/metrics.h"
#include "options.h"

int results_mkdir(const char *dir, err *e) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return err_set(e, SPARQ_EINPUT, "%s: cannot create folder: %s", buf, strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    return SPARQ_OK;
}

int results_write_atomic(const char *path, const void *text, size_t n, err *e) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return err_set(e, SPARQ_ERUNTIME, "%s: cannot write: %s", tmp, strerror(errno));
    const char *p = text;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            close(fd);
            unlink(tmp);
            return err_set(e, SPARQ_ERUNTIME, "%s: write failed: %s", tmp, strerror(errno));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int rc = err_set(e, SPARQ_ERUNTIME, "%s: cannot replace: %s", path, strerror(errno));
        unlink(tmp);
        return rc;
    }
    return SPARQ_OK;
}

void results_free(cJSON **recs, int n) {
    for (int i = 0; i < n; i++) cJSON_Delete(recs[i]);
    free(recs);
}

int results_load(const char *dir, cJSON ***recs, int *n, err *e) {
    *recs = NULL;
    *n = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/runs.jsonl", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? SPARQ_OK : err_set(e, SPARQ_EINPUT, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = SPARQ_OK, have = 0;
    while (rc == SPARQ_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (len <= 1) continue;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        if (!cJSON_IsObject(j) || !cJSON_IsString(cJSON_GetObjectItem(j, "key"))) {
            cJSON_Delete(j);
            rc = err_set(e, SPARQ_EINPUT, "%s:%d: not a run record (a JSON object with a \"key\")", path, lineno);
            break;
        }
        if (*n == have) {
            have = have ? 2 * have : 64;
            cJSON **r = realloc(*recs, (size_t)have * sizeof *r);
            if (!r) { cJSON_Delete(j); rc = err_set(e, SPARQ_ERUNTIME, "out of memory"); break; }
            *recs = r;
        }
        (*recs)[(*n)++] = j;
    }
    free(line);
    fclose(f);
    if (rc) { results_free(*recs, *n); *recs = NULL; *n = 0; }
    return rc;
}

const cJSON *results_find(cJSON *const *recs, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (strcmp(cJSON_GetObjectItem(recs[i], "key")->valuestring, key) == 0) return recs[i];
    return NULL;
}

int results_append(const char *dir, const cJSON *rec, bool *added, err *e) {
    *added = false;
    char lock[4200], path[4200];
    snprintf(lock, sizeof lock, "%s/runs.lock", dir);
    snprintf(path, sizeof path, "%s/runs.jsonl", dir);
    int fd = open(lock, O_RDWR | O_CREAT, 0666);
    if (fd < 0) return err_set(e, SPARQ_ERUNTIME, "%s: %s", lock, strerror(errno));
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) { close(fd); return err_set(e, SPARQ_ERUNTIME, "%s: flock: %s", lock, strerror(errno)); }
    /* Under the lock: the file as it is now (another shard may have appended), our line, and
     * the whole thing renamed over the old one. */
    char *old = NULL;
    size_t oldn = 0;
    int rc = SPARQ_OK;
    FILE *f = fopen(path, "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, 0, SEEK_SET);
        old = malloc((size_t)sz + 1);
        if (!old || fread(old, 1, (size_t)sz, f) != (size_t)sz) rc = err_set(e, SPARQ_ERUNTIME, "%s: read failed", path);
        oldn = (size_t)sz;
        fclose(f);
    }
    const char *key = cJSON_GetObjectItem(rec, "key")->valuestring;
    char needle[64];
    snprintf(needle, sizeof needle, "\"key\":\"%s\"", key);
    if (!rc && old) {
        old[oldn] = '\0';
        if (strstr(old, needle)) goto unlock;      /* done by someone else meanwhile */
    }
    if (!rc) {
        char *line = cJSON_PrintUnformatted(rec);
        size_t ln = line ? strlen(line) : 0;
        char *all = line ? malloc(oldn + ln + 2) : NULL;
        if (!all) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
        else {
            if (oldn) memcpy(all, old, oldn);
            memcpy(all + oldn, line, ln);
            all[oldn + ln] = '\n';
            rc = results_write_atomic(path, all, oldn + ln + 1, e);
            if (!rc) *added = true;
        }
        free(all);
        free(line);
    }
unlock:
    free(old);
    flock(fd, LOCK_UN);
    close(fd);
    return rc;
}

/* ---- the record ------------------------------------------------------------------------------ */

static void add_config(cJSON *j, const run_setup *s, const run_spec *r) {
    cJSON *c = cJSON_AddObjectToObject(j, "config");
    cJSON_AddStringToObject(c, "model", s->model);
    cJSON_AddStringToObject(c, "calib", s->calib);
    cJSON_AddNumberToObject(c, "nsamples", s->nsamples);
    cJSON_AddNumberToObject(c, "calib_seqlen", s->calib_seqlen);
    cJSON_AddNumberToObject(c, "seed", s->seed);
    options_record(&r->opts, c);
}

/* Storage and rates; the dense baseline counts every linear weight in fp16. */
static int add_storage(cJSON *j, const run_outcome *o) {
    const compress_report *rep = o->report;
    int n = rep ? rep->n : 0;
    metrics_layer *l = n ? calloc((size_t)n, sizeof *l) : NULL;
    if (n && !l) return -1;
    const target *t = &o->spec->opts.target;
    for (int i = 0; i < n; i++) {
        const compress_layer *x = &rep->layers[i];
        l[i] = (metrics_layer){(double)x->rows * x->cols, x->report.sparsity, x->report.bits,
                               x->report.group, x->cols, t->sym};
    }
    metrics_storage st = metrics_model_storage(l, n, t->n, t->m, o->linear_params, o->other_params);
    free(l);
    int q = rep ? t->bits : 16;
    cJSON_AddNumberToObject(j, "sparsity", st.sparsity);
    cJSON_AddNumberToObject(j, "bits", q);
    cJSON_AddNumberToObject(j, "bits_per_weight", st.bpw);
    cJSON_AddNumberToObject(j, "bits_per_weight_theoretical", metrics_bpw_theoretical(st.sparsity, q));
    cJSON_AddNumberToObject(j, "bytes_packed", st.bytes);
    cJSON_AddNumberToObject(j, "tcr", metrics_tcr(st.sparsity, q));
    cJSON_AddNumberToObject(j, "compression_ratio", metrics_compression_ratio(st.sparsity, q));
    return 0;
}

static void add_layers(cJSON *j, const compress_report *rep) {
    cJSON *layers = cJSON_AddArrayToObject(j, "layers");
    for (int i = 0; rep && i < rep->n; i++) {
        const compress_layer *l = &rep->layers[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", l->name);
        cJSON_AddNumberToObject(x, "rows", l->rows);
        cJSON_AddNumberToObject(x, "cols", l->cols);
        cJSON_AddNumberToObject(x, "target_sparsity", l->target_sparsity);
        cJSON_AddNumberToObject(x, "sparsity", l->report.sparsity);
        cJSON_AddNumberToObject(x, "loss", l->report.loss);
        cJSON_AddNumberToObject(x, "damp", l->report.damp);
        cJSON_AddNumberToObject(x, "seconds", l->report.seconds);
        cJSON_AddItemToArray(layers, x);
    }
}

/* v as the shortest decimal that reads back as the same double. cJSON's own printing keeps 15
 * digits whenever they read back within a relative DBL_EPSILON (cJSON 1.7's compare_double), so
 * a perplexity printed by `eval --json` could be an ulp off the one the run computed. The raw
 * item keeps valuedouble too, for readers of the record in memory. Not finite (a stderr of one
 * token is NaN): cJSON's null. */
static void add_exact(cJSON *x, const char *key, double v) {
    if (!isfinite(v)) {
        cJSON_AddNumberToObject(x, key, v);
        return;
    }
    char buf[40];
    for (int p = 15; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, v);
        if (strtod(buf, NULL) == v) break;
    }
    cJSON *n = cJSON_CreateRaw(buf);
    if (n) n->valuedouble = v;
    cJSON_AddItemToObject(x, key, n);
}

void results_ppl_fields(cJSON *x, const ppl_result *p, ppl_protocol protocol, int seqlen) {
    add_exact(x, "ppl", p->ppl);
    add_exact(x, "ppl_stderr", p->ppl_stderr);
    add_exact(x, "nll", p->nll);
    add_exact(x, "nll_stderr", p->nll_stderr);
    cJSON_AddNumberToObject(x, "tokens", (double)p->tokens);
    cJSON_AddStringToObject(x, "protocol", ppl_protocol_name(protocol));
    cJSON_AddNumberToObject(x, "seqlen", seqlen);
}

void results_task_fields(cJSON *x, const zeroshot_result *z) {
    add_exact(x, "acc", z->acc);
    add_exact(x, "acc_stderr", z->acc_stderr);
    if (z->has_acc_norm) {
        add_exact(x, "acc_norm", z->acc_norm);
        add_exact(x, "acc_norm_stderr", z->acc_norm_stderr);
    }
    if (z->has_ppl) {
        add_exact(x, "ppl", z->ppl);
        add_exact(x, "ppl_stderr", z->ppl_stderr);
    }
    add_exact(x, "chance", z->chance);
    cJSON_AddNumberToObject(x, "n", z->n);
}

static void add_evals(cJSON *j, const run_outcome *o) {
    const run_setup *s = o->setup;
    cJSON *ppl = cJSON_AddObjectToObject(j, "ppl");
    for (int i = 0; o->ppl && i < s->n_ppl; i++)
        results_ppl_fields(cJSON_AddObjectToObject(ppl, s->ppl[i].name), &o->ppl[i], s->ppl[i].protocol,
                           o->ppl_seqlen[i]);
    cJSON *tasks = cJSON_AddObjectToObject(j, "tasks");
    for (int i = 0; i < s->n_tasks; i++)
        results_task_fields(cJSON_AddObjectToObject(tasks, s->tasks[i].name), &o->tasks[i]);
}

cJSON *results_record(const run_outcome *o) {
    const run_spec *r = o->spec;
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    /* A sweep's runs have a key and a grid; a single `compress` has neither. */
    if (r->key[0]) cJSON_AddStringToObject(j, "key", r->key);
    cJSON_AddStringToObject(j, "label", r->label);
    if (r->grid[0]) cJSON_AddStringToObject(j, "grid", r->grid);
    cJSON_AddBoolToObject(j, "dense", r->dense);
    add_config(j, o->setup, r);
    /* Not part of the key: it names how reports combine retention and compression. */
    cJSON_AddStringToObject(j, "srcr_formula", o->setup->srcr_formula);
    if (add_storage(j, o)) { cJSON_Delete(j); return NULL; }
    add_layers(j, o->report);
    add_evals(j, o);
    cJSON *sec = cJSON_AddObjectToObject(j, "seconds");
    cJSON_AddNumberToObject(sec, "calib", o->seconds_calib);
    cJSON_AddNumberToObject(sec, "compress", o->seconds_compress);
    cJSON_AddNumberToObject(sec, "eval", o->seconds_eval);
    cJSON_AddNumberToObject(sec, "total", o->seconds_total);
    /* Per block: where the compression's time went (calibration forward, Hessians, solvers). */
    cJSON *blocks = cJSON_AddArrayToObject(sec, "blocks");
    for (int i = 0; o->report && i < o->report->n_blocks; i++) {
        const compress_block *b = &o->report->blocks[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "block", b->index);
        cJSON_AddNumberToObject(x, "forward", b->forward);
        cJSON_AddNumberToObject(x, "hessians", b->hessians);
        cJSON_AddNumberToObject(x, "solve", b->solve);
        cJSON_AddNumberToObject(x, "seconds", b->total);
        cJSON_AddItemToArray(blocks, x);
    }
    cJSON_AddNumberToObject(j, "peak_rss_mb", clock_peak_rss_mb());
    return j;
}

/* ---- sharded evaluations ------------------------------------------------------------------ */

int results_ppl_part_save(const char *path, const ppl_shard_meta *m, const ppl_part *parts,
                          const int *index, int n, const ppl_result *r, err *e) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "sparq_eval_part", 1);
    cJSON_AddStringToObject(j, "model", m->model);
    cJSON_AddStringToObject(j, "text", m->text);
    cJSON_AddStringToObject(j, "protocol", m->protocol);
    cJSON_AddNumberToObject(j, "seqlen", m->seqlen);
    cJSON_AddNumberToObject(j, "limit", m->limit);
    cJSON_AddNumberToObject(j, "shard", m->shard);
    cJSON_AddNumberToObject(j, "shards", m->shards);
    cJSON_AddNumberToObject(j, "sequences", m->sequences);
    cJSON_AddNumberToObject(j, "tokens_forward", (double)r->tokens_forward);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    /* [index, n, sum, mean, m2], the doubles in 17 significant digits, which read back exactly.
     * cJSON's own printing keeps 15 digits whenever they read back within a relative DBL_EPSILON
     * (cJSON 1.7's compare_double), and a part an ulp off moves the merged standard error by an
     * ulp. The values are finite: ppl_score_parts fails otherwise. */
    cJSON *a = cJSON_AddArrayToObject(j, "parts");
    for (int i = 0; i < n; i++) {
        char v[128];
        snprintf(v, sizeof v, "[%d,%ld,%.17g,%.17g,%.17g]", index[i], parts[i].n, parts[i].sum, parts[i].mean,
                 parts[i].m2);
        cJSON_AddItemToArray(a, cJSON_CreateRaw(v));
    }
    char *txt = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!txt) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    int rc = results_write_atomic(path, txt, strlen(txt), e);
    free(txt);
    return rc;
}

static int part_str(const cJSON *j, const char *key, char *out, size_t cap, const char *path, err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(v)) return err_set(e, SPARQ_EINPUT, "%s: %s is missing or not a string", path, key);
    snprintf(out, cap, "%s", v->valuestring);
    return SPARQ_OK;
}

static int part_int(const cJSON *j, const char *key, int lo, int *out, const char *path, err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > 1e9 || v->valuedouble != (int)v->valuedouble)
        return err_set(e, SPARQ_EINPUT, "%s: %s is missing or not an integer >= %d", path, key, lo);
    *out = (int)v->valuedouble;
    return SPARQ_OK;
}

int results_ppl_parts_merge(char *const *paths, int n_paths, ppl_shard_meta *meta, ppl_result *r,
                            err *e) {
    memset(r, 0, sizeof *r);
    ppl_part *all = NULL;
    bool *seen = NULL, *shard_seen = NULL;
    int rc = n_paths > 0 ? SPARQ_OK : err_set(e, SPARQ_EINPUT, "--merge: no part files");
    for (int f = 0; f < n_paths && !rc; f++) {
        const char *path = paths[f];
        char *txt = NULL;
        rc = text_read_file(path, &txt, NULL, e);
        cJSON *j = rc ? NULL : cJSON_Parse(txt);
        free(txt);
        if (!rc && (!j || !cJSON_IsObject(j) || !cJSON_GetObjectItem(j, "sparq_eval_part")))
            rc = err_set(e, SPARQ_EINPUT, "%s: not a part file of `sparq eval --shard`", path);
        ppl_shard_meta m = {0};
        if (!rc) rc = part_str(j, "model", m.model, sizeof m.model, path, e);
        if (!rc) rc = part_str(j, "text", m.text, sizeof m.text, path, e);
        if (!rc) rc = part_str(j, "protocol", m.protocol, sizeof m.protocol, path, e);
        if (!rc) rc = part_int(j, "seqlen", 2, &m.seqlen, path, e);
        if (!rc) rc = part_int(j, "limit", 0, &m.limit, path, e);
        if (!rc) rc = part_int(j, "shards", 1, &m.shards, path, e);
        if (!rc) rc = part_int(j, "shard", 0, &m.shard, path, e);
        if (!rc) rc = part_int(j, "sequences", 1, &m.sequences, path, e);
        if (!rc && m.shard >= m.shards)
            rc = err_set(e, SPARQ_EINPUT, "%s: shard %d of %d", path, m.shard, m.shards);
        if (!rc && f == 0) {
            *meta = m;
            all = calloc((size_t)m.sequences, sizeof *all);
            seen = calloc((size_t)m.sequences, sizeof *seen);
            shard_seen = calloc((size_t)m.shards, sizeof *shard_seen);
            if (!all || !seen || !shard_seen) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
        } else if (!rc && (strcmp(m.model, meta->model) || strcmp(m.text, meta->text) ||
                           strcmp(m.protocol, meta->protocol) || m.seqlen != meta->seqlen ||
                           m.limit != meta->limit || m.shards != meta->shards ||
                           m.sequences != meta->sequences)) {
            rc = err_set(e, SPARQ_EINPUT, "%s: another evaluation (model, text, protocol, seqlen, limit "
                         "or shard count differ from %s)", path, paths[0]);
        }
        if (!rc && shard_seen[m.shard])
            rc = err_set(e, SPARQ_EINPUT, "%s: shard %d/%d is given twice", path, m.shard, m.shards);
        if (!rc) shard_seen[m.shard] = true;
        const cJSON *p, *parts = rc ? NULL : cJSON_GetObjectItem(j, "parts");
        if (!rc && !cJSON_IsArray(parts)) rc = err_set(e, SPARQ_EINPUT, "%s: parts is missing", path);
        cJSON_ArrayForEach(p, parts) {
            if (rc) break;
            double v[5];
            int k = 0;
            const cJSON *x;
            cJSON_ArrayForEach(x, p) if (k < 5 && cJSON_IsNumber(x)) v[k++] = x->valuedouble;
            int idx = k == 5 ? (int)v[0] : -1;
            if (k != 5 || cJSON_GetArraySize(p) != 5 || idx < 0 || idx >= m.sequences || idx != v[0] ||
                idx % m.shards != m.shard || v[1] < 0)
                rc = err_set(e, SPARQ_EINPUT, "%s: a part is not [index, n, sum, mean, m2] of this shard", path);
            else if (seen[idx])
                rc = err_set(e, SPARQ_EINPUT, "%s: sequence %d appears twice", path, idx);
            else {
                seen[idx] = true;
                all[idx] = (ppl_part){(long)v[1], v[2], v[3], v[4]};
            }
        }
        if (!rc) {
            const cJSON *t = cJSON_GetObjectItem(j, "tokens_forward"), *s = cJSON_GetObjectItem(j, "seconds");
            r->tokens_forward += cJSON_IsNumber(t) ? (long)t->valuedouble : 0;
            r->seconds += cJSON_IsNumber(s) ? s->valuedouble : 0;
        }
        cJSON_Delete(j);
    }
    for (int i = 0; !rc && i < meta->shards; i++)
        if (!shard_seen[i]) rc = err_set(e, SPARQ_EINPUT, "--merge: shard %d/%d is missing", i, meta->shards);
    for (int i = 0; !rc && i < meta->sequences; i++)
        if (!seen[i]) rc = err_set(e, SPARQ_EINPUT, "--merge: sequence %d is in no part file", i);
    if (!rc) {
        long fwd = r->tokens_forward;
        double secs = r->seconds;
        rc = ppl_combine(all, meta->sequences, r, e);
        r->tokens_forward = fwd;
        r->seconds = secs;
    }
    free(all);
    free(seen);
    free(shard_seen);
    return rc;
}
