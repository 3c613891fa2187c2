/* Thin wrappers over OpenBLAS: the one place that knows row-major/transposition conventions
 * and how work is split across threads. OpenBLAS itself runs single-threaded; we split the
 * rows of the output across OpenMP threads, so BLAS calls inside our own parallel loops
 * never oversubscribe the cores and results do not depend on the thread count. */
#ifndef SPARQ_BLAS_H
#define SPARQ_BLAS_H

#include <stdbool.h>
#include <stddef.h>

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

/* A linear layer's weights laid out once for the forward pass's kernel: several matrices
 * W[i] [rows[i]][K] stacked as one [sum rows][K] (q, k and v as one GEMM). NULL when this machine
 * has no such kernel (it needs AVX-512 and K <= 1024) or memory is short: callers then use
 * blas_gemm on the matrices themselves, which gives the same bits wherever the kernel exists. */
typedef struct blas_packed blas_packed;
#define BLAS_PACK_COLS 32   /* column ranges of a packed matrix start at multiples of this */

blas_packed *blas_pack(const float *const *W, const int *rows, int nw, int K);
void         blas_packed_free(blas_packed *p);

/* y[n][ncol] (+)= x[n][K] W^T for columns col0 .. col0+ncol-1 of the stacked W; col0 a multiple
 * of BLAS_PACK_COLS; rows of x ldx apart, of y ldy. Splits rows across threads as blas_gemm. */
void blas_linear_packed(const float *x, int ldx, const blas_packed *W, int col0, int ncol, float *y,
                        int ldy, int n, bool add);

/* A gated pair (a gated MLP's gate and up, each [rows][K]) packed for blas_gated_packed; NULL
 * as blas_pack. */
blas_packed *blas_pack_gated(const float *Wg, const float *Wu, int rows, int K);

/* h[n][rows] = act(x Wg^T, x Wu^T) in one pass: g and u never reach memory. act(h, ldh, g, u,
 * ld, rows, cnt) sets h[r * ldh + i] from g[r * ld + i] and u[r * ld + i] for r < rows (up to
 * 12) and i < cnt (up to 16): a tile at a time, so its rows' exp and division chains overlap.
 * Each g and u is summed exactly as blas_gemm sums it, so act sees the bits the unfused path
 * (GEMM, then act over the output) gives it. */
typedef void (*blas_gate_fn)(float *h, int ldh, const float *g, const float *u, int ld, int rows, int cnt);
void blas_gated_packed(const float *x, int ldx, const blas_packed *W, blas_gate_fn act, float *h, int ldh,
                       int n);

/* d[k * ldd + c] = s[c * lds + k] for c, k < 16: a 16 x 16 block transposed in registers. AVX-512
 * machines only (callers check __builtin_cpu_supports("avx512f")). */
void blas_transpose16(const float *s, size_t lds, float *d, size_t ldd);

/* Let OpenBLAS use every thread for the calls until blas_wide_end(): for single large level-3
 * or LAPACK calls made from serial code (SYRK of a big Hessian, Cholesky factorisations). */
void blas_wide_begin(void);
void blas_wide_end(void);

#endif
