#include "obs_sweep.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../core/blas.h"
#include "mask.h"
#include "obs.h"
#include "quantizer.h"

/* Inside each block, sub-blocks of this many columns keep the rank-1 updates in cache and move
 * the rest of the in-block compensation into GEMMs. */
#define SUB_BLOCK 16

/* Layout: the sweep works on W^T in sweep order (Wt[k] = column perm[k] of W, R floats), so
 * one column is one contiguous row and every compensation is an axpy or a GEMM. */
typedef struct {
    int R, C, B;
    const target *t;
    obs_sweep_mask mode;
    float *Wt;                /* [C][R]                                                     */
    const float *U;           /* [C][C] upper factor of (P H P^T)^-1                        */
    float *Et;                /* [B][R] scaled errors of the block                          */
    uint8_t *M1;              /* [B][R] pruned entries of the block (inside the [C][R] mask) */
    float *snap;              /* [B][R] the block as it was at its start (group refits)     */
    const int *perm;          /* sweep position -> original column                          */
    int g, ng;                /* group size and count (g = C, ng = 1: per row)              */
    bool quant, dynamic;      /* quantize; refit groups during the sweep                    */
    quant_params *qp;         /* [R][ng]                                                    */
    int *group_of;            /* [C] sweep position -> group                                */
    int fail;                 /* a refit met a non-finite weight                            */
} sweep;

/* GPTQ's dynamic group refit at sweep position k (algorithms.md §4 step 5): the weights of
 * the group as the global W holds them, i.e. with lazy updates of earlier blocks but without
 * the in-block updates of this block's earlier columns. Replicated for bit-exactness. */
static void refit_group(sweep *s, int a, int k, int i0, int i1, float *buf) {
    int b = a + s->B < s->C ? a + s->B : s->C, end = k + s->g < s->C ? k + s->g : s->C;
    for (int i = i0; i < i1; i++) {
        for (int c = k; c < end; c++)
            buf[c - k] = c < b ? s->snap[(size_t)(c - a) * s->R + i] : s->Wt[(size_t)c * s->R + i];
        if (quant_fit(buf, end - k, 1, s->t->bits, s->t->sym, s->t->mse, s->t->grid,
                      &s->qp[(size_t)i * s->ng + s->group_of[k]], NULL))
        {
            #pragma omp atomic write
            s->fail = 1;
        }
    }
}

/* Columns k0..k1-1 of the block starting at a, rows i0..i1-1. */
static void sweep_sub_block(sweep *s, int a, int k0, int k1, int i0, int i1, float *buf) {
    int R = s->R, C = s->C, m = s->t->m;
    for (int k = k0; k < k1; k++) {
        int j = a + k;
        float *wj = s->Wt + (size_t)j * R, *ek = s->Et + (size_t)k * R;
        uint8_t *mk = s->M1 + (size_t)k * R;
        if (s->mode == OBS_SWEEP_MASK_NM && k % m == 0) {
            /* The group's saliencies use the current, already compensated weights. */
            for (int i = i0; i < i1; i++) {
                float sc[64];
                uint8_t pick[64] = {0};
                for (int q = 0; q < m; q++) {
                    float w = s->Wt[(size_t)(j + q) * R + i], d = s->U[(size_t)(j + q) * C + j + q];
                    sc[q] = w * w / (d * d);
                }
                mask_nm(sc, m, s->t->n, m, pick);
                for (int q = 0; q < m; q++) s->M1[(size_t)(k + q) * R + i] |= pick[q];
            }
        }
        if (s->quant && s->dynamic && j % s->g == 0) refit_group(s, a, j, i0, i1, buf);
        float d = s->U[(size_t)j * C + j];
        const quant_params *qp = s->quant ? s->qp + s->group_of[j] : NULL;
        for (int i = i0; i < i1; i++) {
            float v = wj[i], q = mk[i] ? 0.0f : v;
            if (qp && !mk[i]) q = quant_value(q, &qp[(size_t)i * s->ng]);
            ek[i] = (v - q) / d;
            wj[i] = q;
        }
        for (int kk = k + 1; kk < k1; kk++) {
            float u = s->U[(size_t)j * C + a + kk];
            float *w = s->Wt + (size_t)(a + kk) * R;
            for (int i = i0; i < i1; i++) w[i] -= u * ek[i];
        }
    }
}

