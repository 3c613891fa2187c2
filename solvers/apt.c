/* APT: optimal multi-weight pruning (Zhao et al. 2024; algorithms.md §5, our reconstruction).
 * SparseGPT removes a row's pruned weights one column at a time with earlier columns frozen;
 * APT removes all of a block's pruned weights of a row jointly with the exact multi-weight OBS
 * solution, letting every column of the block and to its right compensate:
 *   dw = -z^T U[B,F],  z = G_QQ^-1 w_Q,  G = U[B,B]^T U[B,B] = (H_FF^-1)_BB,  F = {a..c-1}.
 * --block 0 makes the block the whole row: the exact solution of min ||(W - W')X|| under the
 * mask. N:M: for each aligned group, every pattern is scored with its joint loss
 * 1/2 w_Q A_QQ^-1 w_Q^T and the best one removed jointly. With --bits, the kept weights are
 * then quantized by the GPTQ sweep with the mask re-imposed (algorithms.md §7, case B). */
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../core/blas.h"
#include "mask.h"
#include "obs.h"
#include "solver.h"
#include "obs_sweep.h"

/* Solve A z = b for a k x k SPD A (row-major, destroyed) by Cholesky, in double: the joint
 * systems can be ill-conditioned when pruned inputs are correlated. Returns -1 if not SPD. */
static int spd_solve(double *A, double *b, int k) {
    for (int j = 0; j < k; j++) {
        double *aj = A + (size_t)j * k;
        double d = aj[j];
        for (int p = 0; p < j; p++) d -= aj[p] * aj[p];
        if (!(d > 0.0)) return -1;
        d = sqrt(d);
        aj[j] = d;
        for (int i = j + 1; i < k; i++) {
            double *ai = A + (size_t)i * k, s = ai[j];
            for (int p = 0; p < j; p++) s -= ai[p] * aj[p];
            ai[j] = s / d;
        }
    }
    for (int i = 0; i < k; i++) {                 /* L y = b */
        const double *ai = A + (size_t)i * k;
        double s = b[i];
        for (int p = 0; p < i; p++) s -= ai[p] * b[p];
        b[i] = s / ai[i];
    }
    for (int i = k - 1; i >= 0; i--) {            /* L^T z = y */
        double s = b[i];
        for (int p = i + 1; p < k; p++) s -= A[(size_t)p * k + i] * b[p];
        b[i] = s / A[(size_t)i * k + i];
    }
    return 0;
}

/* Row i of the block at a (nb columns): jointly remove the entries marked in M1, writing
 * y = U[B,Q] z into column i of Yt. The k x k system G_QQ z = w_Q is solved by LAPACK's float
 * Cholesky (OpenBLAS's small-matrix kernels; G is symmetric, so the column-major call reads
 * our row-major gather as is). Scratch: A (k*k), z and y (nb). */
static int joint_row(const float *Wt, const float *UT, const float *G, const uint8_t *M1, float *Yt,
                     int R, int a, int nb, int i, int *Q, float *A, float *z, float *y) {
    int k = 0;
    for (int c = 0; c < nb; c++)
        if (M1[(size_t)c * R + i]) Q[k++] = c;
    for (int c = 0; c < nb; c++) y[c] = 0.0f;
    if (k > 0) {
        for (int p = 0; p < k; p++) {
            const float *gp = G + (size_t)Q[p] * nb;
            for (int q = 0; q < k; q++) A[(size_t)p * k + q] = gp[Q[q]];
            z[p] = Wt[(size_t)(a + Q[p]) * R + i];
        }
        if (LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', k, A, k) != 0 ||
            LAPACKE_spotrs_work(LAPACK_COL_MAJOR, 'L', k, 1, A, k, z, k) != 0)
            return -1;
        /* y_c = sum_q U[a+c][a+Q[q]] z_q; U is upper triangular, so only c <= Q[q] contribute:
         * contiguous axpys over the rows of UT = U[B,B]^T. */
        for (int q = 0; q < k; q++) {
            const float *uq = UT + (size_t)Q[q] * nb;
            float zq = z[q];
            for (int c = 0; c <= Q[q]; c++) y[c] += uq[c] * zq;
        }
    }
    for (int c = 0; c < nb; c++) Yt[(size_t)c * R + i] = y[c];
    return 0;
}

/* Joint loss 1/2 w_Q A_QQ^-1 w_Q^T of removing pattern Q from a group (A: m x m). */
static double pattern_loss(const double *A, int m, const int *Q, int n, const double *w,
                           double *S, double *b) {
    if (n == 2) {   /* closed form, algorithms.md §5 */
        double aii = A[Q[0] * m + Q[0]], ajj = A[Q[1] * m + Q[1]], aij = A[Q[0] * m + Q[1]];
        double wi = w[Q[0]], wj = w[Q[1]], det = aii * ajj - aij * aij;
        return det > 0 ? (ajj * wi * wi - 2 * aij * wi * wj + aii * wj * wj) / (2 * det) : INFINITY;
    }
    for (int p = 0; p < n; p++) {
        for (int q = 0; q < n; q++) S[p * n + q] = A[Q[p] * m + Q[q]];
        b[p] = w[Q[p]];
    }
    double wq[64];
    for (int p = 0; p < n; p++) wq[p] = b[p];
    if (spd_solve(S, b, n)) return INFINITY;
    double l = 0;
    for (int p = 0; p < n; p++) l += wq[p] * b[p];
    return 0.5 * l;
}

