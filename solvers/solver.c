#include "solver.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/blas.h"
#include "../core/clock.h"
#include "../core/ggml_blocks.h"

/* The registry: adding a solver is one file and one line here. */
extern const solver solver_magnitude, solver_wanda, solver_sparsegpt, solver_apt, solver_rtn,
    solver_gptq;

static const solver *const registry[] = {&solver_magnitude, &solver_wanda, &solver_sparsegpt,
                                         &solver_apt, &solver_rtn, &solver_gptq};
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
    return (target){.sparsity = 0.0, .n = 0, .m = 0, .bits = 16, .group = -1, .damp = 0.01f,
                    .block = 128, .scope = SCOPE_LAYER};
}

void layer_report_free(layer_report *r) {
    if (!r) return;
    free(r->mask);
    free(r->scale);
    free(r->zero);
    free(r->min);
    free(r->gidx);
    memset(r, 0, sizeof *r);
}

int solver_check(const solver *s, const target *t, int rows, int cols, err *e) {
    bool nm = t->n > 0 || t->m > 0;
    if (!(t->sparsity >= 0.0 && t->sparsity < 1.0))
        return err_set(e, SPARQ_EINPUT, "sparsity %g is outside [0, 1)", t->sparsity);
    if (nm) {
        if (t->n < 1 || t->m < 2 || t->n >= t->m || t->m > 64)
            return err_set(e, SPARQ_EINPUT, "N:M pattern %d:%d: need 1 <= N < M <= 64", t->n, t->m);
        if (t->sparsity > 0.0 && fabs(t->sparsity - (double)t->n / t->m) > 1e-6)
            return err_set(e, SPARQ_EINPUT, "%d:%d prunes %.4g of the weights, not sparsity %g",
                           t->n, t->m, (double)t->n / t->m, t->sparsity);
        if (cols % t->m != 0)
            return err_set(e, SPARQ_EINPUT, "%d:%d does not divide a layer of %d input columns",
                           t->n, t->m, cols);
        if (t->block > 0 && t->block % t->m != 0)
            return err_set(e, SPARQ_EINPUT, "block %d is not a multiple of M = %d", t->block, t->m);
    }
    if (!s->prunes && (nm || t->sparsity > 0.0))
        return err_set(e, SPARQ_EINPUT, "solver %s does not prune; drop --sparsity/--nm", s->name);
    if (t->bits != 16 && (t->bits < 2 || t->bits > 8))
        return err_set(e, SPARQ_EINPUT, "bits %d: expected 2 to 8, or 16 for no quantization",
                       t->bits);
    if (!s->quantizes && t->bits != 16)
        return err_set(e, SPARQ_EINPUT, "solver %s does not quantize; drop --bits", s->name);
    if (s->needs_bits && t->bits == 16)
        return err_set(e, SPARQ_EINPUT, "solver %s quantizes: give --bits 2 to 8", s->name);
    if (t->group == 0 || t->group < -1)
        return err_set(e, SPARQ_EINPUT, "group %d: expected a positive size, or -1 for one per row",
                       t->group);
    if (t->ggml) {
        const ggml_block_type *b = &ggml_block_types[t->ggml - 1];
        if (strcmp(s->name, "rtn") != 0)
            return err_set(e, SPARQ_EINPUT, "--ggml %s is ggml's own rounding, an option of rtn only; "
                           "for %s use --grid ggml", b->name, s->name);
        if (t->bits != b->bits || t->group != GGML_BLOCK || t->sym == b->has_min || t->mse)
            return err_set(e, SPARQ_EINPUT, "--ggml %s needs --bits %d --group %d%s (and no --mse)", b->name,
                           b->bits, GGML_BLOCK, b->has_min ? " without --sym" : " --sym");
    }
    if (t->block < 0 || (t->block == 0 && !s->whole_row))
        return err_set(e, SPARQ_EINPUT, "block %d must be positive%s", t->block,
                       s->whole_row ? " or 0 (whole row)" : "");
    if (t->m > 16 && s->whole_row)
        return err_set(e, SPARQ_EINPUT, "N:M with M = %d: at most 16 for %s (patterns are "
                       "enumerated)", t->m, s->name);
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

int solver_spec_parse(const char *name, bool quantize_all, solver_spec *out, err *e) {
    memset(out, 0, sizeof *out);
    out->quantize_all = quantize_all;
    snprintf(out->name, sizeof out->name, "%s", name);
    char buf[64];
    snprintf(buf, sizeof buf, "%s", name);
    char *plus = strchr(buf, '+');
    if (plus) *plus = '\0';
    const char *parts[2] = {buf, plus ? plus + 1 : NULL};
    for (int i = 0; i < 2 && parts[i]; i++) {
        out->stage[i] = solver_find(parts[i]);
        if (!out->stage[i])
            return err_set(e, SPARQ_EINPUT, "unknown solver '%s' (known: magnitude, wanda, sparsegpt, "
                           "apt, rtn, gptq, or a chain such as sparsegpt+gptq)", parts[i]);
        out->n = i + 1;
    }
    if (plus && (strchr(plus + 1, '+') || !out->stage[0]->prunes || !out->stage[1]->quantizes))
        return err_set(e, SPARQ_EINPUT, "chain '%s': expected a pruning solver then a quantizing one "
                       "(e.g. sparsegpt+gptq)", name);
    return SPARQ_OK;
}

int target_check_block(const target *t, bool prunes, const ggml_block_type *b, err *e) {
    const char *sym = b->has_min ? "" : " --sym";
    bool grid_ok = t->ggml ? &ggml_block_types[t->ggml - 1] == b : t->grid == QUANT_GRID_GGML;
    if (t->bits != b->bits || t->group != GGML_BLOCK || t->sym == b->has_min || !grid_ok)
        return err_set(e, SPARQ_EINPUT, "%s needs --bits %d --group %d%s --grid ggml (or rtn --ggml %s with "
                       "the same bits, group%s)", b->name, b->bits, GGML_BLOCK, sym, b->name,
                       b->has_min ? " and no --sym" : " and --sym");
    if (t->act_order && !t->static_groups)
        return err_set(e, SPARQ_EINPUT, "%s: --act-order groups columns in the order of H's diagonal, not in "
                       "blocks of %d; add --static-groups", b->name, GGML_BLOCK);
    if (b->has_min && prunes)
        return err_set(e, SPARQ_EINPUT, "%s cannot hold pruned weights (0 is not on a block's grid value = d q "
                       "+ m); use q4_0, q5_0 or q8_0", b->name);
    return SPARQ_OK;
}

/* The targets of the two stages of a chain: pruning at 16 bits, then quantizing the result. */
static void chain_targets(const solver_spec *s, const target *t, target *t1, target *t2) {
    *t1 = *t;
    *t2 = *t;
    if (s->n < 2) return;
    t1->bits = 16;
    t1->ggml = 0;
    t2->sparsity = 0.0;
    t2->n = t2->m = 0;
    t2->keep_mask = !s->quantize_all;
}

int solver_spec_check(const solver_spec *s, const target *t, int rows, int cols, err *e) {
    target t1, t2;
    chain_targets(s, t, &t1, &t2);
    if (s->n == 2 && t->bits == 16)
        return err_set(e, SPARQ_EINPUT, "chain %s quantizes in its second stage: give --bits 2 to 8",
                       s->name);
    int rc = solver_check(s->stage[0], &t1, rows, cols, e);
    return rc || s->n < 2 ? rc : solver_check(s->stage[1], &t2, rows, cols, e);
}

int solver_spec_run(const solver_spec *s, float *W, int rows, int cols, const float *H,
                    const target *t, layer_report *r, err *e) {
    memset(r, 0, sizeof *r);
    int rc = solver_spec_check(s, t, rows, cols, e);
    if (rc) return rc;
    for (int i = 0; i < s->n; i++)
        if (s->stage[i]->uses_hessian && !H)
            return err_set(e, SPARQ_EINPUT, "solver %s needs a Hessian", s->stage[i]->name);
    size_t n = (size_t)rows * cols;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(W[i]))
            return err_set(e, SPARQ_EINPUT, "weight (%zu, %zu) is %g", i / cols, i % cols, (double)W[i]);
    /* NaN/Inf activations reach every solver through H; stop them here, named, instead of
     * letting them become a mask or a weight. */
    for (size_t i = 0; H && i < (size_t)cols * cols; i++)
        if (!isfinite(H[i]))
            return err_set(e, SPARQ_ERUNTIME, "Hessian entry (%zu, %zu) is %g: the calibration "
                           "activations of this layer are not finite", i / cols, i % cols, (double)H[i]);
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
    target ts[2];
    chain_targets(s, t, &ts[0], &ts[1]);
    double t0 = clock_seconds();
    for (int k = 0; k < s->n && !rc; k++) {
        rc = s->stage[k]->compress(W, rows, cols, H, &ts[k], r, e);
        for (size_t i = 0; !rc && k == 0 && i < n; i++)
            if (r->mask[i]) W[i] = 0.0f;
    }
    /* Case A may turn pruned zeros into grid values again: only what is still 0 is pruned. */
    if (!rc && s->n == 2 && s->quantize_all)
        for (size_t i = 0; i < n; i++) r->mask[i] = r->mask[i] && W[i] == 0.0f;
    r->seconds = clock_seconds() - t0;
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

int solver_run(const solver *s, float *W, int rows, int cols, const float *H, const target *t,
               layer_report *r, err *e) {
    solver_spec sp = {.stage = {s, NULL}, .n = 1};
    snprintf(sp.name, sizeof sp.name, "%s", s->name);
    return solver_spec_run(&sp, W, rows, cols, H, t, r, e);
}
