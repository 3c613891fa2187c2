#include "obs.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/blas.h"

void obs_factor_free(obs_factor *f) {
    if (!f) return;
    free(f->U);
    free(f->dead);
    f->U = NULL;
    f->dead = NULL;
}

/* U from the damped H in A (destroyed), all in place. H is symmetric, so its row-major and
 * column-major layouts agree and the column-major LAPACK calls need no transposition:
 * chol(H) -> H^-1 (potri) -> H^-1 = L L^T (column-major lower L), whose row-major view is
 * L^T = U, upper, with U^T U = H^-1. Returns the failing LAPACK info or 0. */
static int inverse_factor(float *A, int n) {
    int info = LAPACKE_spotrf(LAPACK_COL_MAJOR, 'U', n, A, n);
    if (info) return info;
    info = LAPACKE_spotri(LAPACK_COL_MAJOR, 'U', n, A, n);
    if (info) return info;
    /* Column-major upper -> lower, in tiles: a strided copy of a large matrix is slow. */
    #pragma omp parallel for schedule(dynamic, 1) if (n > 512)
    for (int j0 = 0; j0 < n; j0 += 32)
        for (int i0 = j0; i0 < n; i0 += 32)
            for (int j = j0; j < j0 + 32 && j < n; j++)
                for (int i = i0 > j + 1 ? i0 : j + 1; i < i0 + 32 && i < n; i++)
                    A[(size_t)j * n + i] = A[(size_t)i * n + j];
    info = LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', n, A, n);
    if (info) return info;
    for (int j = 0; j < n; j++)                 /* clear column-major strict upper = row-major lower */
        for (int i = 0; i < j; i++) A[(size_t)j * n + i] = 0.0f;
    for (size_t i = 0; i < (size_t)n * n; i++)
        if (!isfinite(A[i])) return -1;
    return 0;
}

int obs_factor_init_perm(obs_factor *f, const float *H, int n, const int *perm, float damp,
                         err *e) {
    memset(f, 0, sizeof *f);
    f->n = n;
    f->U = malloc((size_t)n * n * sizeof(float));
    f->dead = calloc((size_t)n, 1);
    float *Hd = malloc((size_t)n * n * sizeof(float));
    if (!f->U || !f->dead || !Hd) {
        free(Hd);
        obs_factor_free(f);
        return err_set(e, SPARQ_ERUNTIME, "out of memory for a %d x %d inverse Hessian", n, n);
    }
    if (perm) {
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) Hd[(size_t)i * n + j] = H[(size_t)perm[i] * n + perm[j]];
    } else {
        memcpy(Hd, H, (size_t)n * n * sizeof(float));
    }
    for (size_t i = 0; i < (size_t)n * n; i++) {
        if (!isfinite(Hd[i])) {
            double v = Hd[i];
            free(Hd);
            obs_factor_free(f);
            return err_set(e, SPARQ_EINPUT, "Hessian entry (%zu, %zu) is %g", i / n, i % n, v);
        }
    }
    /* Dead inputs (algorithms.md §0): H_jj = 0 means x_j was always 0 on the calibration data. */
    double mean = 0.0;
    for (int j = 0; j < n; j++) {
        float *d = &Hd[(size_t)j * n + j];
        if (*d == 0.0f) { *d = 1.0f; f->dead[j] = 1; f->n_dead++; }
        mean += *d;
    }
    mean /= n;
    int info = 0;
    blas_wide_begin();
    /* A Cholesky can fail in fp32 on tiny models, few tokens or huge outliers; the reference
     * code crashes there. Our policy: 10x the damping, up to p = 1. */
    for (float p = damp;; p = p > 0.0f ? p * 10.0f : 0.01f) {
        if (p > 1.0f) p = 1.0f;
        memcpy(f->U, Hd, (size_t)n * n * sizeof(float));
        for (int j = 0; j < n; j++) f->U[(size_t)j * n + j] += (float)(p * mean);
        info = inverse_factor(f->U, n);
        if (info == 0) { f->damp = p; break; }
        if (p >= 1.0f) break;
    }
    blas_wide_end();
    free(Hd);
    if (info != 0) {
        obs_factor_free(f);
        return err_set(e, SPARQ_ERUNTIME, "Hessian (%d x %d) is not positive definite even with "
                       "damping 1.0 (LAPACK info %d)", n, n, info);
    }
    return SPARQ_OK;
}

int obs_factor_init(obs_factor *f, const float *H, int n, float damp, err *e) {
    return obs_factor_init_perm(f, H, n, NULL, damp, e);
}
