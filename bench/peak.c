#include "peak.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#include "../core/clock.h"

double bench_sgemm_gflops(int M, int K, int N, int threads, int slices, double slice_s) {
    double best = 0;
    #pragma omp parallel num_threads(threads) reduction(+:best)
    {
        float *x = malloc((size_t)M * K * 4), *w = malloc((size_t)N * K * 4), *y = malloc((size_t)M * N * 4);
        double mine = 0;
        if (x && w && y) {
            for (size_t i = 0; i < (size_t)M * K; i++) x[i] = (float)(i % 7) * 0.1f;
            for (size_t i = 0; i < (size_t)N * K; i++) w[i] = (float)(i % 5) * 0.1f;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, x, K, w, K, 0, y, N);
        }
        #pragma omp barrier
        for (int slice = 0; x && w && y && slice < slices; slice++) {
            double t0 = clock_seconds(), t;
            long reps = 0;
            do {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, x, K, w, K, 0, y, N);
                reps++;
            } while ((t = clock_seconds() - t0) < slice_s);
            double g = 2.0 * M * K * N * reps / t / 1e9;
            if (g > mine) mine = g;
        }
        best += mine;
        free(x); free(w); free(y);
    }
    return best;
}
