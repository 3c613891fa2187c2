#include "compress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/family.h"
#include "../core/forward.h"
#include "../core/hessian.h"
#include "../core/stream.h"

/* Tokens per forward_block call while capturing: bounds the capture buffers. */
#define CHUNK_TOKENS 8192

/* Inputs and linear layers of a block, from the family's description. */
#define IN_MAX FAM_MAX_INPUT

static int input_of(const model *m, int k) { return m->fam->linear[k].input; }

void compress_report_free(compress_report *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) layer_report_free(&r->layers[i].report);
    free(r->layers);
    free(r->blocks);
    memset(r, 0, sizeof *r);
}

void compress_estimate(const model *m, long ntok, int maxlen, bool pristine_copy,
                       compress_memory *out) {
    const model_config *c = &m->cfg;
    const family *f = m->fam;
    double chunk = maxlen > CHUNK_TOKENS ? maxlen : CHUNK_TOKENS, widths = 0, h = 0, solver = 0;
    if (chunk > ntok && ntok > 0) chunk = (double)ntok;
    for (int k = 0; k < f->n_input; k++) {
        double w = (double)family_size(c, f->input[k]);
        widths += w;
        h += w * w;
    }
    for (int k = 0; k < f->n_linear; k++) {
        double R = (double)m->blocks[0].lin[k].rows, C = (double)m->blocks[0].lin[k].cols;
        double ws = 4.0 * (2.0 * R * C + 3.0 * C * C);
        solver = ws > solver ? ws : solver;
    }
    /* A streamed model (stream.h) holds the rest and at most two blocks, and restores its
     * pristine blocks from the file; a resident one all of it, and a copy for reuse. */
    if (model_streamed(m))
        out->weights = 4.0 * ((double)m->data_floats + 2.0 * (double)model_block_floats(m));
    else
        out->weights = 4.0 * (double)m->data_floats * (pristine_copy ? 2.0 : 1.0);
    /* X for every token, the chunk being re-run, its captures and the block's scratch (q, k, v,
     * attention, the MLP's hidden width twice) */
    out->activations = 4.0 * ((double)ntok * c->dim + chunk * (c->dim + widths) +
                              chunk * (4.0 * c->dim + 2.0 * c->hidden_dim));
    out->hessians = 4.0 * h;
    out->solver = solver;
    out->total = out->weights + out->activations + out->hessians + out->solver;
}

int compress_check(const model *m, const compress_options *o, err *e) {
    if (o->block_count > 0 && o->block_first + o->block_count > m->cfg.n_layers)
        return err_set(e, SPARQ_EINPUT, "--blocks %d-%d: the model has blocks 0-%d", o->block_first,
                       o->block_first + o->block_count - 1, m->cfg.n_layers - 1);
    if (o->schedule != SCHEDULE_UNIFORM && (o->target.m > 0 || o->target.sparsity <= 0.0))
        return err_set(e, SPARQ_EINPUT, "schedule %s allocates unstructured sparsity: give "
                       "--sparsity, not N:M", schedule_name(o->schedule));
    for (int k = 0; k < m->fam->n_linear; k++) {
        const linear *l = &m->blocks[0].lin[k];
        int rc = solver_spec_check(&o->solver, &o->target, l->rows, l->cols, e);
        if (rc) return rc;
    }
    return SPARQ_OK;
}

typedef struct {
    const model *m;
    const token_seqs *calib;
    fwd_scratch *scr;
    float *xc;                   /* [CHUNK][dim] copy of a chunk of hidden states */
    float *cap[IN_MAX];          /* capture buffers, [CHUNK][width]              */
    int    width[IN_MAX];
    int    n_in;
    int    chunk;                /* tokens per chunk, >= the longest sequence     */
    double t_forward, t_hessian; /* seconds so far in forward_block and in Hessians */
} driver;

/* Run block l over all calibration sequences (hidden states X, not modified) and accumulate
 * the Hessians of the inputs flagged in want[]. */
static int accumulate(driver *d, int l, const float *X, const bool want[IN_MAX],
                      hessian H[IN_MAX], err *e) {
    const token_seqs *c = d->calib;
    int dim = d->m->cfg.dim;
    for (int i = 0; i < c->n;) {
        int j = i, ntok = 0;
        while (j < c->n && ntok + c->lens[j] <= d->chunk) ntok += c->lens[j++];
        memcpy(d->xc, X + c->offs[i] * dim, (size_t)ntok * dim * sizeof(float));
        block_inputs cap = {{NULL}};
        for (int k = 0; k < d->n_in; k++) cap.in[k] = want[k] ? d->cap[k] : NULL;
        fwd_batch b = {.n_seq = j - i, .lens = c->lens + i, .n_tok = ntok};
        double t0 = clock_seconds();
        int rc = forward_block(d->m, l, d->xc, &b, &cap, d->scr, e);
        if (rc) return rc;
        double t1 = clock_seconds();
        for (int k = 0; k < d->n_in; k++)
            if (want[k]) hessian_accumulate(&H[k], d->cap[k], ntok);
        d->t_forward += t1 - t0;
        d->t_hessian += clock_seconds() - t1;
        i = j;
    }
    for (int k = 0; k < d->n_in; k++)
        if (want[k]) hessian_finish(&H[k], c->n);
    return SPARQ_OK;
}

