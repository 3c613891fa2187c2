/* The forward pass's GEMM: blas_gemm's own kernel (y = x W^T, K <= 1024) and its packed-weights
 * form against a double-precision loop, the packed form against blas_gemm bit for bit (stacked
 * matrices, column ranges, adding to y), and a row's result independent of the rows beside it. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/blas.h"

static float *rnd(size_t n, unsigned *seed) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)((*seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    return p;
}

/* Shapes with tails everywhere: rows past the 12-row tile, columns past the 32-column panel, k
 * past a 16 block, and K split into several blocks. */
static const int shapes[][3] = {{1, 1, 1}, {13, 17, 33}, {50, 300, 31}, {25, 1024, 100}, {7, 513, 64},
                                {37, 192, 320}};

Test(blas, own_gemm_matches_double_loop_and_adds_to_y) {
    unsigned seed = 1;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2], ldx = K + 3, ldy = N + 5;
        float *x = rnd((size_t)M * ldx, &seed), *W = rnd((size_t)N * K, &seed);
        float *y = rnd((size_t)M * ldy, &seed), *y0 = malloc((size_t)M * ldy * sizeof(float));
        memcpy(y0, y, (size_t)M * ldy * sizeof(float));
        blas_gemm(false, true, M, N, K, 1.0f, x, ldx, W, K, 1.0f, y, ldy);
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < N; j++) {
                double r = y0[(size_t)i * ldy + j];
                for (int k = 0; k < K; k++) r += (double)x[(size_t)i * ldx + k] * W[(size_t)j * K + k];
                cr_assert(fabs(r - y[(size_t)i * ldy + j]) <= 1e-5 * (1 + sqrt(K)),
                          "M %d K %d N %d at (%d,%d): %g vs %g", M, K, N, i, j, y[(size_t)i * ldy + j], r);
            }
            for (int j = N; j < ldy; j++)   /* the padding past N is untouched */
                cr_assert_eq(y[(size_t)i * ldy + j], y0[(size_t)i * ldy + j]);
        }
        free(x); free(W); free(y); free(y0);
    }
}

Test(blas, packed_weights_give_blas_gemm_bits) {
    unsigned seed = 7;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        /* Three matrices stacked as q, k, v are: N, N/2 + 1 and 40 rows. */
        int rows[3] = {N, N / 2 + 1, 40}, tot = rows[0] + rows[1] + rows[2];
        float *W[3];
        for (int i = 0; i < 3; i++) W[i] = rnd((size_t)rows[i] * K, &seed);
        float *x = rnd((size_t)M * K, &seed);
        blas_packed *p = blas_pack((const float *const *)W, rows, 3, K);
        if (!p) {   /* no AVX-512 here: nothing else to compare */
            for (int i = 0; i < 3; i++) free(W[i]);
            free(x);
            cr_skip_test("blas_pack: no packed kernel on this machine");
        }
        float *ya = rnd((size_t)M * tot, &seed), *yb = malloc((size_t)M * tot * sizeof(float));
        memcpy(yb, ya, (size_t)M * tot * sizeof(float));
        for (int add = 0; add < 2; add++) {
            blas_linear_packed(x, K, p, 0, tot, ya, tot, M, add);
            for (int i = 0, col = 0; i < 3; col += rows[i], i++)
                blas_gemm(false, true, M, rows[i], K, 1.0f, x, K, W[i], K, add ? 1.0f : 0.0f, yb + col, tot);
            cr_assert_eq(memcmp(ya, yb, (size_t)M * tot * sizeof(float)), 0, "M %d K %d N %d add %d", M,
                         K, N, add);
        }
        /* A column range from a panel boundary: the classifier's slices. */
        if (tot > BLAS_PACK_COLS) {
            int nc = tot - BLAS_PACK_COLS < 45 ? tot - BLAS_PACK_COLS : 45;
            float *yc = malloc((size_t)M * nc * sizeof(float));
            blas_linear_packed(x, K, p, BLAS_PACK_COLS, nc, yc, nc, M, false);
            blas_linear_packed(x, K, p, 0, tot, ya, tot, M, false);
            for (int i = 0; i < M; i++)
                cr_assert_eq(memcmp(yc + (size_t)i * nc, ya + (size_t)i * tot + BLAS_PACK_COLS,
                                    (size_t)nc * sizeof(float)), 0, "row %d of the slice", i);
            free(yc);
        }
        blas_packed_free(p);
        for (int i = 0; i < 3; i++) free(W[i]);
        free(x); free(ya); free(yb);
    }
}

