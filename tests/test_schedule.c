/* Per-layer sparsity schedules: weighted mean at the target, bounds, ordering by sensitivity,
 * uniform = the plain solver bit for bit, and the driver storing the allocation. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../experiments/calib.h"
#include "../experiments/compress.h"
#include "../solvers/schedule.h"
#include "util.h"

static double weighted_mean(const schedule_layer *l, const double *s, int n) {
    double a = 0, b = 0;
    for (int i = 0; i < n; i++) { a += l[i].params * s[i]; b += l[i].params; }
    return a / b;
}

Test(schedule, weighted_mean_equals_target_and_sensitive_layers_get_less) {
    enum { N = 12 };
    schedule_layer l[N];
    for (int i = 0; i < N; i++)
        l[i] = (schedule_layer){.params = 1000.0 * (1 + i % 4), .obs_error = pow(10.0, -6 + 0.5 * i),
                                .outliers = 0.001 * (N - i), .block = i / 3};
    double s[N];
    err e = {0};
    double targets[3] = {0.5, 0.7, 0.9};
    for (int k = SCHEDULE_HESSIAN; k <= SCHEDULE_OWL; k++)
        for (int t = 0; t < 3; t++) {
            cr_assert_eq(schedule_allocate((schedule_kind)k, l, N, targets[t], s, &e), 0, "%s", e.msg);
            double m = weighted_mean(l, s, N);
            cr_assert(fabs(m - targets[t]) < 1e-3, "%s at %.1f: weighted mean %f", schedule_name(k),
                      targets[t], m);
            for (int i = 0; i < N; i++) cr_assert(s[i] >= 0.0 && s[i] <= 0.95, "layer %d: %f", i, s[i]);
            /* obs_error grows with i (more sensitive): sparsity must not grow with it. Outliers
             * shrink with i: owl gives the later blocks more sparsity. */
            for (int i = 1; i < N; i++) {
                if (k == SCHEDULE_HESSIAN) cr_assert(s[i] <= s[i - 1] + 1e-6, "hessian not monotone at %d", i);
                else cr_assert(s[i] >= s[i - 1] - 1e-6, "owl not monotone at %d", i);
            }
            cr_assert(s[0] != s[N - 1], "%s allocated uniformly", schedule_name(k));
        }
    /* Layers that all look alike get the target itself. */
    for (int i = 0; i < N; i++) l[i].obs_error = 1e-3, l[i].outliers = 0.01;
    cr_assert_eq(schedule_allocate(SCHEDULE_HESSIAN, l, N, 0.6, s, &e), 0);
    for (int i = 0; i < N; i++) cr_assert(fabs(s[i] - 0.6) < 1e-6);
}

Test(schedule, uniform_reproduces_the_plain_solver_and_the_driver_records_allocations, .timeout = 120) {
    tokenizer *t = load_tok512();
    token_seqs cs;
    err e = {0};
    cr_assert_eq(calib_from_text(t, data_path("text/c4-en-train-first1000.jsonl"), 16, 64, 0, &cs, &e), 0);
    model *a = load_stories(), *b = load_stories(), *c = load_stories();
    compress_options o = {.target = target_default()};
    o.target.sparsity = 0.7;
    cr_assert_eq(solver_spec_parse("sparsegpt", false, &o.solver, &e), 0);
    compress_report ra, rb, rc;
    cr_assert_eq(compress_model(a, &cs, &o, &ra, NULL, NULL, &e), 0, "%s", e.msg);
    o.schedule = SCHEDULE_UNIFORM;
    cr_assert_eq(compress_model(b, &cs, &o, &rb, NULL, NULL, &e), 0);
    cr_assert(memcmp(a->data, b->data, a->data_floats * sizeof(float)) == 0, "uniform differs");
    /* Each layer gets the target itself as a double (0.7, not 0.7f = 0.69999999). */
    for (int i = 0; i < rb.n; i++) cr_assert_eq(rb.layers[i].target_sparsity, 0.7, "%s", rb.layers[i].name);
    o.schedule = SCHEDULE_HESSIAN;
    cr_assert_eq(compress_model(c, &cs, &o, &rc, NULL, NULL, &e), 0, "%s", e.msg);
    double num = 0, den = 0;
    bool varied = false;
    for (int i = 0; i < rc.n; i++) {
        double w = (double)rc.layers[i].rows * rc.layers[i].cols;
        num += w * rc.layers[i].target_sparsity;
        den += w;
        varied |= fabs(rc.layers[i].target_sparsity - 0.7) > 1e-3;
        /* Each layer reaches its own target (pooled per block: within a few weights). */
        cr_assert(fabs(rc.layers[i].report.sparsity - rc.layers[i].target_sparsity) < 0.01,
                  "%s: %f vs %f", rc.layers[i].name, rc.layers[i].report.sparsity, rc.layers[i].target_sparsity);
    }
    cr_assert(fabs(num / den - 0.7) < 1e-3, "weighted mean %f", num / den);
    cr_assert(varied, "the hessian schedule should not be uniform on stories260K");
    cr_assert(fabs(rc.sparsity - 0.7) < 2e-3, "achieved %f", rc.sparsity);
    compress_report_free(&ra); compress_report_free(&rb); compress_report_free(&rc);
    model_free(a); model_free(b); model_free(c);
    token_seqs_free(&cs);
    tokenizer_free(t);
}
