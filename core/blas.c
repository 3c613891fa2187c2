#include "blas.h"

#include <cblas.h>
#include <omp.h>

/* Below this many multiply-adds a split costs more in thread wake-up than it saves. */
#define SPLIT_MIN_FLOPS (1L << 18)

/* OpenBLAS starts with one thread per core, and a threaded SSYRK or GEMM sums in another order
 * than a single-threaded one: a process whose first compression ran before anything called
 * blas_set_threads gave other bits than every later one. OpenBLAS is made single-threaded at
 * load, so results never depend on what the process ran before (blas_wide_begin widens it). */
__attribute__((constructor)) static void blas_single_threaded_at_load(void) {
    openblas_set_num_threads(1);
}

void blas_set_threads(int n) {
    openblas_set_num_threads(1);
    if (n > 0) omp_set_num_threads(n);
}

int blas_threads(void) {
    return omp_get_max_threads();
}

static void gemm1(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void blas_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    long work = (long)M * N * (K > 0 ? K : 1);
    if (nt <= 1 || work < SPLIT_MIN_FLOPS || M < 2 * nt) {
        gemm1(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    #pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        /* Chunks are multiples of 8 rows so kernels see aligned tiles. */
        int chunk = ((M + n - 1) / n + 7) & ~7;
        int i0 = t * chunk, i1 = i0 + chunk < M ? i0 + chunk : M;
        if (i0 < i1) {
            const float *Ai = ta ? A + i0 : A + (long)i0 * lda;
            gemm1(ta, tb, i1 - i0, N, K, alpha, Ai, lda, B, ldb, beta, C + (long)i0 * ldc, ldc);
        }
    }
}

void blas_linear(const float *x, const float *W, float *y, int n, int in, int out) {
    blas_gemm(false, true, n, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
}

void blas_wide_begin(void) {
    if (!omp_in_parallel()) openblas_set_num_threads(omp_get_max_threads());
}

void blas_wide_end(void) {
    openblas_set_num_threads(1);
}
