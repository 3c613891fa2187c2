#include "solver.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/blas.h"

/* The registry: adding a solver is one file and one line here. */
extern const solver solver_magnitude, solver_wanda, solver_sparsegpt;

static const solver *const registry[] = {&solver_magnitude, &solver_wanda, &solver_sparsegpt};
#define N_SOLVERS (int)(sizeof registry / sizeof registry[0])

const solver *solver_find(const char *name) {
    for (int i = 0; i < N_SOLVERS; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

const char *const *solver_names(void) {
    static const char *names[N_SOLVERS + 1];
    for (int i = 0; i < N_SOLVERS; i++) names[i] = registry[i]->name;
    return names;
}

target target_default(void) {
    return (target){.sparsity = 0.0f, .n = 0, .m = 0, .bits = 16, .group = -1, .damp = 0.01f,
                    .block = 128, .scope = SCOPE_LAYER};
}

void layer_report_free(layer_report *r) {
    if (!r) return;
    free(r->mask);
    free(r->scale);
    free(r->zero);
    free(r->gidx);
    memset(r, 0, sizeof *r);
}

int solver_check(const solver *s, const target *t, int rows, int cols, err *e) {
    bool nm = t->n > 0 || t->m > 0;
    if (!(t->sparsity >= 0.0f && t->sparsity < 1.0f))
        return err_set(e, SPARQ_EINPUT, "sparsity %g is outside [0, 1)", (double)t->sparsity);
    if (nm) {
        if (t->n < 1 || t->m < 2 || t->n >= t->m || t->m > 64)
            return err_set(e, SPARQ_EINPUT, "N:M pattern %d:%d: need 1 <= N < M <= 64", t->n, t->m);
        if (t->sparsity > 0.0f && fabsf(t->sparsity - (float)t->n / t->m) > 1e-6f)
            return err_set(e, SPARQ_EINPUT, "%d:%d prunes %.4g of the weights, not sparsity %g",
                           t->n, t->m, (double)t->n / t->m, (double)t->sparsity);
        if (cols % t->m != 0)
            return err_set(e, SPARQ_EINPUT, "%d:%d does not divide a layer of %d input columns",
                           t->n, t->m, cols);
        if (t->block % t->m != 0)
            return err_set(e, SPARQ_EINPUT, "block %d is not a multiple of M = %d", t->block, t->m);
    }
    if (!s->prunes && (nm || t->sparsity > 0.0f))
        return err_set(e, SPARQ_EINPUT, "solver %s does not prune; drop --sparsity/--nm", s->name);
    if (t->bits != 16 && (t->bits < 2 || t->bits > 8))
        return err_set(e, SPARQ_EINPUT, "bits %d: expected 2 to 8, or 16 for no quantization",
                       t->bits);
    if (!s->quantizes && t->bits != 16)
        return err_set(e, SPARQ_EINPUT, "solver %s does not quantize; drop --bits", s->name);
    if (t->block < 1)
        return err_set(e, SPARQ_EINPUT, "block %d must be positive", t->block);
    if (!(t->damp >= 0.0f && t->damp <= 1.0f))
        return err_set(e, SPARQ_EINPUT, "damping %g is outside [0, 1]", (double)t->damp);
    if (rows < 1 || cols < 1)
        return err_set(e, SPARQ_EINPUT, "empty layer %d x %d", rows, cols);
    return SPARQ_OK;
}

/* 1/2 tr(D H D^T) with D = W0 - W: the exact ||W0 X - W X||^2 / N for H = 2/N X X^T. */
static int exact_loss(const float *W0, const float *W, int rows, int cols, const float *H,
                      double *loss, err *e) {
    float *D = malloc((size_t)rows * cols * sizeof(float));
    float *DH = malloc((size_t)rows * cols * sizeof(float));
    if (!D || !DH) {
        free(D); free(DH);
        return err_set(e, SPARQ_ERUNTIME, "out of memory for the loss of a %d x %d layer", rows, cols);
    }
    for (size_t i = 0; i < (size_t)rows * cols; i++) D[i] = W0[i] - W[i];
    blas_gemm(false, false, rows, cols, cols, 1.0f, D, cols, H, cols, 0.0f, DH, cols);
    double s = 0.0;
    for (size_t i = 0; i < (size_t)rows * cols; i++) s += (double)D[i] * DH[i];
    *loss = 0.5 * s;
    free(D);
    free(DH);
    return SPARQ_OK;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int solver_run(const solver *s, float *W, int rows, int cols, const float *H, const target *t,
               layer_report *r, err *e) {
    memset(r, 0, sizeof *r);
    int rc = solver_check(s, t, rows, cols, e);
    if (rc) return rc;
    if (s->uses_hessian && !H) return err_set(e, SPARQ_EINPUT, "solver %s needs a Hessian", s->name);
    size_t n = (size_t)rows * cols;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(W[i]))
            return err_set(e, SPARQ_EINPUT, "weight (%zu, %zu) is %g", i / cols, i % cols, (double)W[i]);
    float *W0 = malloc(n * sizeof(float));
    r->mask = calloc(n, 1);
    if (!W0 || !r->mask) {
        free(W0);
        layer_report_free(r);
        return err_set(e, SPARQ_ERUNTIME, "out of memory for a %d x %d layer", rows, cols);
    }
    memcpy(W0, W, n * sizeof(float));
    r->bits = t->bits;
    r->damp = t->damp;
    double t0 = now();
    rc = s->compress(W, rows, cols, H, t, r, e);
    r->seconds = now() - t0;
    size_t pruned = 0;
    for (size_t i = 0; rc == SPARQ_OK && i < n; i++) {
        if (r->mask[i]) { W[i] = 0.0f; pruned++; }
        if (!isfinite(W[i]))
            rc = err_set(e, SPARQ_ERUNTIME, "solver %s produced a non-finite weight at (%zu, %zu)",
                         s->name, i / cols, i % cols);
    }
    if (rc == SPARQ_OK) {
        r->sparsity = (double)pruned / (double)n;
        r->loss = 0.0;
        if (H) rc = exact_loss(W0, W, rows, cols, H, &r->loss, e);
    }
    if (rc) {
        memcpy(W, W0, n * sizeof(float));   /* a failed solve leaves the layer as it was */
        layer_report_free(r);
    }
    free(W0);
    return rc;
}
