#include "run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../eval/metrics.h"
#include "../eval/perplexity.h"
#include "../eval/zeroshot.h"
#include "calib.h"
#include "compress.h"
#include "results.h"

struct run_context {
    const sweep_config *cfg;
    model      *pristine, *work;
    tokenizer  *tok;
    uint64_t    tok_hash, model_hash;
    token_seqs  calib;
    bool        have_calib;
    token_seqs  ppl[SWEEP_MAX_EVALS];
    bool        have_ppl[SWEEP_MAX_EVALS];
    zeroshot_task tasks[SWEEP_MAX_TASKS];     /* loaded and tokenized once per process */
    bool        have_task[SWEEP_MAX_TASKS];
    char        cache[SWEEP_PATH + 16];
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

const model *run_context_model(const run_context *ctx) { return ctx->work; }

void run_context_free(run_context *ctx) {
    if (!ctx) return;
    model_free(ctx->pristine);
    model_free(ctx->work);
    tokenizer_free(ctx->tok);
    token_seqs_free(&ctx->calib);
    for (int i = 0; i < SWEEP_MAX_EVALS; i++) token_seqs_free(&ctx->ppl[i]);
    for (int i = 0; i < SWEEP_MAX_TASKS; i++)
        if (ctx->have_task[i]) zeroshot_task_free(&ctx->tasks[i]);
    free(ctx);
}

int run_context_new(run_context **out, const sweep_config *cfg, err *e) {
    *out = NULL;
    run_context *c = calloc(1, sizeof *c);
    if (!c) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    c->cfg = cfg;
    snprintf(c->cache, sizeof c->cache, "%s/cache", cfg->out);
    int rc = model_load(&c->pristine, cfg->model, e);
    if (!rc) rc = model_load(&c->work, cfg->model, e);
    if (!rc) rc = sweep_file_hash(cfg->model, &c->model_hash, e);
    if (!rc) {
        char tp[SWEEP_PATH + 32];
        if (cfg->tokenizer[0]) snprintf(tp, sizeof tp, "%s", cfg->tokenizer);
        else {
            const char *slash = strrchr(cfg->model, '/');
            snprintf(tp, sizeof tp, "%.*stok%d.bin", slash ? (int)(slash - cfg->model) + 1 : 0, cfg->model,
                     c->pristine->cfg.vocab_size);
        }
        rc = tokenizer_load(&c->tok, tp, e);
        if (!rc) rc = sweep_file_hash(tp, &c->tok_hash, e);
        if (!rc && tokenizer_vocab_size(c->tok) != c->pristine->cfg.vocab_size)
            rc = err_set(e, SPARQ_EINPUT, "%s has %d tokens but model %s has a vocabulary of %d", tp,
                         tokenizer_vocab_size(c->tok), cfg->model, c->pristine->cfg.vocab_size);
    }
    if (!rc) rc = results_mkdir(c->cache, e);
    if (rc) { run_context_free(c); return rc; }
    *out = c;
    return SPARQ_OK;
}

/* ---- token caches: "SPQT", n, ntok, lens[n], tokens[ntok] -------------------------------- */

static int cache_read(const char *path, token_seqs *s) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char magic[4];
    int32_t n;
    int64_t ntok;
    int rc = -1;
    memset(s, 0, sizeof *s);
    if (fread(magic, 4, 1, f) == 1 && memcmp(magic, "SPQT", 4) == 0 && fread(&n, 4, 1, f) == 1 &&
        fread(&ntok, 8, 1, f) == 1 && n > 0 && ntok > 0 && ntok < (1ll << 40) &&
        token_seqs_alloc(s, n, (long)ntok, NULL) == 0) {
        if (fread(s->lens, sizeof(int), (size_t)n, f) == (size_t)n &&
            fread(s->tokens, sizeof(int), (size_t)ntok, f) == (size_t)ntok) {
            long o = 0;
            rc = 0;
            for (int i = 0; i < n; i++) {
                if (s->lens[i] <= 0) rc = -1;
                s->offs[i] = o;
                o += s->lens[i];
            }
            if (o != ntok) rc = -1;
        }
        if (rc) token_seqs_free(s);
    }
    fclose(f);
    return rc;
}

