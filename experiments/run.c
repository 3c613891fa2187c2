#include "run.h"
#include "../core/stream.h"

#include "../core/ggml_blocks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/fileio.h"
#include "../core/hash.h"
#include "../eval/perplexity.h"
#include "../eval/zeroshot.h"
#include "calib.h"
#include "compress.h"
#include "options.h"
#include "results.h"

struct run_context {
    const run_setup *setup;
    model      *m;                   /* NULL once released (run_context_release_model)     */
    int         seq_len;             /* the model's context, known after a release too     */
    float      *pristine;            /* the loaded weights, when the context is reused     */
    bool        dirty;               /* m holds a compressed model                         */
    tokenizer  *tok;
    char        tok_path[SPEC_PATH + 64];
    bool        hashed;              /* the hashes below are known                         */
    uint64_t    model_hash, tok_hash, calib_hash;
    uint64_t    ppl_hash[SPEC_MAX_EVALS], task_hash[SPEC_MAX_TASKS];
    token_seqs  calib;
    bool        have_calib;
    token_seqs  ppl[SPEC_MAX_EVALS];
    bool        have_ppl[SPEC_MAX_EVALS];
    zeroshot_task tasks[SPEC_MAX_TASKS];     /* loaded and tokenized once per context */
    bool        have_task[SPEC_MAX_TASKS];
    const char *cache;               /* NULL: no disk cache                                */
};

void run_setup_default(run_setup *s) {
    memset(s, 0, sizeof *s);
    s->nsamples = 128;
    snprintf(s->srcr_formula, sizeof s->srcr_formula, "recon");
}

const model *run_context_model(const run_context *c) { return c->m; }
const tokenizer *run_context_tokenizer(const run_context *c) { return c->tok; }

void run_context_free(run_context *c) {
    if (!c) return;
    model_free(c->m);
    free(c->pristine);
    tokenizer_free(c->tok);
    token_seqs_free(&c->calib);
    for (int i = 0; i < SPEC_MAX_EVALS; i++) token_seqs_free(&c->ppl[i]);
    for (int i = 0; i < SPEC_MAX_TASKS; i++)
        if (c->have_task[i]) zeroshot_task_free(&c->tasks[i]);
    free(c);
}

/* The lengths a setup asks for must fit the model's context. */
static int check_setup(const run_setup *s, const model *m, err *e) {
    int ctx = m->cfg.seq_len;
    if (s->calib_seqlen > ctx)
        return err_set(e, SPARQ_EINPUT, "calibration seqlen %d is larger than the model's context (%d)",
                       s->calib_seqlen, ctx);
    for (int i = 0; i < s->n_ppl; i++)
        if (s->ppl[i].seqlen > ctx)
            return err_set(e, SPARQ_EINPUT, "eval %s: seqlen %d is larger than the model's context (%d)",
                           s->ppl[i].name, s->ppl[i].seqlen, ctx);
    return SPARQ_OK;
}

int run_context_new(run_context **out, const run_setup *s, bool reuse, const char *cache_dir, err *e) {
    *out = NULL;
    run_context *c = calloc(1, sizeof *c);
    if (!c) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    c->setup = s;
    c->cache = cache_dir;
    int rc = model_load(&c->m, s->model, e);
    if (!rc) c->seq_len = c->m->cfg.seq_len;
    if (!rc) rc = check_setup(s, c->m, e);
    if (!rc) rc = tokenizer_load_for_model(&c->tok, s->model, c->m->cfg.vocab_size,
                                           s->tokenizer[0] ? s->tokenizer : NULL, c->tok_path,
                                           sizeof c->tok_path, e);
    /* A streamed model (stream.h) goes back to its file's blocks; a resident one needs a copy. */
    if (!rc && reuse && !model_streamed(c->m)) {
        size_t bytes = c->m->data_floats * sizeof(float);
        c->pristine = malloc(bytes);
        if (!c->pristine) rc = err_set(e, SPARQ_ERUNTIME, "out of memory for a copy of the weights");
        else memcpy(c->pristine, c->m->data, bytes);
    }
    if (!rc && cache_dir) rc = results_mkdir(cache_dir, e);
    if (rc) { run_context_free(c); return rc; }
    *out = c;
    return SPARQ_OK;
}

