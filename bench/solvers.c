/* bench-solvers: the sgemm peak of this machine (blas_gemm, 1 and 2 threads), the time of every
 * registered solver on one 4096 x 4096 layer with a 2048-token Hessian, how SparseGPT's time
 * splits into level-3 BLAS and the rest, and the peak RSS of one `sparq compress` run. */
#include <cJSON.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <lapacke.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/blas.h"
#include "../core/fileio.h"
#include "../core/clock.h"
#include "../core/hessian.h"
#include "../solvers/obs.h"
#include "../solvers/solver.h"

#define GEMM_N   4096
#define ROWS     4096
#define COLS     4096
#define NSEQ     16          /* calibration: 16 sequences of 128 tokens = 2048 tokens */
#define SEQLEN   128
#define THREADS  2
#define REPS     3           /* timings below are the best of REPS: the machine is shared */
#define BUDGET_S 2.0         /* ... but a solver is repeated only while it has used less than this */
/* Mirrors SUB_BLOCK of the OBS sweep SparseGPT runs (solvers/obs_sweep.c): the GEMM count below
 * follows its loop shapes. */
#define SGPT_SUB 16

static float *alloc_floats(size_t n) {
    float *p = malloc(n * sizeof(float));
    if (!p) { fprintf(stderr, "bench-solvers: out of memory (%zu floats)\n", n); exit(1); }
    return p;
}

static void fill_normal(gsl_rng *rng, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)gsl_ran_gaussian_ziggurat(rng, 1.0);
}

/* Best of REPS GFLOP/s of one n x n x n blas_gemm on the current thread count. The values are
 * irrelevant to the speed (no denormals), so a cheap fill does. */
static double sgemm_peak(int n) {
    size_t nn = (size_t)n * n;
    float *A = alloc_floats(nn), *B = alloc_floats(nn), *C = alloc_floats(nn);
    for (size_t i = 0; i < nn; i++) {
        A[i] = (float)(i % 7) - 3.0f;
        B[i] = (float)(i % 5) - 2.0f;
    }
    memset(C, 0, nn * sizeof(float));
    double best = 1e30;
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = clock_seconds();
        blas_gemm(false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
        double dt = clock_seconds() - t0;
        if (dt < best) best = dt;
    }
    free(A); free(B); free(C);
    return 2.0 * n * n * (double)n / best * 1e-9;
}

/* The compress call exactly as solver_run prepares it (fresh mask, bits and damp preset), but
 * without its checks, final masking and exact-loss GEMM. Returns seconds, < 0 on failure. */
static double compress_once(const solver *s, float *W, const float *H, const target *t) {
    layer_report r = {0};
    r.mask = calloc((size_t)ROWS * COLS, 1);
    if (!r.mask) return -1.0;
    r.bits = t->bits;
    r.damp = t->damp;
    err e = {0};
    double t0 = clock_seconds();
    int rc = s->compress(W, ROWS, COLS, H, t, &r, &e);
    double dt = clock_seconds() - t0;
    layer_report_free(&r);
    if (rc) fprintf(stderr, "  %s: %s\n", s->name, e.msg);
    return rc ? -1.0 : dt;
}

/* Best of up to REPS compress calls, each on a fresh copy of W0; slow solvers get fewer so the
 * whole benchmark stays within a few minutes. */
static double compress_direct(const solver *s, const float *W0, float *W, const float *H,
                              const target *t) {
    double best = 1e30, spent = 0.0;
    for (int rep = 0; rep < REPS && spent < BUDGET_S; rep++) {
        memcpy(W, W0, (size_t)ROWS * COLS * sizeof(float));
        double dt = compress_once(s, W, H, t);
        if (dt < 0) return dt;
        if (dt < best) best = dt;
        spent += dt;
    }
    return best;
}

/* SparseGPT's GEMMs, in the shapes its sweep issues them: per block of columns, the in-block
 * GEMM after each sub-block and the lazy batch update of the columns right of the block. With
 * run set, they are executed on U/Et/Wt-sized buffers to time them at those shapes. */