/* An eval's bits must not depend on how its sequences are grouped into tasks: a row of y is
 * the same whether it is computed alone, among 100 rows, or at another offset, on 1 or 2
 * threads. */
Test(blas, a_row_does_not_depend_on_the_rows_beside_it) {
    unsigned seed = 3;
    int M = 100, K = 512, N = 96;
    float *x = rnd((size_t)M * K, &seed), *W = rnd((size_t)N * K, &seed);
    float *all = malloc((size_t)M * N * sizeof(float)), *one = malloc((size_t)N * sizeof(float));
    for (int th = 1; th <= 2; th++) {
        blas_set_threads(th);
        blas_gemm(false, true, M, N, K, 1.0f, x, K, W, K, 0.0f, all, N);
        for (int i = 0; i < M; i += 7) {
            blas_gemm(false, true, 1, N, K, 1.0f, x + (size_t)i * K, K, W, K, 0.0f, one, N);
            cr_assert_eq(memcmp(one, all + (size_t)i * N, (size_t)N * sizeof(float)), 0, "row %d, %d threads", i, th);
        }
    }
    blas_set_threads(0);
    free(x); free(W); free(all); free(one);
}

/* A stand-in gate (any elementwise function of g and u will do for the bits). */
static void gate_sub_half(float *h, int ldh, const float *g, const float *u, int ld, int rows, int cnt) {
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < cnt; i++)
            h[(size_t)r * ldh + i] = g[(size_t)r * ld + i] * u[(size_t)r * ld + i] - 0.5f * g[(size_t)r * ld + i];
}

/* The gated pair gives act over blas_gemm's gate and up outputs, bit for bit, with a row count
 * past whole 16-row groups, K in several blocks, and rows of h beyond the pair untouched. */
Test(blas, gated_pair_gives_act_over_blas_gemm_bits) {
    unsigned seed = 11;
    static const int cases[][3] = {{1, 5, 3}, {29, 192, 37}, {13, 513, 64}, {40, 1024, 16}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int M = cases[c][0], K = cases[c][1], R = cases[c][2], ldh = R + 4;
        float *Wg = rnd((size_t)R * K, &seed), *Wu = rnd((size_t)R * K, &seed), *x = rnd((size_t)M * K, &seed);
        blas_packed *p = blas_pack_gated(Wg, Wu, R, K);
        if (!p) {
            free(Wg); free(Wu); free(x);
            cr_skip_test("blas_pack_gated: no packed kernel on this machine");
        }
        float *g = malloc((size_t)M * R * sizeof(float)), *u = malloc((size_t)M * R * sizeof(float));
        float *h = rnd((size_t)M * ldh, &seed), *want = malloc((size_t)M * ldh * sizeof(float));
        memcpy(want, h, (size_t)M * ldh * sizeof(float));
        blas_gemm(false, true, M, R, K, 1.0f, x, K, Wg, K, 0.0f, g, R);
        blas_gemm(false, true, M, R, K, 1.0f, x, K, Wu, K, 0.0f, u, R);
        gate_sub_half(want, ldh, g, u, R, M, R);
        blas_gated_packed(x, K, p, gate_sub_half, h, ldh, M);
        cr_assert_eq(memcmp(h, want, (size_t)M * ldh * sizeof(float)), 0, "M %d K %d rows %d", M, K, R);
        blas_packed_free(p);
        free(Wg); free(Wu); free(x); free(g); free(u); free(h); free(want);
    }
}