/* Content hashes of every input, once: keys and caches are made of them. */
static int ensure_hashes(run_context *c, err *e) {
    if (c->hashed) return SPARQ_OK;
    const run_setup *s = c->setup;
    int rc = hash_path(s->model, &c->model_hash, e);
    if (!rc) rc = hash_path(c->tok_path, &c->tok_hash, e);
    c->calib_hash = 0;
    if (!rc && strcmp(s->calib, "self") != 0) rc = hash_path(s->calib, &c->calib_hash, e);
    for (int i = 0; !rc && i < s->n_ppl; i++) rc = hash_path(s->ppl[i].path, &c->ppl_hash[i], e);
    for (int i = 0; !rc && i < s->n_tasks; i++) rc = hash_path(s->tasks[i].path, &c->task_hash[i], e);
    c->hashed = rc == SPARQ_OK;
    return rc;
}

bool run_parse_memory(const char *v, double *bytes) {
    char *end;
    double x = strtod(v, &end);
    double unit = 1e9;
    if (strcmp(end, "M") == 0 || strcmp(end, "MB") == 0) unit = 1e6;
    else if (*end && strcmp(end, "G") != 0 && strcmp(end, "GB") != 0) return false;
    if (end == v || !(x > 0) || x > 1e9) return false;
    *bytes = x * unit;
    return true;
}

void run_context_release_model(run_context *c) {
    model_free(c->m);
    c->m = NULL;
    free(c->pristine);
    c->pristine = NULL;
}

int run_check(const run_context *c, const run_spec *r, err *e) {
    if (!c->m) return err_set(e, SPARQ_ERUNTIME, "run_check: the context's model was released");
    if (r->dense) return SPARQ_OK;
    int rc = options_check(&r->opts, e);
    if (!rc) rc = compress_check(c->m, &r->opts, e);
    if (rc) return rc;
    /* Refuse before calibrating what cannot fit, rather than fail or swap hours later. */
    const run_setup *s = c->setup;
    long L = s->calib_seqlen > 0 ? s->calib_seqlen : c->m->cfg.seq_len;
    compress_memory est;
    compress_estimate(c->m, (long)s->nsamples * L, (int)L, c->pristine != NULL, &est);
    double have = s->max_memory > 0 ? s->max_memory : clock_memory_bytes();
    if (est.total > have)
        return err_set(e, SPARQ_EINPUT, "compressing %s needs about %.3g GB (weights %.3g, calibration "
                       "activations %.3g, Hessians %.3g, solver %.3g) but %s %.3g GB: use fewer --nsamples, "
                       "a shorter --calib-seqlen, or --max-memory", s->model, est.total / 1e9,
                       est.weights / 1e9, est.activations / 1e9, est.hessians / 1e9, est.solver / 1e9,
                       s->max_memory > 0 ? "--max-memory allows" : "this machine has", have / 1e9);
    return SPARQ_OK;
}

int run_key(run_context *c, run_spec *r, err *e) {
    int rc = ensure_hashes(c, e);
    if (rc) return rc;
    const run_setup *s = c->setup;
    char buf[4096];
    /* v2: sparsity is a double (counts as the reference's int(n * s)), options by the table. */
    int w = snprintf(buf, sizeof buf, "v2|model=%016llx|tok=%016llx|calib=%016llx:%d:%d:%d|",
                     (unsigned long long)c->model_hash, (unsigned long long)c->tok_hash,
                     (unsigned long long)c->calib_hash, s->nsamples, s->calib_seqlen, s->seed);
    if (r->dense) w += snprintf(buf + w, sizeof buf - (size_t)w, "dense|");
    else options_key(&r->opts, buf + w, sizeof buf - (size_t)w);
    w = (int)strlen(buf);
    for (int i = 0; i < s->n_ppl; i++)
        w += snprintf(buf + w, sizeof buf - (size_t)w, "ppl=%016llx:%d:%d|", (unsigned long long)c->ppl_hash[i],
                      s->ppl[i].protocol, s->ppl[i].seqlen);
    for (int i = 0; i < s->n_tasks; i++)
        w += snprintf(buf + w, sizeof buf - (size_t)w, "task=%s:%016llx|", s->tasks[i].name,
                      (unsigned long long)c->task_hash[i]);
    snprintf(buf + w, sizeof buf - (size_t)w, "limit=%d", s->limit);
    snprintf(r->key, sizeof r->key, "%016llx", (unsigned long long)hash_bytes(HASH_INIT, buf, strlen(buf)));
    return SPARQ_OK;
}