static double sgpt_gemms(const target *t, int R, int C, const float *U, const float *Et,
                         float *Wt, bool run, double *rank1_flops) {
    int B = t->block < C ? t->block : C;
    int sub = t->m > 0 ? t->m * (SGPT_SUB / t->m > 1 ? SGPT_SUB / t->m : 1) : SGPT_SUB;
    double flops = 0.0;
    *rank1_flops = 0.0;
    for (int a = 0; a < C; a += B) {
        int b = a + B < C ? a + B : C, nb = b - a;
        for (int k0 = 0; k0 < nb; k0 += sub) {
            int k1 = k0 + sub < nb ? k0 + sub : nb, w = k1 - k0;
            *rank1_flops += 2.0 * R * w * (w - 1) / 2.0;   /* axpys inside the sub-block */
            if (k1 >= nb) continue;
            flops += 2.0 * (nb - k1) * R * w;
            if (run)
                blas_gemm(true, false, nb - k1, R, w, -1.0f, U + (size_t)(a + k0) * C + a + k1, C,
                          Et + (size_t)k0 * R, R, 1.0f, Wt + (size_t)(a + k1) * R, R);
        }
        if (b >= C) continue;
        flops += 2.0 * (C - b) * R * nb;
        if (run)
            blas_gemm(true, false, C - b, R, nb, -1.0f, U + (size_t)a * C + b, C, Et, R, 1.0f,
                      Wt + (size_t)b * R, R);
    }
    return flops;
}

/* The LAPACK calls of obs.c's inverse_factor on a damped copy of H, each timed; the copies and
 * the triangle mirroring between them are what obs_factor_init adds. */
static double lapack_seconds(const float *H, int n, float damp, float *A) {
    double mean = 0.0;
    for (int j = 0; j < n; j++) mean += H[(size_t)j * n + j];
    mean /= n;
    memcpy(A, H, (size_t)n * n * sizeof(float));
    for (int j = 0; j < n; j++) A[(size_t)j * n + j] += (float)(damp * mean);
    double sec = 0.0, t0;
    blas_wide_begin();
    t0 = clock_seconds();
    int info = LAPACKE_spotrf(LAPACK_COL_MAJOR, 'U', n, A, n);
    if (!info) info = LAPACKE_spotri(LAPACK_COL_MAJOR, 'U', n, A, n);
    sec += clock_seconds() - t0;
    for (int j = 0; j < n; j++)
        for (int i = j + 1; i < n; i++) A[(size_t)j * n + i] = A[(size_t)i * n + j];
    t0 = clock_seconds();
    if (!info) info = LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', n, A, n);
    sec += clock_seconds() - t0;
    blas_wide_end();
    return info ? -1.0 : sec;
}

typedef struct {
    const char *label;
    target t;
} bench_target;

/* Reads the one JSON line of `sparq compress --json` and prints its time and peak RSS. */
static void compress_rss(const char *data) {
    const char *bin = getenv("SPARQ_BIN");
    if (!bin || !*bin) bin = "./sparq";
    char cmd[4096];   /* room for the data root (under 1024) twice */
    snprintf(cmd, sizeof cmd, "%s compress --model %s/stories260K/stories260K.bin --solver sparsegpt "
             "--sparsity 0.5 --calib %s/text/c4-en-train-first1000.jsonl --calib-seqlen 256 "
             "--nsamples 128 --json", bin, data, data);
    printf("\n4. peak RSS of: %s\n", cmd);
    FILE *p = popen(cmd, "r");
    if (!p) { printf("   could not run it\n"); return; }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + len, 1, cap - len - 1, p)) > 0;) {
        len += got;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) { free(buf); buf = NULL; }
            buf = nb;
        }
    }
    int status = pclose(p);
    if (!buf) { printf("   out of memory reading its output\n"); return; }
    buf[len] = '\0';
    cJSON *j = status == 0 ? cJSON_Parse(buf) : NULL;
    const cJSON *rss = cJSON_GetObjectItemCaseSensitive(j, "peak_rss_mb");
    const cJSON *sec = cJSON_GetObjectItemCaseSensitive(j, "seconds");
    if (cJSON_IsNumber(rss) && cJSON_IsNumber(sec))
        printf("   peak_rss_mb %.1f   seconds %.3f\n", rss->valuedouble, sec->valuedouble);
    else
        printf("   failed (exit status %d)\n", status);
    cJSON_Delete(j);
    free(buf);
}

