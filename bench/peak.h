/* The sgemm yardstick the benchmarks report against: aggregate GFLOP/s of `threads` concurrent
 * single-threaded cblas_sgemm calls of one shape (y = x W^T, x [M][K], W [N][K]), which is how
 * sparq parallelises. Per thread the fastest of `slices` slices of at least `slice_s` seconds
 * (and at least one call) after a warm-up: the machine may be shared, and a peak is what the
 * least disturbed slice reaches. */
#ifndef SPARQ_BENCH_PEAK_H
#define SPARQ_BENCH_PEAK_H

double bench_sgemm_gflops(int M, int K, int N, int threads, int slices, double slice_s);

#endif