/* ---- token caches: "SPQU", n, ntok, unscored, lens[n], tokens[ntok] ---------------------- */
/* (Version "SPQT" had no `unscored`: such a file is a cache miss and is rewritten.) */

static int cache_read(const char *path, token_seqs *s) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char magic[4];
    int32_t n, unscored;
    int64_t ntok;
    int rc = -1;
    memset(s, 0, sizeof *s);
    if (fread(magic, 4, 1, f) == 1 && memcmp(magic, "SPQU", 4) == 0 && fread(&n, 4, 1, f) == 1 &&
        fread(&ntok, 8, 1, f) == 1 && fread(&unscored, 4, 1, f) == 1 && n > 0 && ntok > 0 &&
        ntok < (1ll << 40) && unscored >= 0 && token_seqs_alloc(s, n, (long)ntok, NULL) == 0) {
        s->unscored = unscored;
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
    size_t size = 20 + (size_t)s->n * 4 + (size_t)ntok * 4;
    char *buf = malloc(size);
    if (!buf) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    int32_t n = s->n, unscored = s->unscored;
    int64_t nt = ntok;
    memcpy(buf, "SPQU", 4);
    memcpy(buf + 4, &n, 4);
    memcpy(buf + 8, &nt, 8);
    memcpy(buf + 16, &unscored, 4);
    memcpy(buf + 20, s->lens, (size_t)s->n * 4);
    memcpy(buf + 20 + (size_t)s->n * 4, s->tokens + s->offs[0], (size_t)ntok * 4);
    int rc = results_write_atomic(path, buf, size, e);
    free(buf);
    return rc;
}

/* The cache file for a description of what was tokenized, or "" without a cache. */
static int cache_path(run_context *c, const char *kind, const char *desc, char *path, size_t n, err *e) {
    path[0] = '\0';
    if (!c->cache) return SPARQ_OK;
    int rc = ensure_hashes(c, e);
    if (rc) return rc;
    char full[512];
    snprintf(full, sizeof full, "%s|%016llx|%s", kind, (unsigned long long)c->tok_hash, desc);
    snprintf(path, n, "%s/%s-%016llx.bin", c->cache, kind,
             (unsigned long long)hash_bytes(HASH_INIT, full, strlen(full)));
    return SPARQ_OK;
}

static int ensure_calib(run_context *c, err *e) {
    if (c->have_calib) return SPARQ_OK;
    const run_setup *s = c->setup;
    bool self = strcmp(s->calib, "self") == 0;
    int seqlen = s->calib_seqlen ? s->calib_seqlen : c->seq_len;
    char desc[256], path[SPEC_PATH + 64];
    int rc = SPARQ_OK;
    if (c->cache) {
        rc = ensure_hashes(c, e);
        snprintf(desc, sizeof desc, "%016llx|%d|%d|%d|%d",
                 (unsigned long long)(self ? c->model_hash : c->calib_hash), self, s->nsamples, seqlen, s->seed);
        if (!rc) rc = cache_path(c, "calib", desc, path, sizeof path, e);
        if (rc) return rc;
        if (cache_read(path, &c->calib) == 0) return c->have_calib = true, SPARQ_OK;
    }
    /* Self-calibration samples the pristine model: this runs before any compression. */
    rc = self ? calib_from_model(c->m, s->nsamples, seqlen, (unsigned long)s->seed, &c->calib, e)
              : calib_from_text(c->tok, s->calib, s->nsamples, seqlen, (unsigned long)s->seed, &c->calib, e);
    if (!rc && c->cache) rc = cache_write(path, &c->calib, e);
    c->have_calib = rc == SPARQ_OK;
    return rc;
}

