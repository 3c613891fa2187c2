/* Quantization: the grid of algorithms.md §4 and its edge cases, RTN and GPTQ results on their
 * reported grids (stored integers dequantize bit for bit), GPTQ against a naive unblocked
 * GPTQ written here, GPTQ <= RTN loss on every stories260K layer, chains keeping their mask,
 * and 8-bit perplexity within 1%. */
#include <criterion/criterion.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/forward.h"
#include "../core/hessian.h"
#include "../eval/perplexity.h"
#include "../experiments/calib.h"
#include "../experiments/compress.h"
#include "../solvers/quantizer.h"
#include "../solvers/solver.h"
#include "../core/family.h"
#include "util.h"

static unsigned long rs = 0x2545F4914F6CDD1Dul;
static double unif(void) {
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (rs >> 11) * (1.0 / 9007199254740992.0);
}
static float gauss(float sd) {
    return (float)(sd * sqrt(-2.0 * log(unif() + 1e-12)) * cos(6.283185307179586 * unif()));
}
static float *random_layer(int rows, int cols) {
    float *W = malloc((size_t)rows * cols * sizeof(float));
    for (int i = 0; i < rows * cols; i++) W[i] = gauss(0.1f);
    return W;
}

/* H of the q/k/v input (64) and of the down input (172) of block `l`, on real data. */
static float *layer_h(int l, bool down) {
    model *m = load_stories();
    tokenizer *t = load_tok512();
    token_seqs cs;
    err e = {0};
    cr_assert_eq(calib_from_text(t, data_path("text/c4-en-train-first1000.jsonl"), 16, 128, 0, &cs, &e), 0);
    int n = 16 * 128, w = down ? 172 : 64;
    float *X = malloc((size_t)n * 64 * sizeof(float)), *cap = malloc((size_t)n * w * sizeof(float));
    fwd_scratch *s = fwd_scratch_new();
    fwd_batch b = {.n_seq = cs.n, .lens = cs.lens, .n_tok = n};
    cr_assert_eq(forward_embed(m, cs.tokens, &b, X, &e), 0);
    for (int k = 0; k < l; k++) cr_assert_eq(forward_block(m, k, X, &b, NULL, s, &e), 0);
    block_inputs bi = {{down ? NULL : cap, NULL, NULL, down ? cap : NULL}};
    cr_assert_eq(forward_block(m, l, X, &b, &bi, s, &e), 0);
    hessian h;
    cr_assert_eq(hessian_init(&h, w, &e), 0);
    hessian_accumulate(&h, cap, n);
    hessian_finish(&h, 16);
    free(X); free(cap);
    fwd_scratch_free(s);
    token_seqs_free(&cs);
    tokenizer_free(t);
    model_free(m);
    return h.H;
}

static layer_report run(const char *name, float *W, int R, int C, const float *H, const target *t) {
    solver_spec sp;
    layer_report r;
    err e = {0};
    cr_assert_eq(solver_spec_parse(name, false, &sp, &e), 0, "%s", e.msg);
    cr_assert_eq(solver_spec_run(&sp, W, R, C, H, t, &r, &e), 0, "%s: %s", name, e.msg);
    return r;
}

static target qt(int bits, int group) {
    target t = target_default();
    t.bits = bits;
    t.group = group;
    return t;
}

/* ---- the grid ---------------------------------------------------------------------------- */