/* Run block l in place over all sequences: the inputs of block l + 1. */
static int propagate(driver *d, int l, float *X, err *e) {
    const token_seqs *c = d->calib;
    int dim = d->m->cfg.dim;
    for (int i = 0; i < c->n;) {
        int j = i, ntok = 0;
        while (j < c->n && ntok + c->lens[j] <= d->chunk) ntok += c->lens[j++];
        fwd_batch b = {.n_seq = j - i, .lens = c->lens + i, .n_tok = ntok};
        double t0 = clock_seconds();
        int rc = forward_block(d->m, l, X + c->offs[i] * dim, &b, NULL, d->scr, e);
        d->t_forward += clock_seconds() - t0;
        if (rc) return rc;
        i = j;
    }
    return SPARQ_OK;
}

/* Layer k of block l in the report, left as it is: counted at 16 bits, unpruned. */
static compress_layer *layer_dense(const model *m, int l, int k, const compress_options *o,
                                   compress_report *out) {
    const linear *lin = &m->blocks[l].lin[k];
    compress_layer *cl = &out->layers[l * m->fam->n_linear + k];
    snprintf(cl->name, sizeof cl->name, "%d.%s", l, m->fam->linear[k].name);
    cl->rows = lin->rows;
    cl->cols = lin->cols;
    cl->report = (layer_report){.bits = 16, .group = -1, .damp = o->target.damp};
    return cl;
}

static int compress_layer_at(model *m, int l, int k, const hessian *H,
                             const compress_options *o, compress_report *out, err *e) {
    linear *lin = &m->blocks[l].lin[k];
    double ts = out->layers[l * m->fam->n_linear + k].target_sparsity;
    compress_layer *cl = layer_dense(m, l, k, o, out);
    cl->target_sparsity = ts;
    if (o->dense_cols > 0 && lin->cols % o->dense_cols) return SPARQ_OK;   /* stays as it is */
    target t = o->target;
    t.sparsity = cl->target_sparsity;
    int rc = solver_spec_run(&o->solver, lin->w, lin->rows, lin->cols, H->H, &t, &cl->report, e);
    if (rc) {
        err inner = *e;
        err_set(e, rc, "layer %s (%d x %d): %s", cl->name, lin->rows, lin->cols, inner.msg);
    }
    return rc;
}

/* X = the first block's inputs for every calibration sequence (positions restart per sequence). */
static int embed_all(driver *d, float *X, err *e) {
    const token_seqs *c = d->calib;
    int dim = d->m->cfg.dim;
    for (int i = 0; i < c->n;) {
        int j = i, ntok = 0;
        while (j < c->n && ntok + c->lens[j] <= d->chunk) ntok += c->lens[j++];
        fwd_batch b = {.n_seq = j - i, .lens = c->lens + i, .n_tok = ntok};
        int rc = forward_embed(d->m, c->tokens + c->offs[i], &b, X + c->offs[i] * dim, e);
        if (rc) return rc;
        i = j;
    }
    return SPARQ_OK;
}

/* First pass of a non-uniform schedule: measure every layer of the dense model (dense inputs
 * propagated block by block), then allocate the per-layer sparsities. */
static int plan_schedule(driver *d, model *m, const compress_options *o, float *X,
                         compress_report *out, err *e) {
    const model_config *c = &m->cfg;
    int nl = m->fam->n_linear, n = c->n_layers * nl;
    schedule_layer *st = calloc((size_t)n, sizeof *st);
    double *alloc = malloc((size_t)n * sizeof(double));
    int rc = st && alloc ? SPARQ_OK : err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (!rc) rc = embed_all(d, X, e);
    for (int l = 0; l < c->n_layers && !rc; l++) {
        hessian H[IN_MAX] = {{0}};
        bool want[IN_MAX] = {0};
        for (int k = 0; k < d->n_in && !rc; k++) {
            want[k] = true;
            rc = hessian_init(&H[k], d->width[k], e);
        }
        if (!rc) rc = accumulate(d, l, X, want, H, e);
        bool held = !rc && !(rc = model_block_acquire(m, l, e));
        for (int k = 0; k < nl && !rc; k++) {
            const linear *lin = &m->blocks[l].lin[k];
            rc = schedule_measure(lin->w, lin->rows, lin->cols, H[input_of(m, k)].H,
                                  o->target.sparsity, o->target.damp, &st[l * nl + k], e);
            st[l * nl + k].block = l;
        }
        if (held) model_block_release(m, l);
        for (int k = 0; k < d->n_in; k++) hessian_free(&H[k]);
        if (!rc) rc = propagate(d, l, X, e);
    }
    if (!rc) rc = schedule_allocate(o->schedule, st, n, o->target.sparsity, alloc, e);
    for (int i = 0; !rc && i < n; i++) out->layers[i].target_sparsity = alloc[i];
    free(st);
    free(alloc);
    return rc;
}