static int ensure_ppl(run_context *c, int i, err *e) {
    if (c->have_ppl[i]) return SPARQ_OK;
    const run_setup *s = c->setup;
    const spec_ppl *p = &s->ppl[i];
    int seqlen = p->seqlen ? p->seqlen : c->seq_len;
    char desc[256], path[SPEC_PATH + 64];
    int rc = SPARQ_OK;
    if (c->cache) {
        rc = ensure_hashes(c, e);
        snprintf(desc, sizeof desc, "%016llx|%d|%d|%d", (unsigned long long)c->ppl_hash[i], p->protocol,
                 seqlen, s->limit);
        if (!rc) rc = cache_path(c, "ppl", desc, path, sizeof path, e);
        if (rc) return rc;
        if (cache_read(path, &c->ppl[i]) == 0) return c->have_ppl[i] = true, SPARQ_OK;
    }
    rc = ppl_prepare(c->tok, p->path, p->protocol, seqlen, s->limit, &c->ppl[i], e);
    if (!rc && c->cache) rc = cache_write(path, &c->ppl[i], e);
    c->have_ppl[i] = rc == SPARQ_OK;
    return rc;
}

int run_context_ppl(run_context *c, int i, const token_seqs **seqs, int *seqlen, err *e) {
    int rc = ensure_ppl(c, i, e);
    *seqs = rc ? NULL : &c->ppl[i];
    *seqlen = c->setup->ppl[i].seqlen ? c->setup->ppl[i].seqlen : c->seq_len;
    return rc;
}

/* Every evaluation input tokenized before the long part, so a bad file fails first. */
static int ensure_eval_data(run_context *c, err *e) {
    const run_setup *s = c->setup;
    int rc = SPARQ_OK;
    for (int i = 0; !rc && i < s->n_ppl; i++) rc = ensure_ppl(c, i, e);
    for (int i = 0; !rc && i < s->n_tasks; i++) {
        if (c->have_task[i]) continue;
        rc = zeroshot_load_task(c->tok, s->tasks[i].name, s->tasks[i].path, s->limit,
                                (unsigned long)s->seed, &c->tasks[i], e);
        c->have_task[i] = rc == SPARQ_OK;
    }
    return rc;
}

/* progress_fn -> run_progress_fn with the stage's name. */
typedef struct {
    run_progress_fn fn;
    void *ctx;
    const char *stage;
} stage_progress;

static void stage_update(void *p, long done, long total) {
    stage_progress *s = p;
    if (s->fn) s->fn(s->ctx, s->stage, done, total);
}

int run_check_output(const run_spec *r, const run_output *out, err *e) {
    const ggml_block_type *b = out ? ggml_block_find(out->dtype) : NULL;
    if (!b && out && out->pure)
        return err_set(e, SPARQ_EINPUT, "--pure puts the embedding in the --dtype block type: give one");
    if (!b) return SPARQ_OK;
    model_format f = out->format == MODEL_FORMAT_AUTO ? model_format_for_path(out->path) : out->format;
    if (f != MODEL_FORMAT_GGUF)
        return err_set(e, SPARQ_EINPUT, "--dtype %s is a GGUF block type: write a .gguf (--format gguf)", b->name);
    if (r->dense || r->opts.solver.n == 0)
        return err_set(e, SPARQ_EINPUT, "--dtype %s writes a quantizer's grids: give a solver that quantizes",
                       b->name);
    const target *t = &r->opts.target;
    bool prunes = r->opts.solver.stage[0]->prunes && (t->sparsity > 0 || t->m > 0);
    return target_check_block(t, prunes, b, e);
}

/* The grids of every linear layer from the compression report, for the GGUF block writer. */
static gguf_block_grid *report_grids(const compress_report *rep) {
    gguf_block_grid *g = calloc((size_t)(rep->n ? rep->n : 1), sizeof *g);
    for (int i = 0; g && i < rep->n; i++) {
        const layer_report *lr = &rep->layers[i].report;
        if (lr->bits < 16 && lr->scale) g[i] = (gguf_block_grid){lr->scale, lr->min};
    }
    return g;
}

