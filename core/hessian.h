/* Hessian accumulation for one linear layer's input: H = 2/N * sum_t x_t x_t^T over the tokens
 * of N calibration sequences (algorithms.md §0; normalised by sequences, not tokens). Owns H;
 * knows nothing of solvers. Layers that read the same input (q/k/v, gate/up) share one. */
#ifndef SPARQ_HESSIAN_H
#define SPARQ_HESSIAN_H

#include "err.h"

typedef struct {
    int    n;          /* width of the input (columns of the layer) */
    float *H;          /* [n][n]; the sum x x^T until hessian_finish, then 2/N of it, full */
    long   tokens;     /* tokens accumulated */
} hessian;

int  hessian_init(hessian *h, int n, err *e);
void hessian_free(hessian *h);

/* Add the rows of X[ntok][n] (one token per row): S += X^T X, one SSYRK. */
void hessian_accumulate(hessian *h, const float *X, int ntok);

/* Scale the sum to H = 2/nseq * S and fill both triangles. */
void hessian_finish(hessian *h, int nseq);

#endif
