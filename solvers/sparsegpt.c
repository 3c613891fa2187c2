/* SparseGPT, algorithms.md §3 (IST-DASLab/sparsegpt fasterprune): blocked OBS sweep over the
 * columns with an adaptive per-block mask (unstructured) or per-group choice (N:M), error
 * compensation into the columns to the right only, lazy batch updates, and optional joint
 * quantization of the kept weights in the same sweep (per-row asymmetric grid fitted on the
 * dense rows before the sweep, as the reference does).
 *
 * Layout: the sweep works on W^T (cols x rows), so "column j of W" is one contiguous row and
 * every compensation is an axpy over contiguous memory or a GEMM. Inside each 128-column
 * block a second level of 16-column sub-blocks keeps the rank-1 updates in cache and moves the
 * rest of the in-block compensation into GEMMs too. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../core/blas.h"
#include "mask.h"
#include "obs.h"
#include "quantizer.h"
#include "solver.h"

#define SUB_BLOCK 16

typedef struct {
    int R, C;                 /* rows and columns of W                        */
    float *Wt;                /* [C][R]                                       */
    const float *U;           /* [C][C] upper factor of H^-1                  */
    float *Et;                /* [block][R]: scaled errors of the block       */
    uint8_t *M1;              /* [block][R]: pruned entries of the block      */
    const quant_params *qp;   /* [R] or NULL                                  */
    const target *t;
} sweep;

/* Columns k0..k1-1 of the block starting at a, for rows i0..i1-1: choose N:M groups, prune or
 * quantize each column, and compensate the later columns of the sub-block. */