int run_execute(run_context *c, const run_spec *r, run_output *output, run_progress_fn progress,
                void *pctx, cJSON **record, err *e) {
    const char *out_path = output ? output->path : NULL;
    int crc = out_path ? run_check_output(r, output, e) : SPARQ_OK;
    if (crc) return crc;
    *record = NULL;
    if (!c->m) return err_set(e, SPARQ_ERUNTIME, "run_execute: the context's model was released");
    if (out_path) {   /* what the writer would refuse, refused before the work */
        model_save_options so = {.format = output->format, .dtype = output->dtype};
        if ((crc = model_save_check(c->m, out_path, &so, e))) return crc;
    }
    if (r->invalid[0]) return err_set(e, SPARQ_EINPUT, "run %s is invalid: %s", r->label, r->invalid);
    const run_setup *s = c->setup;
    run_outcome out = {.setup = s, .spec = r};
    double t0 = clock_seconds();
    int rc = SPARQ_OK;
    if (c->dirty && model_streamed(c->m))
        rc = model_blocks_reset(c->m, e);
    else if (c->dirty && !c->pristine)
        return err_set(e, SPARQ_ERUNTIME, "this run context holds a compressed model and no copy to restore");
    else if (c->dirty)
        memcpy(c->m->data, c->pristine, c->m->data_floats * sizeof(float));
    if (rc) return rc;
    c->dirty = false;
    rc = ensure_eval_data(c, e);
    /* --out keeps the tokenizer (issue 20): a GGUF embeds it, other formats get it beside (or
     * inside) them; a different tokenizer already there is refused before the long part. */
    model_format fmt = out_path ? model_save_format(c->m, out_path, output->format) : MODEL_FORMAT_AUTO;
    bool tok_beside = out_path && fmt != MODEL_FORMAT_GGUF;
    bool inside = fmt == MODEL_FORMAT_SAFETENSORS && !path_has_suffix(out_path, ".safetensors");
    if (!rc && tok_beside) rc = tokenizer_save_beside(c->tok, c->tok_path, out_path, inside, true, NULL, 0, e);
    compress_report rep = {0};
    if (!rc && !r->dense) {
        double a = clock_seconds();
        rc = ensure_calib(c, e);
        out.seconds_calib = clock_seconds() - a;
        a = clock_seconds();
        stage_progress sp = {progress, pctx, "compress"};
        c->dirty = true;
        /* A layer no block of the output type can hold stays dense (f16 in the file), as
         * llama.cpp leaves it, rather than quantized and then stored at 16 bits. */
        compress_options co = r->opts;
        if (output && output->path && ggml_block_find(output->dtype)) co.dense_cols = GGML_BLOCK;
        if (!rc) rc = compress_model(c->m, &c->calib, &co, &rep, stage_update, &sp, e);
        out.seconds_compress = clock_seconds() - a;
        if (!rc) out.report = &rep;
    }
    if (!rc && out_path) {
        /* A .gguf carries the vocabulary for llama.cpp; block types the solver's own grids. */
        bool blocks = ggml_block_find(output->dtype) != NULL;
        /* What the file keeps f16 is f16 in the evaluated model too: the file is the model. */
        if (blocks) rc = gguf_round_for_blocks(c->m, output->dtype, output->pure, e);
        gguf_block_grid *grids = blocks ? report_grids(&rep) : NULL;
        model_save_options so = {output->format, output->dtype, c->tok, 0, 0, grids, &output->info, output->pure};
        if (!rc && blocks && !grids) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
        else if (!rc) rc = model_save_opts(c->m, out_path, &so, e);
        free(grids);
        if (!rc && tok_beside) rc = tokenizer_save_beside(c->tok, c->tok_path, out_path, inside, false, NULL, 0, e);
    }
    ppl_result pr[SPEC_MAX_EVALS];
    zeroshot_result zr[SPEC_MAX_TASKS];
    double a = clock_seconds();
    bool skip_ppl = output && output->skip_ppl;
    for (int i = 0; !rc && !skip_ppl && i < s->n_ppl; i++) {
        stage_progress sp = {progress, pctx, s->ppl[i].name};
        rc = ppl_score(c->m, &c->ppl[i], &pr[i], stage_update, &sp, e);
        out.ppl_seqlen[i] = s->ppl[i].seqlen ? s->ppl[i].seqlen : c->seq_len;
    }
    for (int i = 0; !rc && i < s->n_tasks; i++) {
        stage_progress sp = {progress, pctx, s->tasks[i].name};
        rc = zeroshot_run(c->m, &c->tasks[i], &zr[i], stage_update, &sp, e);
    }
    out.seconds_eval = clock_seconds() - a;
    out.seconds_total = clock_seconds() - t0;
    out.ppl = skip_ppl ? NULL : pr;
    out.tasks = zr;
    out.linear_params = (double)model_linear_params(c->m);
    out.other_params = (double)(model_params(c->m) - model_linear_params(c->m));
    if (!rc) {
        *record = results_record(&out);
        if (!*record) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    compress_report_free(&rep);
    return rc;
}
