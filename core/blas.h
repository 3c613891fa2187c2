/* Thin wrappers over OpenBLAS: the one place that knows row-major/transposition conventions
 * and how work is split across threads. OpenBLAS itself runs single-threaded; we split the
 * rows of the output across OpenMP threads, so BLAS calls inside our own parallel loops
 * never oversubscribe the cores and results do not depend on the thread count. */
#ifndef SPARQ_BLAS_H
#define SPARQ_BLAS_H

#include <stdbool.h>

/* Use n threads for everything that follows (n <= 0: one per core). Call once, early. */
void blas_set_threads(int n);
int  blas_threads(void);

/* C[M][N] = alpha * op(A) op(B) + beta * C, row-major; op(X) = X^T when the flag is set.
 * A is M x K (or K x M when ta), B is K x N (or N x K when tb). Splits M across threads
 * when called outside a parallel region and the product is large enough to pay for it. */
void blas_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);

/* y[n][out] = x[n][in] W^T for a linear layer W stored [out][in]: the forward pass's GEMM. */
void blas_linear(const float *x, const float *W, float *y, int n, int in, int out);

/* Let OpenBLAS use every thread for the calls until blas_wide_end(): for single large level-3
 * or LAPACK calls made from serial code (SYRK of a big Hessian, Cholesky factorisations). */
void blas_wide_begin(void);
void blas_wide_end(void);

#endif