Test(quant, grid_edge_cases_zero_constant_outlier_nan) {
    quant_params p;
    err e = {0};
    float zeros[8] = {0};
    cr_assert_eq(quant_fit(zeros, 8, 1, 4, false, false, QUANT_GRID_MINMAX, &p, &e), 0);
    cr_assert_eq(p.scale, 2.0f / 15.0f, "an all-zero group gets the range [-1, 1]");
    for (int i = 0; i < 8; i++) cr_assert_eq(quant_value(zeros[i], &p), 0.0f);
    float cst[6] = {0.3f, 0.3f, 0.3f, 0.3f, 0.3f, 0.3f};
    cr_assert_eq(quant_fit(cst, 6, 1, 3, false, false, QUANT_GRID_MINMAX, &p, &e), 0);
    cr_assert_eq(p.zero, 0.0f, "the range [0, 0.3] always contains 0");
    cr_assert(fabsf(quant_value(0.3f, &p) - 0.3f) < 1e-7f);
    cr_assert_eq(quant_value(0.0f, &p), 0.0f);
    float out[16];
    for (int i = 0; i < 16; i++) out[i] = 0.01f * (i - 8);
    out[3] = 1000.0f;                      /* one huge outlier takes the grid: the rest round to 0 */
    cr_assert_eq(quant_fit(out, 16, 1, 4, false, false, QUANT_GRID_MINMAX, &p, &e), 0);
    cr_assert(fabsf(quant_value(1000.0f, &p) - 1000.0f) <= p.scale / 2);
    for (int i = 0; i < 16; i++) if (i != 3) cr_assert_eq(quant_value(out[i], &p), 0.0f);
    out[5] = NAN;
    cr_assert_eq(quant_fit(out, 16, 1, 4, false, false, QUANT_GRID_MINMAX, &p, &e), SPARQ_EINPUT);
    cr_assert(strstr(e.msg, "nan"), "%s", e.msg);
    /* Symmetric 4-bit: zero = 8, grid [-8, 7] * scale with scale = 2 max|x| / 15. */
    float sym[4] = {-0.75f, 0.1f, 0.2f, 0.5f};
    cr_assert_eq(quant_fit(sym, 4, 1, 4, true, false, QUANT_GRID_MINMAX, &p, &e), 0);
    cr_assert_eq(p.zero, 8.0f);
    cr_assert_eq(p.scale, 1.5f / 15.0f);
    cr_assert_eq(quant_code(-0.75f, &p), 0);          /* -0.75 / 0.1 = -7.5 -> -8 (half to even) */
    cr_assert_eq(quant_code(0.75f, &p), 15);          /* clamped at +7 */
    cr_assert_eq(quant_value(0.25f, &p), 0.2f);        /* 2.5 -> 2: half to even, not away */
}

/* Every row/group: at most 2^bits values, each on its reported grid, and the stored integer
 * dequantizes to the weight bit for bit. */
static void expect_on_grid(const float *W, int R, int C, const layer_report *r, int bits, bool sym) {
    cr_assert_not_null(r->scale);
    int g = r->group > 0 ? r->group : C;
    float maxq = (float)((1 << bits) - 1);
    for (int i = 0; i < R; i++) {
        int *count = calloc((size_t)r->n_groups << bits, sizeof(int));
        for (int j = 0; j < C; j++) {
            int q = r->gidx ? r->gidx[j] : j / g;
            quant_params p = {.scale = r->scale[i * r->n_groups + q], .zero = r->zero[i * r->n_groups + q], .maxq = maxq};
            if (sym) cr_assert_eq(p.zero, (maxq + 1) / 2, "symmetric zero");
            float w = W[i * C + j];
            int code = quant_code(w, &p);
            cr_assert_eq(p.scale * ((float)code - p.zero), w, "(%d, %d) = %.9g is off its grid", i, j, w);
            count[(q << bits) + code]++;
        }
        free(count);
    }
}

Test(quant, rtn_and_gptq_weights_lie_on_the_reported_grid) {
    float *H = layer_h(1, true);
    int R = 40, C = 172;
    struct { const char *s; int bits, group; bool sym, act, stat; } cs[] = {
        {"rtn", 4, -1, false, false, false}, {"rtn", 3, 32, true, false, false},
        {"gptq", 4, -1, false, false, false}, {"gptq", 3, 32, false, false, false},
        {"gptq", 4, 64, true, true, false}, {"gptq", 2, 32, false, true, true},
        {"gptq", 8, -1, true, true, false},
    };
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        float *W = random_layer(R, C);
        target t = qt(cs[k].bits, cs[k].group);
        t.sym = cs[k].sym;
        t.act_order = cs[k].act;
        t.static_groups = cs[k].stat;
        layer_report r = run(cs[k].s, W, R, C, H, &t);
        cr_assert_eq(r.n_groups, cs[k].group > 0 ? (C + cs[k].group - 1) / cs[k].group : 1);
        if (cs[k].act && cs[k].group > 0) cr_assert_not_null(r.gidx, "act-order groups need gidx");
        expect_on_grid(W, R, C, &r, cs[k].bits, cs[k].sym);
        layer_report_free(&r);
        free(W);
    }
    free(H);
}