int main(void) {
    char data[1024];
    err de = {0};
    if (data_root(data, sizeof data, &de) != SPARQ_OK) {
        fprintf(stderr, "bench-solvers: %s\n", de.msg);
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);   /* progress shows under make, line by line */
    /* The machine may be shared: the load says how far to trust the timings below. */
    FILE *la = fopen("/proc/loadavg", "r");
    char load[64] = "?";
    if (la) {
        if (!fgets(load, sizeof load, la)) strcpy(load, "?\n");
        fclose(la);
    }
    printf("bench-solvers, load average at start: %s", load);
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 20240601);

    /* 1. The yardstick for everything below, measured now since the machine is shared. */
    double peak[THREADS + 1] = {0};
    printf("1. blas_gemm %dx%dx%d (OpenBLAS single-threaded per OpenMP thread), best of %d\n",
           GEMM_N, GEMM_N, GEMM_N, REPS);
    for (int th = 1; th <= THREADS; th++) {
        blas_set_threads(th);
        peak[th] = sgemm_peak(GEMM_N);
        printf("   %d thread%s  %7.1f GFLOP/s\n", th, th > 1 ? "s" : " ", peak[th]);
    }
    blas_set_threads(THREADS);

    /* 2. One layer. 2048 tokens < 4096 inputs, so X^T X has rank 2048: H is only positive
     * semi-definite and the solvers' 1% damping is what makes it factorable. */
    size_t nw = (size_t)ROWS * COLS;
    float *W0 = alloc_floats(nw), *W = alloc_floats(nw);
    fill_normal(rng, W0, nw);
    hessian h;
    err e = {0};
    if (hessian_init(&h, COLS, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    {
        int ntok = NSEQ * SEQLEN;
        float *X = alloc_floats((size_t)ntok * COLS);
        fill_normal(rng, X, (size_t)ntok * COLS);
        blas_wide_begin();   /* one big SSYRK from serial code */
        hessian_accumulate(&h, X, ntok);
        blas_wide_end();
        hessian_finish(&h, NSEQ);
        free(X);
    }
    printf("\n2. layer %dx%d, W ~ N(0,1); H = 2/N X^T X from %d sequences x %d tokens of N(0,1) "
           "inputs (N = %d; rank %d, SPD via damping); %d threads\n",
           ROWS, COLS, NSEQ, SEQLEN, NSEQ, NSEQ * SEQLEN < COLS ? NSEQ * SEQLEN : COLS, THREADS);

    target t50 = target_default(), t24 = target_default(), t50q4 = target_default();
    t50.sparsity = 0.5f;
    t24.n = 2; t24.m = 4;
    t50q4.sparsity = 0.5f; t50q4.bits = 4;
    target tq4 = target_default(), tq4a = target_default();
    tq4.bits = 4;
    tq4a.bits = 4; tq4a.act_order = true;
    /* Every solver gets its main target (50%, or 4 bits if it only quantizes), SparseGPT, which
     * section 3 dissects, also 2:4 and 50% + 4 bits: all of them for every solver would take
     * several minutes once slow solvers are registered. */
    const bench_target targets[] = {{"50%", t50}, {"4bit", tq4}, {"2:4", t24}, {"50%+4bit", t50q4},
                                    {"4bit-act", tq4a}};
    enum { N_TARGETS = sizeof targets / sizeof targets[0] };
    double sgpt_sec[N_TARGETS] = {0};
    printf("   compress_s: ->compress alone, best of up to %d (fewer past %.0f s); run_total_s: one "
           "solver_run; loss_s: what solver_run adds (exact-loss GEMM, checks)\n", REPS, BUDGET_S);
    printf("   %-10s %-9s %11s %11s %9s %14s %9s\n", "solver", "target", "compress_s",
           "run_total_s", "loss_s", "loss", "sparsity");
    for (const char *const *nm = solver_names(); *nm; nm++) {
        const solver *s = solver_find(*nm);
        bool sgpt = strcmp(s->name, "sparsegpt") == 0, apt = strcmp(s->name, "apt") == 0;
        bool gptq = strcmp(s->name, "gptq") == 0;
        for (int k = 0; k < N_TARGETS; k++) {
            const target *t = &targets[k].t;
            /* 2:4 for SparseGPT and APT side by side; act-order for GPTQ. */
            bool want = k == 0 ? s->prunes : k == 1 ? !s->prunes : k == 2 ? sgpt || apt
                      : k == 3 ? sgpt : gptq;
            if (!want) continue;
            if (solver_check(s, t, ROWS, COLS, &e)) {
                printf("   %-10s %-9s skipped: %s\n", s->name, targets[k].label, e.msg);
                continue;
            }
            double direct = compress_direct(s, W0, W, h.H, t);
            memcpy(W, W0, nw * sizeof(float));
            layer_report r;
            double t0 = clock_seconds();
            int rc = solver_run(s, W, ROWS, COLS, h.H, t, &r, &e);
            double total = clock_seconds() - t0;
            if (direct < 0 || rc) {
                printf("   %-10s %-9s failed: %s\n", s->name, targets[k].label, rc ? e.msg : "");
                continue;
            }
            printf("   %-10s %-9s %11.3f %11.3f %9.3f %14.6g %9.4f\n", s->name, targets[k].label,
                   direct, total, total - r.seconds, r.loss, r.sparsity);
            if (sgpt) sgpt_sec[k] = direct;
            layer_report_free(&r);
            /* Thread scaling on the main target, for the solvers quick enough to repeat. */
            if (k < 2 && direct < 2.5 * BUDGET_S) {
                blas_set_threads(1);
                printf("   %-10s %-9s %11.3f   (1 thread, compress only)\n", s->name,
                       targets[k].label, compress_direct(s, W0, W, h.H, t));
                blas_set_threads(THREADS);
            }
        }
    }

    /* 3. SparseGPT by counting: the factor's and the GEMMs' flops are known, so their time at
     * the measured peak bounds how much of the run level-3 BLAS can explain. */
    if (solver_find("sparsegpt")) {
        /* A neighbour's job during section 1 would understate the peak: take the better one. */
        double again = sgemm_peak(GEMM_N), pk = again > peak[THREADS] ? again : peak[THREADS];
        obs_factor f = {0};
        double factor_s = 1e30, lapack_s = 1e30, t0;
        float *A = alloc_floats((size_t)COLS * COLS);
        for (int rep = 0; rep < REPS; rep++) {
            obs_factor_free(&f);
            t0 = clock_seconds();
            if (obs_factor_init(&f, h.H, COLS, t50.damp, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
            double dt = clock_seconds() - t0, ls = lapack_seconds(h.H, COLS, f.damp, A);
            if (dt < factor_s) factor_s = dt;
            if (ls < lapack_s) lapack_s = ls;
        }
        free(A);
        double factor_flops = 4.0 / 3.0 * COLS * (double)COLS * COLS;   /* potrf + potri + potrf */
        float *Et = alloc_floats((size_t)t50.block * ROWS);
        fill_normal(rng, Et, (size_t)t50.block * ROWS);
        for (size_t i = 0; i < (size_t)t50.block * ROWS; i++) Et[i] *= 1e-3f;
        memcpy(W, W0, nw * sizeof(float));   /* stands in for Wt: same size, values irrelevant */
        printf("\n3. sparsegpt, %d threads: level-3 BLAS vs the rest (peak %.1f GFLOP/s: best of "
               "section 1 and %.1f now)\n"
               "   obs_factor_init %.3f s: LAPACK potrf+potri+potrf %.1f GFLOP in %.3f s "
               "(%.0f%% of peak), %.3f s of copies/mirroring/checks around it\n",
               THREADS, pk, again, factor_s, factor_flops * 1e-9, lapack_s,
               100.0 * factor_flops / lapack_s * 1e-9 / pk, factor_s - lapack_s);
        for (int k = 0; k < N_TARGETS; k++) {
            if (sgpt_sec[k] <= 0) continue;
            const target *t = &targets[k].t;
            double rank1, gemm_flops = sgpt_gemms(t, ROWS, COLS, f.U, Et, W, false, &rank1);
            double gemm_meas = 1e30;
            for (int rep = 0; rep < REPS; rep++) {
                t0 = clock_seconds();
                sgpt_gemms(t, ROWS, COLS, f.U, Et, W, true, &rank1);
                if (clock_seconds() - t0 < gemm_meas) gemm_meas = clock_seconds() - t0;
            }
            double gemm_est = gemm_flops * 1e-9 / pk;
            double T = sgpt_sec[k], out_est = T - factor_s - gemm_est, out_meas = T - factor_s - gemm_meas;
            double all_flops = factor_flops + gemm_flops + rank1;
            printf("   %-9s total %.3f s | obs_factor_init %.3f s (%4.1f%%) | GEMMs %.1f GFLOP: "
                   "%.3f s at peak, %.3f s replayed (%.0f%% of peak)\n"
                   "             outside level-3 BLAS %.3f s (%4.1f%%) by peak, %.3f s (%4.1f%%) by "
                   "replay | %.1f GFLOP in all: %.1f GFLOP/s = %.0f%% of peak\n",
                   targets[k].label, T, factor_s, 100.0 * factor_s / T, gemm_flops * 1e-9, gemm_est,
                   gemm_meas, 100.0 * gemm_est / gemm_meas, out_est, 100.0 * out_est / T, out_meas,
                   100.0 * out_meas / T, all_flops * 1e-9, all_flops / T * 1e-9,
                   100.0 * all_flops / T * 1e-9 / pk);
        }
        printf("   (outside = total - obs_factor_init - GEMMs: the sub-block axpys, scores, mask "
               "selection, transposes, quantization)\n");
        free(Et);
        obs_factor_free(&f);
    }
    hessian_free(&h);
    free(W0); free(W);
    gsl_rng_free(rng);

    compress_rss(data);
    return 0;
}