/* Next n-subset of {0..m-1} in lexicographic order; false after the last. */
static bool next_pattern(int *Q, int n, int m) {
    int i = n - 1;
    while (i >= 0 && Q[i] == m - n + i) i--;
    if (i < 0) return false;
    Q[i]++;
    for (int j = i + 1; j < n; j++) Q[j] = Q[j - 1] + 1;
    return true;
}

/* A = U[G,G]^T U[G,G] = (H_FF^-1)_GG for F = {g0..c-1}, for every group of the block at a:
 * the same for all rows, so computed once per block. */
static void nm_group_matrices(const float *U, int C, int a, int nb, int m, double *A) {
    for (int g = 0; g < nb; g += m) {
        int g0 = a + g;
        double *Ag = A + (size_t)(g / m) * m * m;
        for (int p = 0; p < m; p++)
            for (int q = 0; q < m; q++) {
                double s = 0;
                for (int r = 0; r <= (p < q ? p : q); r++)
                    s += (double)U[(size_t)(g0 + r) * C + g0 + p] * U[(size_t)(g0 + r) * C + g0 + q];
                Ag[p * m + q] = s;
            }
    }
}

/* N:M for row i within the block at a: groups left to right, each pattern scored with the
 * current weights, the best removed jointly; the row's block is gathered into wl so the
 * in-block updates are contiguous, the rest goes through Yt (one lazy GEMM per block). */
static int nm_row(float *Wt, const float *U, const double *Ablk, uint8_t *M1, float *Yt, int R,
                  int C, int a, int nb, int n, int m, int i, float *wl) {
    double w[64], S[64 * 64], b[64], z[64];
    int Q[64], best[64];
    for (int c = 0; c < nb; c++) wl[c] = Wt[(size_t)(a + c) * R + i];
    for (int g = 0; g < nb; g += m) {
        int g0 = a + g;
        const double *A = Ablk + (size_t)(g / m) * m * m;
        for (int p = 0; p < m; p++) w[p] = wl[g + p];
        double bl = INFINITY;
        for (int p = 0; p < n; p++) Q[p] = p;
        do {
            double l = pattern_loss(A, m, Q, n, w, S, b);
            if (l < bl) { bl = l; memcpy(best, Q, n * sizeof(int)); }
        } while (next_pattern(Q, n, m));
        if (!isfinite(bl)) return -1;
        for (int p = 0; p < n; p++) {
            for (int q = 0; q < n; q++) S[p * n + q] = A[best[p] * m + best[q]];
            z[p] = w[best[p]];
            M1[(size_t)(g + best[p]) * R + i] = 1;
        }
        if (spd_solve(S, z, n)) return -1;
        /* y over the group's columns, then dw = -y^T U[G, g0:]: in-block now, beyond lazily. */
        double y[64] = {0};
        for (int q = 0; q < n; q++)
            for (int r = 0; r <= best[q]; r++) y[r] += (double)U[(size_t)(g0 + r) * C + g0 + best[q]] * z[q];
        for (int r = 0; r < m; r++) {
            Yt[(size_t)(g + r) * R + i] = (float)y[r];
            if (y[r] == 0.0) continue;
            const float *ur = U + (size_t)(g0 + r) * C + a;
            float yr = (float)y[r];
            for (int c = g + r; c < nb; c++) wl[c] -= yr * ur[c];
        }
        for (int p = 0; p < n; p++) wl[g + best[p]] = 0.0f;
    }
    for (int c = 0; c < nb; c++) Wt[(size_t)(a + c) * R + i] = wl[c];
    return 0;
}