/* ---- GPTQ against a naive, unblocked GPTQ ------------------------------------------------- */

/* Column by column in double, in act-order when asked: quantize, then compensate every later
 * column with the exact inverse of H over the columns not yet visited (full downdate). The
 * grid is per row on the dense W, or static groups, or groups refitted on the current weights
 * when the sweep reaches them. */
static void naive_gptq(float *W, int R, int C, const float *H, const target *t, double p) {
    int *perm = malloc(C * sizeof(int));
    double *Hp = malloc((size_t)C * C * sizeof(double)), *Hr = malloc((size_t)C * C * sizeof(double));
    double *w = malloc(C * sizeof(double));
    float *row = malloc(C * sizeof(float));
    for (int j = 0; j < C; j++) perm[j] = j;
    if (t->act_order)      /* stable insertion sort by decreasing diagonal (dead counts as 1) */
        for (int a = 1; a < C; a++)
            for (int b = a; b > 0; b--) {
                float hb = H[perm[b] * C + perm[b]], ha = H[perm[b - 1] * C + perm[b - 1]];
                hb = hb == 0 ? 1 : hb; ha = ha == 0 ? 1 : ha;
                if (hb > ha) { int x = perm[b]; perm[b] = perm[b - 1]; perm[b - 1] = x; } else break;
            }
    double mean = 0;
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) Hp[a * C + b] = H[perm[a] * C + perm[b]];
    for (int j = 0; j < C; j++) { if (Hp[j * C + j] == 0) Hp[j * C + j] = 1; mean += Hp[j * C + j]; }
    for (int j = 0; j < C; j++) Hp[j * C + j] += p * mean / C;
    cr_assert_eq(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', C, Hp, C), 0);
    cr_assert_eq(LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', C, Hp, C), 0);
    for (int a = 0; a < C; a++) for (int b = a + 1; b < C; b++) Hp[a * C + b] = Hp[b * C + a];
    int g = t->group > 0 ? t->group : C;
    for (int i = 0; i < R; i++) {
        memcpy(Hr, Hp, (size_t)C * C * sizeof(double));
        quant_params qp;
        if (t->group <= 0) quant_fit(W + i * C, C, 1, t->bits, t->sym, false, QUANT_GRID_MINMAX, &qp, NULL);
        for (int k = 0; k < C; k++) w[k] = W[i * C + perm[k]];
        for (int k = 0; k < C; k++) {
            if (t->group > 0 && t->static_groups) {
                int q0 = perm[k] / g * g, n = q0 + g < C ? g : C - q0;
                quant_fit(W + i * C + q0, n, 1, t->bits, t->sym, false, QUANT_GRID_MINMAX, &qp, NULL);
            } else if (t->group > 0 && k % g == 0) {
                int n = k + g < C ? g : C - k;
                for (int c = 0; c < n; c++) row[c] = (float)w[k + c];
                quant_fit(row, n, 1, t->bits, t->sym, false, QUANT_GRID_MINMAX, &qp, NULL);
            }
            double d = Hr[k * C + k];
            double q = quant_value((float)w[k], &qp), f = (w[k] - q) / d;
            for (int c = k; c < C; c++) w[c] -= f * Hr[k * C + c];
            w[k] = q;
            for (int a = k + 1; a < C; a++)
                for (int b = k + 1; b < C; b++) Hr[a * C + b] -= Hr[a * C + k] * Hr[k * C + b] / d;
        }
        for (int k = 0; k < C; k++) W[i * C + perm[k]] = (float)w[k];
    }
    free(perm); free(Hp); free(Hr); free(w); free(row);
}

Test(quant, gptq_matches_naive_gptq_for_block_128_and_block_cols, .timeout = 120) {
    float *H = layer_h(2, true);
    int R = 24, C = 172;
    struct { int bits, group, block; bool act, stat; } cs[] = {
        {4, -1, 128, false, false}, {4, -1, 172, false, false},
        {3, -1, 128, true, false},  {3, -1, 172, true, false},
        {4, 43, 128, true, true},   {4, 43, 172, false, true},
        {4, 32, 32, false, false},  /* dynamic groups refit on the lazily updated weights */
    };
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        float *W = random_layer(R, C), *Wn = malloc(R * C * sizeof(float));
        memcpy(Wn, W, R * C * sizeof(float));
        target t = qt(cs[k].bits, cs[k].group);
        t.block = cs[k].block;
        t.act_order = cs[k].act;
        t.static_groups = cs[k].stat;
        layer_report r = run("gptq", W, R, C, H, &t);
        naive_gptq(Wn, R, C, H, &t, r.damp);
        float worst = 0;
        for (int i = 0; i < R * C; i++) worst = fmaxf(worst, fabsf(W[i] - Wn[i]));
        /* 1e-4: float sweep vs double reference; a flipped rounding would show as a grid step. */
        cr_assert(worst <= 1e-4f, "case %zu (bits %d group %d block %d act %d): largest difference %g",
                  k, cs[k].bits, cs[k].group, cs[k].block, cs[k].act, worst);
        layer_report_free(&r);
        free(W); free(Wn);
    }
    free(H);
}