static int cache_write(const char *path, const token_seqs *s, err *e) {
    long ntok = 0;
    for (int i = 0; i < s->n; i++) ntok += s->lens[i];
    size_t size = 16 + (size_t)s->n * 4 + (size_t)ntok * 4;
    char *buf = malloc(size);
    if (!buf) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    int32_t n = s->n;
    int64_t nt = ntok;
    memcpy(buf, "SPQT", 4);
    memcpy(buf + 4, &n, 4);
    memcpy(buf + 8, &nt, 8);
    memcpy(buf + 16, s->lens, (size_t)s->n * 4);
    memcpy(buf + 16 + (size_t)s->n * 4, s->tokens + s->offs[0], (size_t)ntok * 4);
    int rc = results_write_atomic(path, buf, size, e);
    free(buf);
    return rc;
}

static int ensure_calib(run_context *c, err *e) {
    if (c->have_calib) return SPARQ_OK;
    const sweep_config *cfg = c->cfg;
    bool self = strcmp(cfg->calib, "self") == 0;
    int seqlen = cfg->calib_seqlen ? cfg->calib_seqlen : c->pristine->cfg.seq_len;
    uint64_t src = c->model_hash;
    int rc = self ? SPARQ_OK : sweep_file_hash(cfg->calib, &src, e);
    if (rc) return rc;
    char desc[256], path[SWEEP_PATH + 64];
    snprintf(desc, sizeof desc, "calib|%016llx|%016llx|%d|%d|%d|%d", (unsigned long long)c->tok_hash,
             (unsigned long long)src, self, cfg->nsamples, seqlen, cfg->seed);
    snprintf(path, sizeof path, "%s/calib-%016llx.bin", c->cache,
             (unsigned long long)sweep_hash(SWEEP_HASH_INIT, desc, strlen(desc)));
    if (cache_read(path, &c->calib) == 0) { c->have_calib = true; return SPARQ_OK; }
    rc = self ? calib_from_model(c->pristine, cfg->nsamples, seqlen, (unsigned long)cfg->seed, &c->calib, e)
              : calib_from_text(c->tok, cfg->calib, cfg->nsamples, seqlen, (unsigned long)cfg->seed, &c->calib, e);
    if (!rc) rc = cache_write(path, &c->calib, e);
    c->have_calib = rc == SPARQ_OK;
    return rc;
}

static int ensure_ppl(run_context *c, int i, err *e) {
    if (c->have_ppl[i]) return SPARQ_OK;
    const sweep_ppl *p = &c->cfg->ppl[i];
    int seqlen = p->seqlen ? p->seqlen : c->pristine->cfg.seq_len;
    if (seqlen > c->pristine->cfg.seq_len)
        return err_set(e, SPARQ_EINPUT, "eval.ppl %s: seqlen %d is larger than the model's context (%d)",
                       p->name, seqlen, c->pristine->cfg.seq_len);
    uint64_t fh;
    int rc = sweep_file_hash(p->path, &fh, e);
    if (rc) return rc;
    char desc[256], path[SWEEP_PATH + 64];
    snprintf(desc, sizeof desc, "ppl|%016llx|%016llx|%d|%d|%d", (unsigned long long)c->tok_hash,
             (unsigned long long)fh, p->protocol, seqlen, c->cfg->limit);
    snprintf(path, sizeof path, "%s/ppl-%016llx.bin", c->cache,
             (unsigned long long)sweep_hash(SWEEP_HASH_INIT, desc, strlen(desc)));
    if (cache_read(path, &c->ppl[i]) == 0) { c->have_ppl[i] = true; return SPARQ_OK; }
    rc = ppl_prepare(c->tok, p->path, p->protocol, seqlen, c->cfg->limit, &c->ppl[i], e);
    if (!rc) rc = cache_write(path, &c->ppl[i], e);
    c->have_ppl[i] = rc == SPARQ_OK;
    return rc;
}

/* ---- the record ----------------------------------------------------------------------------- */