int compress_model(model *m, const token_seqs *calib, const compress_options *o,
                   compress_report *out, progress_fn progress, void *progress_ctx, err *e) {
    memset(out, 0, sizeof *out);
    int rc = compress_check(m, o, e);
    if (rc) return rc;
    if (calib->n < 1) return err_set(e, SPARQ_EINPUT, "no calibration sequences");
    const model_config *c = &m->cfg;
    long ntok = 0;
    int maxlen = 0;
    for (int i = 0; i < calib->n; i++) {
        ntok += calib->lens[i];
        maxlen = calib->lens[i] > maxlen ? calib->lens[i] : maxlen;
    }
    driver d = {.m = m, .calib = calib, .chunk = maxlen > CHUNK_TOKENS ? maxlen : CHUNK_TOKENS,
                .n_in = m->fam->n_input};
    for (int k = 0; k < d.n_in; k++) d.width[k] = (int)family_size(c, m->fam->input[k]);
    int nl = m->fam->n_linear;
    float *X = malloc((size_t)ntok * c->dim * sizeof(float));
    d.xc = malloc((size_t)d.chunk * c->dim * sizeof(float));
    d.scr = fwd_scratch_new();
    out->n = c->n_layers * nl;
    out->layers = calloc((size_t)out->n, sizeof(compress_layer));
    out->blocks = calloc((size_t)c->n_layers, sizeof(compress_block));
    bool ok = X && d.xc && d.scr && out->layers && out->blocks;
    for (int k = 0; k < d.n_in; k++) {
        d.cap[k] = malloc((size_t)d.chunk * d.width[k] * sizeof(float));
        ok = ok && d.cap[k];
    }
    double t0 = clock_seconds();
    if (!ok) rc = err_set(e, SPARQ_ERUNTIME, "out of memory for %ld calibration tokens", ntok);
    for (int i = 0; !rc && i < out->n; i++) out->layers[i].target_sparsity = o->target.sparsity;
    if (!rc && o->schedule != SCHEDULE_UNIFORM) rc = plan_schedule(&d, m, o, X, out, e);
    if (!rc) rc = embed_all(&d, X, e);
    int done = 0, last = o->block_count ? o->block_first + o->block_count - 1 : c->n_layers - 1;
    int todo = (last - o->block_first + 1) * nl;
    for (int l = 0; l < c->n_layers && !rc; l++) {
        if (l < o->block_first || l > last) {   /* outside --blocks: dense */
            for (int k = 0; k < nl; k++) layer_dense(m, l, k, o, out);
            if (l < o->block_first) rc = propagate(&d, l, X, e);
            continue;
        }
        hessian H[IN_MAX] = {{0}};
        double tb = clock_seconds(), f0 = d.t_forward, h0 = d.t_hessian;
        /* Block l stays float32 from its first capture to its propagation (stream.h), and what
         * the solvers made of it is kept (the spill file) before it is let go. */
        rc = model_block_acquire(m, l, e);
        if (rc) break;
        for (int k = 0; k < d.n_in && !rc; k++) rc = hessian_init(&H[k], d.width[k], e);
        /* One stage holding every layer, all inputs from the dense block; or the family's
         * true-sequential stages, the block re-run before each with earlier stages compressed.
         * Layers of a stage share their inputs, so their order within it does not matter. */
        int stages = o->true_sequential ? m->fam->n_stage : 1;
        for (int s = 0; s < stages && !rc; s++) {
            bool want[IN_MAX] = {false};
            for (int k = 0; k < nl; k++)
                if (!o->true_sequential || m->fam->linear[k].stage == s) want[input_of(m, k)] = true;
            rc = accumulate(&d, l, X, want, H, e);
            for (int k = 0; k < nl && !rc; k++) {
                if (o->true_sequential && m->fam->linear[k].stage != s) continue;
                rc = compress_layer_at(m, l, k, &H[input_of(m, k)], o, out, e);
                if (!rc && progress) progress(progress_ctx, ++done, todo);
            }
        }
        for (int k = 0; k < d.n_in; k++) hessian_free(&H[k]);
        if (!rc) rc = model_block_store(m, l, e);
        if (!rc && l < last) rc = propagate(&d, l, X, e);   /* the last block's outputs: unused */
        model_block_release(m, l);
        compress_block *cb = &out->blocks[out->n_blocks++];
        cb->index = l;
        cb->total = clock_seconds() - tb;
        cb->forward = d.t_forward - f0;
        cb->hessians = d.t_hessian - h0;
        for (int k = 0; k < nl; k++) cb->solve += out->layers[l * nl + k].report.seconds;
    }
    out->seconds = clock_seconds() - t0;
    if (!rc) {
        double pruned = 0.0, total = 0.0;
        for (int i = 0; i < out->n; i++) {
            double w = (double)out->layers[i].rows * out->layers[i].cols;
            pruned += out->layers[i].report.sparsity * w;
            total += w;
        }
        out->sparsity = pruned / total;
    } else {
        compress_report_free(out);
    }
    free(X);
    free(d.xc);
    for (int k = 0; k < d.n_in; k++) free(d.cap[k]);
    fwd_scratch_free(d.scr);
    return rc;
}
