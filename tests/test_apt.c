/* APT (optimal multi-weight pruning): loss at most SparseGPT's for the same mask on random and
 * real layers, equal to SparseGPT when each block removes one weight per row, the whole-row
 * mode against a least-squares solution from LAPACK, and N:M pattern choice against brute
 * force. */
#include <criterion/criterion.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../solvers/solver.h"
#include "../core/family.h"
#include "util.h"

static unsigned long rs = 0x9E3779B97F4A7C15ul;
static double unif(void) {
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (rs >> 11) * (1.0 / 9007199254740992.0);
}
static float gauss(float sd) {
    return (float)(sd * sqrt(-2.0 * log(unif() + 1e-12)) * cos(6.283185307179586 * unif()));
}
static float *randn(int n, float sd) {
    float *x = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) x[i] = gauss(sd);
    return x;
}
/* H = 2/T X^T X from T tokens of correlated features (x = z A), so pruned inputs interact. */
static float *random_h(int C, int T, float **Xout) {
    float *A = randn(C * C, 1.0f / sqrtf((float)C)), *Z = randn(T * C, 1.0f);
    float *X = calloc((size_t)T * C, sizeof(float)), *H = calloc((size_t)C * C, sizeof(float));
    for (int t = 0; t < T; t++)
        for (int k = 0; k < C; k++)
            for (int j = 0; j < C; j++) X[t * C + j] += Z[t * C + k] * (A[k * C + j] + (k == j));
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += (double)X[t * C + i] * X[t * C + j];
            H[i * C + j] = (float)(2.0 * s / T);
        }
    free(A); free(Z);
    if (Xout) *Xout = X; else free(X);
    return H;
}

/* Run a solver with a given pruned set (the second-stage path: keep_mask). */
static layer_report with_mask(const char *name, float *W, int R, int C, const float *H,
                              const uint8_t *mask, int block) {
    const solver *s = solver_find(name);
    target t = target_default();
    t.keep_mask = true;
    t.block = block;
    t.damp = 0.01f;
    layer_report r = {0};
    r.mask = malloc((size_t)R * C);
    memcpy(r.mask, mask, (size_t)R * C);
    float *W0 = malloc((size_t)R * C * sizeof(float));
    memcpy(W0, W, (size_t)R * C * sizeof(float));
    err e = {0};
    cr_assert_eq(s->compress(W, R, C, H, &t, &r, &e), 0, "%s: %s", name, e.msg);
    /* Loss 1/2 tr(D H D^T), computed here in double. */
    double loss = 0;
    for (int i = 0; i < R; i++)
        for (int a = 0; a < C; a++) {
            double da = W0[i * C + a] - W[i * C + a];
            if (da == 0) continue;
            for (int b = 0; b < C; b++) loss += da * H[a * C + b] * (W0[i * C + b] - W[i * C + b]);
        }
    r.loss = 0.5 * loss;
    for (int i = 0; i < R * C; i++) if (mask[i]) cr_assert_eq(W[i], 0.0f, "%s: pruned %d is %g", name, i, W[i]);
    free(W0);
    return r;
}

static uint8_t *sparsegpt_mask(const float *W, int R, int C, const float *H, float s) {
    float *Wc = malloc((size_t)R * C * sizeof(float));
    memcpy(Wc, W, (size_t)R * C * sizeof(float));
    target t = target_default();
    t.sparsity = s;
    layer_report r;
    err e = {0};
    cr_assert_eq(solver_run(solver_find("sparsegpt"), Wc, R, C, H, &t, &r, &e), 0, "%s", e.msg);
    uint8_t *m = r.mask;
    r.mask = NULL;
    layer_report_free(&r);
    free(Wc);
    return m;
}

Test(apt, loss_at_most_sparsegpt_for_the_same_mask_on_random_layers) {
    int dims[3][2] = {{16, 64}, {24, 160}, {8, 200}};
    for (int k = 0; k < 3; k++) {
        int R = dims[k][0], C = dims[k][1];
        float *H = random_h(C, 4 * C, NULL), *W = randn(R * C, 0.1f);
        for (float s = 0.3f; s < 0.95f; s += 0.3f) {
            uint8_t *mask = sparsegpt_mask(W, R, C, H, s);
            float *a = malloc((size_t)R * C * sizeof(float)), *b = malloc((size_t)R * C * sizeof(float));
            memcpy(a, W, (size_t)R * C * sizeof(float));
            memcpy(b, W, (size_t)R * C * sizeof(float));
            layer_report ra = with_mask("apt", a, R, C, H, mask, 128);
            layer_report rb = with_mask("sparsegpt", b, R, C, H, mask, 128);
            cr_log_info("%dx%d s=%.1f: apt %.6g  sparsegpt %.6g", R, C, s, ra.loss, rb.loss);
            cr_assert(ra.loss <= rb.loss * (1 + 1e-5), "apt %g > sparsegpt %g", ra.loss, rb.loss);
            layer_report_free(&ra); layer_report_free(&rb);
            free(a); free(b); free(mask);
        }
        free(H); free(W);
    }
}