static void add_config(cJSON *j, const sweep_config *cfg, const run_spec *r) {
    const target *t = &r->target;
    cJSON *c = cJSON_AddObjectToObject(j, "config");
    cJSON_AddStringToObject(c, "model", cfg->model);
    cJSON_AddStringToObject(c, "calib", cfg->calib);
    cJSON_AddNumberToObject(c, "nsamples", cfg->nsamples);
    cJSON_AddNumberToObject(c, "calib_seqlen", cfg->calib_seqlen);
    cJSON_AddNumberToObject(c, "seed", cfg->seed);
    cJSON_AddStringToObject(c, "solver", r->dense ? "dense" : r->solver.name);
    cJSON_AddNumberToObject(c, "sparsity", t->sparsity);
    cJSON_AddNumberToObject(c, "n", t->n);
    cJSON_AddNumberToObject(c, "m", t->m);
    cJSON_AddNumberToObject(c, "bits", t->bits);
    cJSON_AddNumberToObject(c, "group", t->group);
    cJSON_AddBoolToObject(c, "sym", t->sym);
    cJSON_AddBoolToObject(c, "act_order", t->act_order);
    cJSON_AddBoolToObject(c, "static_groups", t->static_groups);
    cJSON_AddBoolToObject(c, "mse", t->mse);
    cJSON_AddNumberToObject(c, "damp", t->damp);
    cJSON_AddNumberToObject(c, "block", t->block);
    cJSON_AddStringToObject(c, "scope", t->scope == SCOPE_ROW ? "row" : "layer");
    cJSON_AddStringToObject(c, "schedule", schedule_name(r->schedule));
    cJSON_AddBoolToObject(c, "true_sequential", r->true_sequential);
    cJSON_AddStringToObject(c, "chain_mode", r->solver.quantize_all ? "all" : "mask");
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

int run_execute(run_context *c, const run_spec *r, const cJSON *dense, cJSON **record, err *e) {
    (void)dense;
    *record = NULL;
    if (r->invalid[0]) return err_set(e, SPARQ_EINPUT, "run %s is invalid: %s", r->label, r->invalid);
    const sweep_config *cfg = c->cfg;
    double t0 = now(), t_calib = 0, t_comp = 0, t_eval = 0;
    memcpy(c->work->data, c->pristine->data, c->pristine->data_floats * sizeof(float));
    compress_report rep = {0};
    int rc = SPARQ_OK;
    if (!r->dense) {
        double a = now();
        rc = ensure_calib(c, e);
        t_calib = now() - a;
        compress_options o = {.solver = r->solver, .target = r->target, .true_sequential = r->true_sequential,
                              .schedule = r->schedule};
        a = now();
        if (!rc) rc = compress_model(c->work, &c->calib, &o, &rep, NULL, NULL, e);
        t_comp = now() - a;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "key", r->key);
    cJSON_AddStringToObject(j, "label", r->label);
    cJSON_AddStringToObject(j, "grid", r->grid);
    cJSON_AddBoolToObject(j, "dense", r->dense);
    add_config(j, cfg, r);
    /* Not part of the key: it names how reports combine retention and compression. */
    cJSON_AddStringToObject(j, "srcr_formula", cfg->srcr_formula);
    /* Storage (algorithms.md §9) over the linear layers; the rest counted in fp16. */
    const model *m = c->work;
    double lin = (double)model_linear_params(m), other = (double)(model_params(m) - model_linear_params(m));
    double bits = 0, pruned = 0;
    int q = r->dense ? 16 : r->target.bits;
    if (r->dense) bits = 16.0 * lin;
    for (int i = 0; i < rep.n; i++) {
        const compress_layer *l = &rep.layers[i];
        double w = (double)l->rows * l->cols;
        bits += w * metrics_bpw_packed(l->report.sparsity, l->report.bits, r->target.n, r->target.m,
                                       l->report.group, l->cols);
        pruned += w * l->report.sparsity;
    }
    double s = r->dense ? 0.0 : pruned / lin;
    cJSON_AddNumberToObject(j, "sparsity", s);
    cJSON_AddNumberToObject(j, "bits", q);
    cJSON_AddNumberToObject(j, "bits_per_weight", bits / lin);
    cJSON_AddNumberToObject(j, "bits_per_weight_theoretical", metrics_bpw_theoretical(s, q));
    cJSON_AddNumberToObject(j, "bytes_packed", bits / 8.0 + 2.0 * other);
    /* TCr = 1 - (q/16)(1 - s) (algorithms.md §7): the fraction of fp16 bits removed. */
    double tcr = 1.0 - metrics_bpw_theoretical(s, q) / 16.0;
    cJSON_AddNumberToObject(j, "tcr", tcr);
    cJSON_AddNumberToObject(j, "compression_ratio", tcr < 1.0 ? 1.0 / (1.0 - tcr) : 0.0);
    cJSON *layers = cJSON_AddArrayToObject(j, "layers");
    for (int i = 0; i < rep.n; i++) {
        const compress_layer *l = &rep.layers[i];
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
    compress_report_free(&rep);
    double a = now();
    cJSON *ppl = cJSON_AddObjectToObject(j, "ppl");
    for (int i = 0; !rc && i < cfg->n_ppl; i++) {
        rc = ensure_ppl(c, i, e);
        ppl_result pr;
        if (!rc) rc = ppl_score(c->work, &c->ppl[i], &pr, NULL, NULL, e);
        if (rc) break;
        cJSON *x = cJSON_AddObjectToObject(ppl, cfg->ppl[i].name);
        cJSON_AddNumberToObject(x, "ppl", pr.ppl);
        cJSON_AddNumberToObject(x, "nll", pr.nll);
        cJSON_AddNumberToObject(x, "tokens", (double)pr.tokens);
        cJSON_AddStringToObject(x, "protocol", cfg->ppl[i].protocol == PPL_WINDOWS ? "windows" : "documents");
        cJSON_AddNumberToObject(x, "seqlen", c->ppl[i].lens[0] > 0 ? (cfg->ppl[i].seqlen ? cfg->ppl[i].seqlen
                                                                     : c->pristine->cfg.seq_len) : 0);
    }
    cJSON *tasks = cJSON_AddObjectToObject(j, "tasks");
    for (int i = 0; !rc && i < cfg->n_tasks; i++) {
        if (!c->have_task[i]) {
            rc = zeroshot_load_task(c->tok, cfg->tasks[i].name, cfg->tasks[i].path, cfg->limit,
                                    (unsigned long)cfg->seed, &c->tasks[i], e);
            c->have_task[i] = rc == SPARQ_OK;
        }
        zeroshot_result zr;
        if (!rc) rc = zeroshot_run(c->work, &c->tasks[i], &zr, NULL, NULL, e);
        if (rc) break;
        cJSON *x = cJSON_AddObjectToObject(tasks, cfg->tasks[i].name);
        cJSON_AddNumberToObject(x, "acc", zr.acc);
        cJSON_AddNumberToObject(x, "acc_stderr", zr.acc_stderr);
        if (zr.has_acc_norm) {
            cJSON_AddNumberToObject(x, "acc_norm", zr.acc_norm);
            cJSON_AddNumberToObject(x, "acc_norm_stderr", zr.acc_norm_stderr);
        }
        if (zr.has_ppl) cJSON_AddNumberToObject(x, "ppl", zr.ppl);
        cJSON_AddNumberToObject(x, "chance", zr.chance);
        cJSON_AddNumberToObject(x, "n", zr.n);
    }
    t_eval = now() - a;
    cJSON *sec = cJSON_AddObjectToObject(j, "seconds");
    cJSON_AddNumberToObject(sec, "calib", t_calib);
    cJSON_AddNumberToObject(sec, "compress", t_comp);
    cJSON_AddNumberToObject(sec, "eval", t_eval);
    cJSON_AddNumberToObject(sec, "total", now() - t0);
    cJSON_AddNumberToObject(j, "peak_rss_mb", peak_rss_mb());
    if (rc) { cJSON_Delete(j); return rc; }
    *record = j;
    return SPARQ_OK;
}
