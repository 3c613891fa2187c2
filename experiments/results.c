#include "results.h"

#include <errno.h>
#include <fcntl.h>
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

void results_ppl_fields(cJSON *x, const ppl_result *p, ppl_protocol protocol, int seqlen) {
    cJSON_AddNumberToObject(x, "ppl", p->ppl);
    cJSON_AddNumberToObject(x, "ppl_stderr", p->ppl_stderr);
    cJSON_AddNumberToObject(x, "nll", p->nll);
    cJSON_AddNumberToObject(x, "nll_stderr", p->nll_stderr);
    cJSON_AddNumberToObject(x, "tokens", (double)p->tokens);
    cJSON_AddStringToObject(x, "protocol", ppl_protocol_name(protocol));
    cJSON_AddNumberToObject(x, "seqlen", seqlen);
}

void results_task_fields(cJSON *x, const zeroshot_result *z) {
    cJSON_AddNumberToObject(x, "acc", z->acc);
    cJSON_AddNumberToObject(x, "acc_stderr", z->acc_stderr);
    if (z->has_acc_norm) {
        cJSON_AddNumberToObject(x, "acc_norm", z->acc_norm);
        cJSON_AddNumberToObject(x, "acc_norm_stderr", z->acc_norm_stderr);
    }
    if (z->has_ppl) {
        cJSON_AddNumberToObject(x, "ppl", z->ppl);
        cJSON_AddNumberToObject(x, "ppl_stderr", z->ppl_stderr);
    }
    cJSON_AddNumberToObject(x, "chance", z->chance);
    cJSON_AddNumberToObject(x, "n", z->n);
}

static void add_evals(cJSON *j, const run_outcome *o) {
    const run_setup *s = o->setup;
    cJSON *ppl = cJSON_AddObjectToObject(j, "ppl");
    for (int i = 0; i < s->n_ppl; i++)
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
    cJSON_AddNumberToObject(j, "peak_rss_mb", clock_peak_rss_mb());
    return j;
}