Test(apt, loss_at_most_sparsegpt_on_every_stories260k_layer, .timeout = 120) {
    real_h *h = real_hessians(32, 128);
    model *m = load_stories();
    for (int l = 0; l < 5; l++)
        for (int q = 0; q < model_n_linear(m); q++) {
            const linear *lin = &m->blocks[l].lin[q];
            int R = lin->rows, C = lin->cols;
            const float *H = h->H[l][linear_input[q]];
            uint8_t *mask = sparsegpt_mask(lin->w, R, C, H, 0.5f);
            float *a = malloc((size_t)R * C * sizeof(float)), *b = malloc((size_t)R * C * sizeof(float));
            memcpy(a, lin->w, (size_t)R * C * sizeof(float));
            memcpy(b, lin->w, (size_t)R * C * sizeof(float));
            layer_report ra = with_mask("apt", a, R, C, H, mask, 128);
            layer_report rb = with_mask("sparsegpt", b, R, C, H, mask, 128);
            cr_log_info("%d.%s 50%%: apt %.6g  sparsegpt %.6g", l, model_linear_name(m, q), ra.loss, rb.loss);
            cr_assert(ra.loss <= rb.loss * (1 + 1e-5), "%d.%s: apt %g > sparsegpt %g", l, model_linear_name(m, q),
                      ra.loss, rb.loss);
            layer_report_free(&ra); layer_report_free(&rb);
            free(a); free(b); free(mask);
        }
    model_free(m);
    real_h_free(h);
}

/* With blocks of one column, a block holds at most one pruned weight per row and F = {j..c-1}:
 * the joint solution is SparseGPT's single OBS step. */
Test(apt, one_pruned_weight_per_row_per_block_equals_sparsegpt) {
    int R = 16, C = 96;
    float *H = random_h(C, 3 * C, NULL), *W = randn(R * C, 0.1f);
    uint8_t *mask = sparsegpt_mask(W, R, C, H, 0.5f);
    float *a = malloc((size_t)R * C * sizeof(float)), *b = malloc((size_t)R * C * sizeof(float));
    memcpy(a, W, (size_t)R * C * sizeof(float));
    memcpy(b, W, (size_t)R * C * sizeof(float));
    layer_report ra = with_mask("apt", a, R, C, H, mask, 1);
    layer_report rb = with_mask("sparsegpt", b, R, C, H, mask, 128);
    float worst = 0;
    for (int i = 0; i < R * C; i++) worst = fmaxf(worst, fabsf(a[i] - b[i]));
    cr_assert(worst <= 1e-5f, "apt with one-column blocks differs from sparsegpt by %g", worst);
    layer_report_free(&ra); layer_report_free(&rb);
    free(a); free(b); free(mask); free(H); free(W);
}

/* --block 0 is the exact solution of min ||W X - W' X|| with W' zero on the mask: compare with
 * LAPACK's least squares on X restricted to the kept inputs (no damping on either side). */
