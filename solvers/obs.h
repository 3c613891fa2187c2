/* The shared machinery of the OBS-family solvers (SparseGPT, GPTQ, APT), algorithms.md §0:
 * dead inputs, relative damping with Cholesky retries, and the upper factor U of H^-1
 * (H^-1 = U^T U) whose rows give every "remove column i, compensate with columns >= i" update.
 * Owns the factor it returns. */
#ifndef SPARQ_OBS_H
#define SPARQ_OBS_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/err.h"

typedef struct {
    int      n;
    float   *U;          /* [n][n] row-major, upper triangular, H^-1 = U^T U      */
    uint8_t *dead;       /* [n]: H_jj == 0, the input never fired on calibration */
    int      n_dead;
    float    damp;       /* relative damping used after retries                  */
} obs_factor;

/* Factor H (n x n, not modified). damp is the relative damping p (lambda = p * mean diag);
 * when a Cholesky fails, p is raised 10x up to 1.0, then a clear error is returned. */
int  obs_factor_init(obs_factor *f, const float *H, int n, float damp, err *e);
void obs_factor_free(obs_factor *f);

/* The same, over the columns in perm order (act-order): factor of P H P^T. perm may be NULL. */
int  obs_factor_init_perm(obs_factor *f, const float *H, int n, const int *perm, float damp,
                          err *e);

#endif