/* act-order: columns by decreasing H_jj (dead inputs count as 1), ties by index (stable). */
typedef struct { float h; int j; } diag_entry;
static int by_diag_desc(const void *x, const void *y) {
    const diag_entry *a = x, *b = y;
    if (a->h != b->h) return a->h > b->h ? -1 : 1;
    return (a->j > b->j) - (a->j < b->j);
}

/* The transposes of obs_sweep.h, in tiles of TILE x TILE. */
#define TILE 32

void obs_sweep_transpose_in(const float *W, int R, int C, const int *perm, const uint8_t *dead,
                            float *Wt) {
    #pragma omp parallel for collapse(2) schedule(static) if ((long)R * C > 65536)
    for (int k0 = 0; k0 < C; k0 += TILE)
        for (int i0 = 0; i0 < R; i0 += TILE)
            for (int k = k0; k < k0 + TILE && k < C; k++) {
                int c = perm[k];
                for (int i = i0; i < i0 + TILE && i < R; i++)
                    Wt[(size_t)k * R + i] = dead[c] ? 0.0f : W[(size_t)i * C + c];
            }
}

void obs_sweep_transpose_out(const float *Wt, int R, int C, const int *perm, float *W) {
    #pragma omp parallel for collapse(2) schedule(static) if ((long)R * C > 65536)
    for (int i0 = 0; i0 < R; i0 += TILE)
        for (int k0 = 0; k0 < C; k0 += TILE)
            for (int i = i0; i < i0 + TILE && i < R; i++)
                for (int k = k0; k < k0 + TILE && k < C; k++)
                    W[(size_t)i * C + perm[k]] = Wt[(size_t)k * R + i];
}

void obs_sweep_transpose_mask_in(const uint8_t *M, int R, int C, const int *perm, uint8_t *Mk) {
    #pragma omp parallel for collapse(2) schedule(static) if ((long)R * C > 65536)
    for (int k0 = 0; k0 < C; k0 += TILE)
        for (int i0 = 0; i0 < R; i0 += TILE)
            for (int k = k0; k < k0 + TILE && k < C; k++)
                for (int i = i0; i < i0 + TILE && i < R; i++)
                    Mk[(size_t)k * R + i] = M[(size_t)i * C + perm[k]];
}

void obs_sweep_transpose_mask_out(const uint8_t *Mk, int R, int C, const int *perm, uint8_t *M) {
    #pragma omp parallel for collapse(2) schedule(static) if ((long)R * C > 65536)
    for (int i0 = 0; i0 < R; i0 += TILE)
        for (int k0 = 0; k0 < C; k0 += TILE)
            for (int i = i0; i < i0 + TILE && i < R; i++)
                for (int k = k0; k < k0 + TILE && k < C; k++)
                    M[(size_t)i * C + perm[k]] |= Mk[(size_t)k * R + i];
}

