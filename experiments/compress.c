#include "compress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/forward.h"
#include "../core/hessian.h"

/* Tokens per forward_block call while capturing: bounds the capture buffers. */
#define CHUNK_TOKENS 8192

/* The four distinct inputs of a block's linear layers. */
enum { IN_QKV, IN_O, IN_FFN, IN_DOWN, IN_COUNT };

static int input_of(linear_kind k) {
    switch (k) {
    case LIN_Q: case LIN_K: case LIN_V: return IN_QKV;
    case LIN_O: return IN_O;
    case LIN_GATE: case LIN_UP: return IN_FFN;
    default: return IN_DOWN;
    }
}

void compress_report_free(compress_report *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) layer_report_free(&r->layers[i].report);
    free(r->layers);
    memset(r, 0, sizeof *r);
}

int compress_check(const model *m, const compress_options *o, err *e) {
    if (o->schedule != SCHEDULE_UNIFORM && (o->target.m > 0 || o->target.sparsity <= 0.0))
        return err_set(e, SPARQ_EINPUT, "schedule %s allocates unstructured sparsity: give "
                       "--sparsity, not N:M", schedule_name(o->schedule));
    for (int k = 0; k < LIN_COUNT; k++) {
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
    float *cap[IN_COUNT];        /* capture buffers, [CHUNK][width]              */
    int    width[IN_COUNT];
    int    chunk;                /* tokens per chunk, >= the longest sequence     */
} driver;

/* Run block l over all calibration sequences (hidden states X, not modified) and accumulate
 * the Hessians of the inputs flagged in want[]. */
static int accumulate(driver *d, int l, const float *X, const bool want[IN_COUNT],
                      hessian H[IN_COUNT], err *e) {
    const token_seqs *c = d->calib;
    int dim = d->m->cfg.dim;
    for (int i = 0; i < c->n;) {
        int j = i, ntok = 0;
        while (j < c->n && ntok + c->lens[j] <= d->chunk) ntok += c->lens[j++];
        memcpy(d->xc, X + c->offs[i] * dim, (size_t)ntok * dim * sizeof(float));
        block_inputs cap = {want[IN_QKV] ? d->cap[IN_QKV] : NULL, want[IN_O] ? d->cap[IN_O] : NULL,
                            want[IN_FFN] ? d->cap[IN_FFN] : NULL, want[IN_DOWN] ? d->cap[IN_DOWN] : NULL};
        fwd_batch b = {.n_seq = j - i, .lens = c->lens + i, .n_tok = ntok};
        int rc = forward_block(d->m, l, d->xc, &b, &cap, d->scr, e);
        if (rc) return rc;
        for (int k = 0; k < IN_COUNT; k++)
            if (want[k]) hessian_accumulate(&H[k], d->cap[k], ntok);
        i = j;
    }
    for (int k = 0; k < IN_COUNT; k++)
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
        int rc = forward_block(d->m, l, X + c->offs[i] * dim, &b, NULL, d->scr, e);
        if (rc) return rc;
        i = j;
    }
    return SPARQ_OK;
}

static int compress_layer_at(model *m, int l, linear_kind k, const hessian *H,
                             const compress_options *o, compress_report *out, err *e) {
    linear *lin = &m->blocks[l].lin[k];
    compress_layer *cl = &out->layers[l * LIN_COUNT + k];
    snprintf(cl->name, sizeof cl->name, "%d.%s", l, linear_names[k]);
    cl->rows = lin->rows;
    cl->cols = lin->cols;
    if (o->dense_cols > 0 && lin->cols % o->dense_cols) {   /* left as it is, counted at 16 bits */
        cl->report = (layer_report){.bits = 16, .group = -1, .damp = o->target.damp};
        return SPARQ_OK;
    }
    target t = o->target;
    t.sparsity = cl->target_sparsity;
    int rc = solver_spec_run(&o->solver, lin->w, lin->rows, lin->cols, H->H, &t, &cl->report, e);
    if (rc) {
        err inner = *e;
        err_set(e, rc, "layer %s (%d x %d): %s", cl->name, lin->rows, lin->cols, inner.msg);
    }
    return rc;
}

/* The sub-groups of true-sequential mode, in the reference order, and their inputs. */
static const linear_kind stage_layers[4][3] = {
    {LIN_K, LIN_V, LIN_Q}, {LIN_O, LIN_COUNT, LIN_COUNT}, {LIN_UP, LIN_GATE, LIN_COUNT},
    {LIN_DOWN, LIN_COUNT, LIN_COUNT}};

/* First pass of a non-uniform schedule: measure every layer of the dense model (dense inputs
 * propagated block by block), then allocate the per-layer sparsities. */