static int apt_compress(float *W, int rows, int cols, const float *H, const target *t,
                        layer_report *r, err *e) {
    int R = rows, C = cols, B = t->block == 0 || t->block > C ? C : t->block;
    bool nm = t->m > 0, fixed = t->keep_mask;
    obs_factor f;
    int rc = obs_factor_init(&f, H, C, t->damp, e);
    if (rc) return rc;
    r->damp = f.damp;
    float *Wt = malloc((size_t)C * R * sizeof(float)), *Yt = malloc((size_t)B * R * sizeof(float));
    float *G = malloc((size_t)B * B * sizeof(float)), *UT = malloc((size_t)B * B * sizeof(float));
    double *Ablk = malloc((size_t)(B / (t->m > 0 ? t->m : 1) + 1) * (t->m > 0 ? t->m * t->m : 1) * sizeof(double));
    /* The pruned set in the sweep layout [C][R]; block a's part is M1 = Mk + a R. */
    uint8_t *Mk = calloc((size_t)C * R, 1), *M1 = NULL;
    int *ident = malloc((size_t)C * sizeof(int));
    float *score = malloc((size_t)B * R * sizeof(float)), *tmp = malloc((size_t)B * R * sizeof(float));
    int nth = omp_get_max_threads(), failed = 0;
    int *Qs = malloc((size_t)nth * B * sizeof(int));
    float *As = malloc((size_t)nth * B * B * sizeof(float)), *zs = malloc((size_t)nth * 2 * B * sizeof(float));
    if (!Wt || !Yt || !G || !UT || !Ablk || !Mk || !ident || !score || !tmp || !Qs || !As || !zs) {
        rc = err_set(e, SPARQ_ERUNTIME, "out of memory for a %d x %d layer (block %d)", R, C, B);
        goto done;
    }
    for (int j = 0; j < C; j++) ident[j] = j;
    obs_sweep_transpose_in(W, R, C, ident, f.dead, Wt);
    for (int j = 0; j < C; j++)
        if (f.dead[j]) for (int i = 0; i < R; i++) r->mask[(size_t)i * C + j] = 1;
    /* A chain's second stage keeps its pruned set, dead inputs included. */
    if (fixed) obs_sweep_transpose_mask_in(r->mask, R, C, ident, Mk);

    for (int a = 0; a < C; a += B) {
        int nb = a + B < C ? B : C - a;
        M1 = Mk + (size_t)a * R;
        if (!fixed && !nm && t->sparsity > 0.0) {
            /* SparseGPT's adaptive mask rule, so that the two differ only in the update. */
            #pragma omp parallel for schedule(static) if (nb * R > 65536)
            for (int k = 0; k < nb; k++) {
                float d = f.U[(size_t)(a + k) * C + a + k];
                const float *w = Wt + (size_t)(a + k) * R;
                for (int i = 0; i < R; i++) score[(size_t)k * R + i] = w[i] * w[i] / (d * d);
            }
            mask_threshold(score, (size_t)nb * R, t->sparsity, M1, tmp);
        }
        if (nm && !fixed) {
            nm_group_matrices(f.U, C, a, nb, t->m, Ablk);
            #pragma omp parallel for schedule(static) reduction(|: failed)
            for (int i = 0; i < R; i++)
                failed |= nm_row(Wt, f.U, Ablk, M1, Yt, R, C, a, nb, t->n, t->m, i,
                                 zs + (size_t)omp_get_thread_num() * 2 * B) != 0;
            /* In-block updates are done; only the columns right of the block remain. */
            if (!failed && a + nb < C)
                blas_gemm(true, false, C - a - nb, R, nb, -1.0f, f.U + (size_t)a * C + a + nb, C, Yt, R,
                          1.0f, Wt + (size_t)(a + nb) * R, R);
        } else {
            for (int c = 0; c < nb; c++)
                for (int q = 0; q < nb; q++) UT[(size_t)q * nb + c] = f.U[(size_t)(a + c) * C + a + q];
            /* G = U[B,B]^T U[B,B]. */
            blas_gemm(true, false, nb, nb, nb, 1.0f, f.U + (size_t)a * C + a, C, f.U + (size_t)a * C + a, C,
                      0.0f, G, nb);
            #pragma omp parallel for schedule(dynamic, 16) reduction(|: failed)
            for (int i = 0; i < R; i++) {
                int th = omp_get_thread_num();
                failed |= joint_row(Wt, UT, G, M1, Yt, R, a, nb, i, Qs + (size_t)th * B,
                                    As + (size_t)th * B * B, zs + (size_t)th * 2 * B,
                                    zs + (size_t)th * 2 * B + B) != 0;
            }
            /* W[:, a:] -= Y U[B, a:], the block and everything right of it in one GEMM. */
            if (!failed)
                blas_gemm(true, false, C - a, R, nb, -1.0f, f.U + (size_t)a * C + a, C, Yt, R, 1.0f,
                          Wt + (size_t)a * R, R);
        }
        if (failed) {
            rc = err_set(e, SPARQ_ERUNTIME, "a joint removal system is not positive definite "
                         "(block at column %d); raise --damp", a);
            goto done;
        }
        for (size_t x = 0; x < (size_t)nb * R; x++)
            if (M1[x]) Wt[(size_t)a * R + x] = 0.0f;     /* exact zeros, not round-off */
    }
    obs_sweep_transpose_out(Wt, R, C, ident, W);
    obs_sweep_transpose_mask_out(Mk, R, C, ident, r->mask);
    if (t->bits < 16) {
        target q = *t;
        q.sparsity = 0.0;
        q.n = q.m = 0;
        rc = obs_sweep(W, R, C, H, &q, OBS_SWEEP_MASK_FIXED, r, e);
    }
done:
    free(Wt); free(Yt); free(G); free(UT); free(Ablk); free(Mk); free(ident); free(score); free(tmp); free(Qs); free(As); free(zs);
    obs_factor_free(&f);
    return rc;
}

const solver solver_apt = {
    .name = "apt", .compress = apt_compress, .uses_hessian = true, .prunes = true, .quantizes = true,
    .whole_row = true,
};