static int setup_quant(sweep *s, const float *W, const uint8_t *dead, layer_report *r, err *e) {
    const target *t = s->t;
    int R = s->R, C = s->C;
    s->g = t->group > 0 && t->group < C ? t->group : C;
    s->ng = (C + s->g - 1) / s->g;
    s->dynamic = s->ng > 1 && !t->static_groups;
    s->qp = calloc((size_t)R * s->ng, sizeof(quant_params));
    s->group_of = malloc((size_t)C * sizeof(int));
    r->scale = malloc((size_t)R * s->ng * sizeof(float));
    r->zero = malloc((size_t)R * s->ng * sizeof(float));
    if (!s->qp || !s->group_of || !r->scale || !r->zero)
        return err_set(e, SPARQ_ERUNTIME, "out of memory for quantization parameters");
    r->group = s->ng > 1 ? s->g : -1;
    r->n_groups = s->ng;
    /* Static groups follow the original column order; dynamic ones the sweep order. */
    for (int k = 0; k < C; k++) s->group_of[k] = s->dynamic ? k / s->g : s->perm[k] / s->g;
    if (t->act_order && s->ng > 1) {
        r->gidx = malloc((size_t)C * sizeof(int));
        if (!r->gidx) return err_set(e, SPARQ_ERUNTIME, "out of memory");
        for (int k = 0; k < C; k++) r->gidx[s->perm[k]] = s->group_of[k];
    }
    if (s->dynamic) return SPARQ_OK;
    /* Per row: fitted on the dense rows before the dead fix, as both references do. Static
     * groups: fitted on the dead-fixed W in original order (gptq.py). */
    float *buf = malloc((size_t)s->g * sizeof(float));
    if (!buf) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    int rc = SPARQ_OK;
    for (int i = 0; i < R && !rc; i++) {
        for (int q = 0; q < s->ng && !rc; q++) {
            int c0 = q * s->g, n = c0 + s->g < C ? s->g : C - c0;
            for (int c = 0; c < n; c++)
                buf[c] = s->ng > 1 && dead[c0 + c] ? 0.0f : W[(size_t)i * C + c0 + c];
            rc = quant_fit(buf, n, 1, t->bits, t->sym, t->mse, t->grid, &s->qp[(size_t)i * s->ng + q], e);
        }
    }
    free(buf);
    return rc;
}