static int plan_schedule(driver *d, model *m, const compress_options *o, float *X,
                         compress_report *out, err *e) {
    const model_config *c = &m->cfg;
    int n = c->n_layers * LIN_COUNT;
    schedule_layer *st = calloc((size_t)n, sizeof *st);
    double *alloc = malloc((size_t)n * sizeof(double));
    int rc = st && alloc ? SPARQ_OK : err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (!rc) rc = forward_embed(m, d->calib->tokens, (int)(d->calib->offs[d->calib->n - 1] +
                                d->calib->lens[d->calib->n - 1]), X, e);
    for (int l = 0; l < c->n_layers && !rc; l++) {
        hessian H[IN_COUNT] = {{0}};
        bool want[IN_COUNT] = {true, true, true, true};
        for (int k = 0; k < IN_COUNT && !rc; k++) rc = hessian_init(&H[k], d->width[k], e);
        if (!rc) rc = accumulate(d, l, X, want, H, e);
        for (int k = 0; k < LIN_COUNT && !rc; k++) {
            const linear *lin = &m->blocks[l].lin[k];
            rc = schedule_measure(lin->w, lin->rows, lin->cols, H[input_of((linear_kind)k)].H,
                                  o->target.sparsity, o->target.damp, &st[l * LIN_COUNT + k], e);
            st[l * LIN_COUNT + k].block = l;
        }
        for (int k = 0; k < IN_COUNT; k++) hessian_free(&H[k]);
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
    driver d = {.m = m, .calib = calib, .chunk = maxlen > CHUNK_TOKENS ? maxlen : CHUNK_TOKENS};
    d.width[IN_QKV] = d.width[IN_FFN] = c->dim;
    d.width[IN_O] = c->n_heads * c->head_size;
    d.width[IN_DOWN] = c->hidden_dim;
    float *X = malloc((size_t)ntok * c->dim * sizeof(float));
    d.xc = malloc((size_t)d.chunk * c->dim * sizeof(float));
    d.scr = fwd_scratch_new();
    out->n = c->n_layers * LIN_COUNT;
    out->layers = calloc((size_t)out->n, sizeof(compress_layer));
    bool ok = X && d.xc && d.scr && out->layers;
    for (int k = 0; k < IN_COUNT; k++) {
        d.cap[k] = malloc((size_t)d.chunk * d.width[k] * sizeof(float));
        ok = ok && d.cap[k];
    }
    double t0 = clock_seconds();
    if (!ok) rc = err_set(e, SPARQ_ERUNTIME, "out of memory for %ld calibration tokens", ntok);
    for (int i = 0; !rc && i < out->n; i++) out->layers[i].target_sparsity = o->target.sparsity;
    if (!rc && o->schedule != SCHEDULE_UNIFORM) rc = plan_schedule(&d, m, o, X, out, e);
    if (!rc) rc = forward_embed(m, calib->tokens, (int)ntok, X, e);
    int done = 0;
    for (int l = 0; l < c->n_layers && !rc; l++) {
        hessian H[IN_COUNT] = {{0}};
        for (int k = 0; k < IN_COUNT && !rc; k++) rc = hessian_init(&H[k], d.width[k], e);
        if (!o->true_sequential) {
            /* All four inputs from the dense block, then all seven layers. */
            bool want[IN_COUNT] = {true, true, true, true};
            if (!rc) rc = accumulate(&d, l, X, want, H, e);
            for (int k = 0; k < LIN_COUNT && !rc; k++) {
                rc = compress_layer_at(m, l, (linear_kind)k, &H[input_of((linear_kind)k)], o, out, e);
                if (!rc && progress) progress(progress_ctx, ++done, out->n);
            }
        } else {
            for (int s = 0; s < 4 && !rc; s++) {
                bool want[IN_COUNT] = {false};
                want[input_of(stage_layers[s][0])] = true;
                rc = accumulate(&d, l, X, want, H, e);
                for (int i = 0; i < 3 && !rc && stage_layers[s][i] != LIN_COUNT; i++) {
                    linear_kind k = stage_layers[s][i];
                    rc = compress_layer_at(m, l, k, &H[input_of(k)], o, out, e);
                    if (!rc && progress) progress(progress_ctx, ++done, out->n);
                }
            }
        }
        for (int k = 0; k < IN_COUNT; k++) hessian_free(&H[k]);
        if (!rc) rc = propagate(&d, l, X, e);
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
    for (int k = 0; k < IN_COUNT; k++) free(d.cap[k]);
    fwd_scratch_free(d.scr);
    return rc;
}