static void sweep_sub_block(const sweep *s, int a, int k0, int k1, int i0, int i1) {
    int R = s->R, C = s->C, m = s->t->m;
    for (int k = k0; k < k1; k++) {
        int j = a + k;
        float *wj = s->Wt + (size_t)j * R, *ek = s->Et + (size_t)k * R;
        uint8_t *mk = s->M1 + (size_t)k * R;
        if (m > 0 && k % m == 0) {
            /* The group's scores use the current, already compensated weights. */
            for (int i = i0; i < i1; i++) {
                float sc[64];
                uint8_t pick[64] = {0};
                for (int g = 0; g < m; g++) {
                    float w = s->Wt[(size_t)(j + g) * R + i], d = s->U[(size_t)(j + g) * C + j + g];
                    sc[g] = w * w / (d * d);
                }
                mask_nm(sc, m, s->t->n, m, pick);
                for (int g = 0; g < m; g++) s->M1[(size_t)(k + g) * R + i] = pick[g];
            }
        }
        float d = s->U[(size_t)j * C + j];
        for (int i = i0; i < i1; i++) {
            float v = wj[i], q = mk[i] ? 0.0f : v;
            if (s->qp && !mk[i]) q = quant_value(q, &s->qp[i]);
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

static int sparsegpt_compress(float *W, int rows, int cols, const float *H, const target *t,
                              layer_report *r, err *e) {
    int R = rows, C = cols, B = t->block < C ? t->block : C;
    bool nm = t->m > 0;
    int sub = nm ? t->m * (SUB_BLOCK / t->m > 1 ? SUB_BLOCK / t->m : 1) : SUB_BLOCK;
    quant_params *qp = NULL;
    int rc = SPARQ_OK;
    if (t->bits < 16) {
        qp = malloc((size_t)R * sizeof *qp);
        r->scale = malloc((size_t)R * sizeof(float));
        r->zero = malloc((size_t)R * sizeof(float));
        if (!qp || !r->scale || !r->zero) { free(qp); return err_set(e, SPARQ_ERUNTIME, "out of memory"); }
        for (int i = 0; i < R && !rc; i++) {
            rc = quant_fit(W + (size_t)i * C, C, 1, t->bits, t->sym, t->mse, &qp[i], e);
            r->scale[i] = qp[i].scale;
            r->zero[i] = qp[i].zero;
        }
        r->group = -1;
        r->n_groups = 1;
        if (rc) { free(qp); return rc; }
    }
    obs_factor f;
    rc = obs_factor_init(&f, H, C, t->damp, e);
    if (rc) { free(qp); return rc; }
    r->damp = f.damp;

    float *Wt = malloc((size_t)C * R * sizeof(float));
    float *Et = malloc((size_t)B * R * sizeof(float));
    uint8_t *M1 = malloc((size_t)B * R);
    float *score = malloc((size_t)B * R * sizeof(float)), *tmp = malloc((size_t)B * R * sizeof(float));
    if (!Wt || !Et || !M1 || !score || !tmp) {
        rc = err_set(e, SPARQ_ERUNTIME, "out of memory for a %d x %d layer", R, C);
        goto done;
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) Wt[(size_t)j * R + i] = W[(size_t)i * C + j];
    /* Dead inputs: the weights never met a non-zero input, so zeroing them costs nothing. */
    for (int j = 0; j < C; j++) {
        if (!f.dead[j]) continue;
        memset(Wt + (size_t)j * R, 0, (size_t)R * sizeof(float));
        for (int i = 0; i < R; i++) r->mask[(size_t)i * C + j] = 1;
    }

    sweep s = {.R = R, .C = C, .Wt = Wt, .U = f.U, .Et = Et, .M1 = M1, .qp = qp, .t = t};
    for (int a = 0; a < C; a += B) {
        int b = a + B < C ? a + B : C, nb = b - a;
        memset(M1, 0, (size_t)nb * R);
        if (!nm && t->sparsity > 0.0f) {
            /* The adaptive mask: pooled over all rows of the block, from weights that already
             * hold the compensation of earlier blocks. */
            for (int k = 0; k < nb; k++) {
                float d = f.U[(size_t)(a + k) * C + a + k];
                const float *w = Wt + (size_t)(a + k) * R;
                for (int i = 0; i < R; i++) score[(size_t)k * R + i] = w[i] * w[i] / (d * d);
            }
            mask_threshold(score, (size_t)nb * R, t->sparsity, M1, tmp);
        }
        for (int k0 = 0; k0 < nb; k0 += sub) {
            int k1 = k0 + sub < nb ? k0 + sub : nb;
            int nt = R >= 256 ? omp_get_max_threads() : 1;
            #pragma omp parallel num_threads(nt)
            {
                int th = omp_get_thread_num(), n_th = omp_get_num_threads();
                int i0 = (int)((long)R * th / n_th), i1 = (int)((long)R * (th + 1) / n_th);
                sweep_sub_block(&s, a, k0, k1, i0, i1);
            }
            /* The rest of the block receives this sub-block's errors in one GEMM. */
            if (k1 < nb)
                blas_gemm(true, false, nb - k1, R, k1 - k0, -1.0f, f.U + (size_t)(a + k0) * C + a + k1, C,
                          Et + (size_t)k0 * R, R, 1.0f, Wt + (size_t)(a + k1) * R, R);
        }
        /* algorithms.md §3: lazy batch update of the columns right of the block. */
        if (b < C)
            blas_gemm(true, false, C - b, R, nb, -1.0f, f.U + (size_t)a * C + b, C, Et, R, 1.0f,
                      Wt + (size_t)b * R, R);
        for (int k = 0; k < nb; k++)
            for (int i = 0; i < R; i++)
                if (M1[(size_t)k * R + i]) r->mask[(size_t)i * C + a + k] = 1;
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) W[(size_t)i * C + j] = Wt[(size_t)j * R + i];
done:
    free(Wt); free(Et); free(M1); free(score); free(tmp); free(qp);
    obs_factor_free(&f);
    return rc;
}

const solver solver_sparsegpt = {
    .name = "sparsegpt", .compress = sparsegpt_compress, .uses_hessian = true, .prunes = true,
    .quantizes = true,
};