int obs_sweep(float *W, int rows, int cols, const float *H, const target *t, obs_sweep_mask mode,
              layer_report *r, err *e) {
    int R = rows, C = cols, B = t->block < C ? t->block : C;
    int sub = mode == OBS_SWEEP_MASK_NM ? t->m * (SUB_BLOCK / t->m > 1 ? SUB_BLOCK / t->m : 1) : SUB_BLOCK;
    bool prunes = mode != OBS_SWEEP_MASK_NONE;
    sweep s = {.R = R, .C = C, .B = B, .t = t, .mode = mode, .quant = t->bits < 16};
    obs_factor f = {0};
    int *perm = malloc((size_t)C * sizeof(int));
    float *diag = malloc((size_t)C * sizeof(float));
    uint8_t *dead = malloc((size_t)C);
    s.Wt = malloc((size_t)C * R * sizeof(float));
    s.Et = malloc((size_t)B * R * sizeof(float));
    s.snap = malloc((size_t)B * R * sizeof(float));
    float *score = malloc((size_t)B * R * sizeof(float)), *tmp = malloc((size_t)B * R * sizeof(float));
    uint8_t *Mk = calloc((size_t)C * R, 1);        /* pruned entries, sweep order [C][R] */
    int rc = SPARQ_OK;
    if (!perm || !diag || !dead || !s.Wt || !s.Et || !s.snap || !score || !tmp || !Mk) {
        rc = err_set(e, SPARQ_ERUNTIME, "out of memory for a %d x %d layer", R, C);
        goto done;
    }
    for (int j = 0; j < C; j++) {
        float h = H[(size_t)j * C + j];
        perm[j] = j;
        dead[j] = h == 0.0f;
        diag[j] = dead[j] ? 1.0f : h;
    }
    if (t->act_order) {
        diag_entry *de = malloc((size_t)C * sizeof *de);
        if (!de) { rc = err_set(e, SPARQ_ERUNTIME, "out of memory"); goto done; }
        for (int j = 0; j < C; j++) de[j] = (diag_entry){diag[j], j};
        qsort(de, (size_t)C, sizeof *de, by_diag_desc);
        for (int j = 0; j < C; j++) perm[j] = de[j].j;
        free(de);
    }
    s.perm = perm;
    if (s.quant && (rc = setup_quant(&s, W, dead, r, e))) goto done;
    if ((rc = obs_factor_init_perm(&f, H, C, t->act_order ? perm : NULL, t->damp, e))) goto done;
    r->damp = f.damp;
    s.U = f.U;

    /* Sweep order, dead inputs zeroed (algorithms.md §0: no effect on calibration outputs). */
    obs_sweep_transpose_in(W, R, C, perm, dead, s.Wt);
    if (mode == OBS_SWEEP_MASK_FIXED) obs_sweep_transpose_mask_in(r->mask, R, C, perm, Mk);
    if (prunes)
        for (int k = 0; k < C; k++)
            if (dead[perm[k]]) memset(Mk + (size_t)k * R, 1, (size_t)R);

    /* Rows are independent within a block: each thread sweeps its own slice of rows through
     * every sub-block and applies the in-block and lazy GEMMs to that slice, so one parallel
     * region per block suffices. Slices are multiples of 16 for aligned vector loops. */
    int nt = R >= 256 ? omp_get_max_threads() : 1;
    int slice = ((R + nt - 1) / nt + 15) & ~15;
    for (int a = 0; a < C; a += B) {
        int b = a + B < C ? a + B : C, nb = b - a;
        s.M1 = Mk + (size_t)a * R;
        if (s.dynamic) memcpy(s.snap, s.Wt + (size_t)a * R, (size_t)nb * R * sizeof(float));
        if (mode == OBS_SWEEP_MASK_ADAPTIVE) {
            /* The adaptive mask: pooled over all rows of the block, from weights that already
             * hold the compensation of earlier blocks. */
            #pragma omp parallel for schedule(static) if (nb * R > 65536)
            for (int k = 0; k < nb; k++) {
                float d = f.U[(size_t)(a + k) * C + a + k];
                const float *w = s.Wt + (size_t)(a + k) * R;
                for (int i = 0; i < R; i++) score[(size_t)k * R + i] = w[i] * w[i] / (d * d);
            }
            mask_threshold(score, (size_t)nb * R, t->sparsity, s.M1, tmp);
        }
        #pragma omp parallel num_threads(nt)
        {
            int th = omp_get_thread_num();
            int i0 = th * slice < R ? th * slice : R, i1 = i0 + slice < R ? i0 + slice : R;
            float *buf = malloc((size_t)s.g * sizeof(float) + 1);
            if (!buf) {
                #pragma omp atomic write
                s.fail = 1;
            }
            for (int k0 = 0; buf && i0 < i1 && k0 < nb; k0 += sub) {
                int k1 = k0 + sub < nb ? k0 + sub : nb;
                sweep_sub_block(&s, a, k0, k1, i0, i1, buf);
                /* The rest of the block receives this sub-block's errors in one GEMM. */
                if (k1 < nb)
                    blas_gemm(true, false, nb - k1, i1 - i0, k1 - k0, -1.0f,
                              f.U + (size_t)(a + k0) * C + a + k1, C, s.Et + (size_t)k0 * R + i0, R, 1.0f,
                              s.Wt + (size_t)(a + k1) * R + i0, R);
            }
            /* algorithms.md §3: lazy batch update of the columns right of the block. */
            if (buf && i0 < i1 && b < C)
                blas_gemm(true, false, C - b, i1 - i0, nb, -1.0f, f.U + (size_t)a * C + b, C, s.Et + i0, R,
                          1.0f, s.Wt + (size_t)b * R + i0, R);
            free(buf);
        }
        if (s.fail) {
            rc = err_set(e, SPARQ_ERUNTIME, "a quantization group became non-finite mid-sweep");
            goto done;
        }
    }
    obs_sweep_transpose_out(s.Wt, R, C, perm, W);
    obs_sweep_transpose_mask_out(Mk, R, C, perm, r->mask);
    if (s.quant && t->grid == QUANT_GRID_GGML && !t->sym &&
        !(r->min = malloc((size_t)R * s.ng * sizeof(float)))) {
        rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
        goto done;
    }
    if (s.quant)
        for (size_t i = 0; i < (size_t)R * s.ng; i++) {
            r->scale[i] = s.qp[i].scale;
            r->zero[i] = s.qp[i].zero;
            if (r->min) r->min[i] = s.qp[i].min;
        }
done:
    free(s.Wt); free(s.Et); free(s.snap); free(s.qp); free(s.group_of);
    free(perm); free(diag); free(dead); free(score); free(tmp); free(Mk);
    obs_factor_free(&f);
    return rc;
}