Test(apt, whole_row_mode_equals_least_squares_solution) {
    int R = 6, C = 40, T = 200;
    float *X, *H = random_h(C, T, &X), *W = randn(R * C, 0.1f);
    uint8_t *mask = sparsegpt_mask(W, R, C, H, 0.6f);
    float *a = malloc((size_t)R * C * sizeof(float));
    memcpy(a, W, (size_t)R * C * sizeof(float));
    const solver *s = solver_find("apt");
    target t = target_default();
    t.keep_mask = true;
    t.block = 0;
    t.damp = 0.0f;
    layer_report r = {0};
    r.mask = malloc((size_t)R * C);
    memcpy(r.mask, mask, (size_t)R * C);
    err e = {0};
    cr_assert_eq(s->compress(a, R, C, H, &t, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r.damp, 0.0, "a full-rank H needs no damping");
    for (int i = 0; i < R; i++) {
        /* min_v || X_K v - X w ||, X_K = kept columns of X (T x k). */
        int k = 0, K[64];
        for (int j = 0; j < C; j++) if (!mask[i * C + j]) K[k++] = j;
        double *A = malloc((size_t)T * k * sizeof(double)), *y = malloc((size_t)T * sizeof(double));
        for (int tt = 0; tt < T; tt++) {
            double v = 0;
            for (int j = 0; j < C; j++) v += (double)X[tt * C + j] * W[i * C + j];
            y[tt] = v;
            for (int q = 0; q < k; q++) A[tt * k + q] = X[tt * C + K[q]];
        }
        cr_assert_eq(LAPACKE_dgels(LAPACK_ROW_MAJOR, 'N', T, k, 1, A, k, y, 1), 0);
        for (int q = 0; q < k; q++)
            cr_assert(fabs(a[i * C + K[q]] - y[q]) <= 1e-4, "row %d col %d: apt %g, least squares %g",
                      i, K[q], a[i * C + K[q]], y[q]);
        for (int j = 0; j < C; j++) if (mask[i * C + j]) cr_assert_eq(a[i * C + j], 0.0f);
        free(A); free(y);
    }
    layer_report_free(&r);
    free(a); free(mask); free(X); free(H); free(W);
}

/* Naive APT 2:4 in double: per row, groups left to right; every one of the 6 patterns scored by
 * its joint loss with the inverse of H over {g0..c-1} computed directly; the best one removed
 * with the exact update. */
Test(apt, nm_2_4_picks_the_least_joint_loss_pattern) {
    int R = 8, C = 32;
    float *H = random_h(C, 4 * C, NULL), *W = randn(R * C, 0.1f), *a = malloc((size_t)R * C * sizeof(float));
    memcpy(a, W, (size_t)R * C * sizeof(float));
    target t = target_default();
    t.sparsity = 0.5f;
    t.n = 2;
    t.m = 4;
    t.block = 16;                      /* two blocks: the lazy update path too */
    layer_report r;
    err e = {0};
    cr_assert_eq(solver_run(solver_find("apt"), a, R, C, H, &t, &r, &e), 0, "%s", e.msg);
    double mean = 0;
    for (int j = 0; j < C; j++) mean += H[j * C + j];
    double lam = r.damp * mean / C;
    static const int pats[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
    for (int i = 0; i < R; i++) {
        double w[64];
        for (int j = 0; j < C; j++) w[j] = W[i * C + j];
        for (int g0 = 0; g0 < C; g0 += 4) {
            int n = C - g0;
            double *Hi = malloc((size_t)n * n * sizeof(double));
            for (int p = 0; p < n; p++)
                for (int q = 0; q < n; q++) Hi[p * n + q] = H[(g0 + p) * C + g0 + q] + (p == q ? lam : 0);
            cr_assert_eq(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, Hi, n), 0);
            cr_assert_eq(LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', n, Hi, n), 0);
            for (int p = 0; p < n; p++) for (int q = p + 1; q < n; q++) Hi[p * n + q] = Hi[q * n + p];
            double best = INFINITY;
            int bp = -1;
            for (int k = 0; k < 6; k++) {
                int x = pats[k][0], y = pats[k][1];
                double A = Hi[x * n + x], B = Hi[x * n + y], D = Hi[y * n + y], det = A * D - B * B;
                double wx = w[g0 + x], wy = w[g0 + y];
                double loss = 0.5 * (D * wx * wx - 2 * B * wx * wy + A * wy * wy) / det;
                if (loss < best) { best = loss; bp = k; }
            }
            int x = pats[bp][0], y = pats[bp][1];
            for (int q = 0; q < 4; q++)
                cr_assert_eq(r.mask[i * C + g0 + q], q == x || q == y, "row %d group %d: pattern differs", i, g0);
            double A = Hi[x * n + x], B = Hi[x * n + y], D = Hi[y * n + y], det = A * D - B * B;
            double zx = (D * w[g0 + x] - B * w[g0 + y]) / det, zy = (A * w[g0 + y] - B * w[g0 + x]) / det;
            for (int c = 0; c < n; c++) w[g0 + c] -= zx * Hi[x * n + c] + zy * Hi[y * n + c];
            w[g0 + x] = w[g0 + y] = 0;
            free(Hi);
        }
        for (int j = 0; j < C; j++)
            cr_assert(fabs(a[i * C + j] - w[j]) <= 1e-4, "row %d col %d: apt %g, naive %g", i, j, a[i * C + j], w[j]);
    }
    layer_report_free(&r);
    free(H); free(W); free(a);
}