/* ---- quality ------------------------------------------------------------------------------ */

Test(quant, gptq_loss_at_most_rtn_on_every_stories260k_layer_at_4_and_3_bits, .timeout = 120) {
    real_h *h = real_hessians(32, 128);
    model *m = load_stories();
    for (int bits = 4; bits >= 3; bits--) {
        for (int l = 0; l < 5; l++) {
            for (int k = 0; k < model_n_linear(m); k++) {
                const linear *lin = &m->blocks[l].lin[k];
                const float *H = h->H[l][linear_input[k]];
                size_t n = (size_t)lin->rows * lin->cols;
                double loss[2];
                const char *names[2] = {"gptq", "rtn"};
                for (int s = 0; s < 2; s++) {
                    float *W = malloc(n * sizeof(float));
                    memcpy(W, lin->w, n * sizeof(float));
                    target t = qt(bits, -1);
                    layer_report r = run(names[s], W, lin->rows, lin->cols, H, &t);
                    loss[s] = r.loss;
                    layer_report_free(&r);
                    free(W);
                }
                cr_log_info("%d-bit %d.%s: gptq %.6g  rtn %.6g", bits, l, model_linear_name(m, k), loss[0], loss[1]);
                cr_assert(loss[0] <= loss[1], "%d-bit layer %d.%s: gptq %g > rtn %g", bits, l,
                          model_linear_name(m, k), loss[0], loss[1]);
            }
        }
    }
    model_free(m);
    real_h_free(h);
}

Test(quant, chain_sparsegpt_gptq_keeps_the_mask_and_the_grid) {
    float *H = layer_h(3, true);
    int R = 40, C = 172;
    float *W = random_layer(R, C), *W2 = malloc(R * C * sizeof(float));
    memcpy(W2, W, R * C * sizeof(float));
    target t = qt(4, 32);
    t.sparsity = 0.5f;
    layer_report r = run("sparsegpt+gptq", W, R, C, H, &t);
    /* Case B: the mask of stage 1 is the mask of the result, and it is exactly 50% of the
     * weights of each block pooled (layer within a weight per block). */
    layer_report r1 = run("sparsegpt", W2, R, C, H, &(target){.sparsity = 0.5f, .bits = 16, .group = -1,
                                                              .damp = 0.01f, .block = 128});
    cr_assert(memcmp(r.mask, r1.mask, R * C) == 0, "the chain changed the pruning mask");
    /* Pruned entries are exactly 0; a kept weight may also round to the grid's 0. */
    for (int i = 0; i < R * C; i++) if (r.mask[i]) cr_assert_eq(W[i], 0.0f, "entry %d", i);
    expect_on_grid(W, R, C, &r, 4, false);
    layer_report_free(&r);
    layer_report_free(&r1);
    free(W); free(W2); free(H);
}

static double ppl_of(model *m, const token_seqs *docs) {
    ppl_result pr;
    err e = {0};
    cr_assert_eq(ppl_score(m, docs, &pr, NULL, NULL, &e), 0, "%s", e.msg);
    return pr.ppl;
}

Test(quant, eight_bit_rtn_and_gptq_change_perplexity_by_less_than_one_percent, .timeout = 120) {
    tokenizer *t = load_tok512();
    token_seqs docs, cs;
    err e = {0};
    cr_assert_eq(ppl_prepare(t, data_path("text/TinyStories-valid-first1000.txt"), PPL_DOCUMENTS, 512, 200,
                             &docs, &e), 0);
    cr_assert_eq(calib_from_text(t, data_path("text/c4-en-train-first1000.jsonl"), 32, 256, 0, &cs, &e), 0);
    model *dense = load_stories();
    double base = ppl_of(dense, &docs);
    const char *names[2] = {"rtn", "gptq"};
    for (int s = 0; s < 2; s++) {
        model *m = load_stories();
        compress_options o = {.target = qt(8, -1)};
        cr_assert_eq(solver_spec_parse(names[s], false, &o.solver, &e), 0);
        compress_report r;
        cr_assert_eq(compress_model(m, &cs, &o, &r, NULL, NULL, &e), 0, "%s", e.msg);
        double p = ppl_of(m, &docs);
        cr_log_info("8-bit %s: perplexity %.4f vs dense %.4f", names[s], p, base);
        cr_assert(fabs(p / base - 1.0) < 0.01, "8-bit %s: %.4f vs dense %.4f", names[s], p, base);
        compress_report_free(&r);
        model_free(m);
    }
    model_free(dense);
    token_seqs_free(&docs);
    token_seqs_free(&cs);
    tokenizer_free(t);
}

/* ggml's grid (issue 20): asymmetric from the set's own min and max (0 need not be a level),
 * scale and min float16 values when fitted; symmetric from the signed weight of largest
 * magnitude; 8 bits Q8_0's max|w| / 127. */
Test(quant, ggml_grid_fits_float16_scale_and_min) {
    float x[4] = {0.1f, 0.7f, 0.4f, 0.25f};
    quant_params p;
    err e = {0};
    cr_assert_eq(quant_fit(x, 4, 1, 4, false, false, QUANT_GRID_GGML, &p, &e), 0);
    cr_assert(p.affine);
    cr_assert_eq(p.min, 0.0999755859375f);            /* 0.1 in float16 */
    cr_assert_eq(p.scale, f16_to_f32(f32_to_f16(0.6f / 15)));
    cr_assert_eq(quant_value(0.1f, &p), p.min);        /* code 0 */
    cr_assert_eq(quant_value(0.7f, &p), 15.0f * p.scale + p.min);
    cr_assert_eq(quant_code(0.0f, &p), 0);              /* below the range: clamped */
    float s[3] = {0.5f, -1.2f, 1.2f};                   /* the first of largest |w| is -1.2 */
    cr_assert_eq(quant_fit(s, 3, 1, 4, true, false, QUANT_GRID_GGML, &p, &e), 0);
    cr_assert_eq(p.scale, f16_to_f32(f32_to_f16(-1.2f / -8)));
    cr_assert_eq(quant_value(-1.2f, &p), -8.0f * p.scale);
    cr_assert_eq(quant_fit(s, 3, 1, 8, true, false, QUANT_GRID_GGML, &p, &e), 0);
    cr_assert_eq(p.scale, f16_to_f32(f32_to_f16(1.2f / 127)));
    cr_assert_eq(p.zero, 128.0f);
    float z[2] = {0.0f, 0.0f};                          /* scale 0: everything is 0 */
    cr_assert_eq(quant_fit(z, 2, 1, 4, true, false, QUANT_GRID_GGML, &p, &e), 0);
    cr_assert_eq(p.scale, 0.0f);
    cr_assert_eq(quant_value(0.0f, &p), 0.0f);
    cr_assert_eq(quant_fit(z, 2, 1, 4, false, false, QUANT_GRID_GGML, &p, &e), 0);
    cr_assert_eq(quant_value(0.0f, &p), 0.0f);
    float big[2] = {-1e6f, 1e6f};                       /* a scale beyond float16 is refused */
    cr_assert_eq(quant_fit(big, 2, 1, 4, true, false, QUANT_GRID_GGML, &p, &e), SPARQ_EINPUT);
}
