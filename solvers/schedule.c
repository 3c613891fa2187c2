#include "schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mask.h"
#include "obs.h"

#define MAX_SPARSITY 0.95
#define HESSIAN_LEVELS 5        /* log-scale clusters of the error estimates              */
#define HESSIAN_STEP 0.05       /* sparsity difference between adjacent clusters           */
#define OWL_LAMBDA 0.08         /* OWL's default range: target +- lambda                  */
#define OWL_M 5.0f              /* OWL's outlier threshold: 5x the layer's mean score      */

int schedule_parse(const char *name, schedule_kind *out, err *e) {
    if (strcmp(name, "uniform") == 0) *out = SCHEDULE_UNIFORM;
    else if (strcmp(name, "hessian") == 0) *out = SCHEDULE_HESSIAN;
    else if (strcmp(name, "owl") == 0) *out = SCHEDULE_OWL;
    else return err_set(e, SPARQ_EINPUT, "schedule '%s': expected uniform, hessian or owl", name);
    return SPARQ_OK;
}

const char *schedule_name(schedule_kind k) {
    return k == SCHEDULE_HESSIAN ? "hessian" : k == SCHEDULE_OWL ? "owl" : "uniform";
}

int schedule_measure(const float *W, int rows, int cols, const float *H, double s, float damp,
                     schedule_layer *out, err *e) {
    size_t n = (size_t)rows * cols;
    memset(out, 0, sizeof *out);
    out->params = (double)n;
    obs_factor f;
    int rc = obs_factor_init(&f, H, cols, damp, e);
    if (rc) return rc;
    float *sal = malloc(n * sizeof(float)), *tmp = malloc(n * sizeof(float));
    double *hinv = malloc((size_t)cols * sizeof(double));
    if (!sal || !tmp || !hinv) {
        free(sal); free(tmp); free(hinv);
        obs_factor_free(&f);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    /* [H^-1]_jj = sum_i U_ij^2 (H^-1 = U^T U). */
    for (int j = 0; j < cols; j++) hinv[j] = 0;
    for (int i = 0; i < cols; i++)
        for (int j = i; j < cols; j++) hinv[j] += (double)f.U[(size_t)i * cols + j] * f.U[(size_t)i * cols + j];
    for (size_t k = 0; k < n; k++) {
        double w = W[k];
        sal[k] = (float)(w * w / (2.0 * hinv[k % cols]));
    }
    size_t cut = (size_t)((double)n * s);
    double sum = 0;
    if (cut > 0) {
        float t = mask_kth(sal, n, cut - 1, tmp);
        size_t taken = 0;
        for (size_t k = 0; k < n; k++) if (sal[k] < t) { sum += sal[k]; taken++; }
        sum += (double)t * (double)(cut - taken);        /* ties at the threshold */
    }
    out->obs_error = sum / (double)n;
    /* OWL: Wanda scores |W_ij| * ||X_j||, outliers above M times the layer mean. */
    double mean = 0;
    for (size_t k = 0; k < n; k++) {
        sal[k] = fabsf(W[k]) * sqrtf(fmaxf(H[(size_t)(k % cols) * cols + k % cols], 0.0f));
        mean += sal[k];
    }
    mean /= (double)n;
    size_t outl = 0;
    for (size_t k = 0; k < n; k++) outl += sal[k] > OWL_M * mean;
    out->outliers = (double)outl / (double)n;
    free(sal); free(tmp); free(hinv);
    obs_factor_free(&f);
    return SPARQ_OK;
}

static double clamp(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

/* Shift all sparsities by one constant so the weighted mean of the clipped values is the
 * target: the mean is monotone in the shift, so bisection finds it. */
static void shift_to_target(const schedule_layer *l, int n, double target, const double *base,
                            double *out) {
    double lo = -1.0, hi = 1.0, total = 0;
    for (int i = 0; i < n; i++) total += l[i].params;
    for (int it = 0; it < 100; it++) {
        double c = 0.5 * (lo + hi), m = 0;
        for (int i = 0; i < n; i++) m += l[i].params * clamp(base[i] + c, 0.0, MAX_SPARSITY);
        if (m / total < target) lo = c; else hi = c;
    }
    for (int i = 0; i < n; i++) out[i] = clamp(base[i] + 0.5 * (lo + hi), 0.0, MAX_SPARSITY);
}

int schedule_allocate(schedule_kind k, const schedule_layer *layers, int n, double target,
                      double *out, err *e) {
    if (!(target >= 0.0 && target <= MAX_SPARSITY))
        return err_set(e, SPARQ_EINPUT, "schedule target %g is outside [0, %g]", target,
                       MAX_SPARSITY);
    double *base = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!base) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (k == SCHEDULE_UNIFORM) {
        for (int i = 0; i < n; i++) out[i] = target;
        free(base);
        return SPARQ_OK;
    }
    if (k == SCHEDULE_HESSIAN) {
        /* algorithms.md §6 [RECON]: log10 of the error estimate, equal-width bins; the layer in
         * the lowest-error bin gets the most sparsity. */
        double zmin = INFINITY, zmax = -INFINITY;
        for (int i = 0; i < n; i++) {
            double z = log10(fmax(layers[i].obs_error, 1e-30));
            zmin = fmin(zmin, z);
            zmax = fmax(zmax, z);
        }
        for (int i = 0; i < n; i++) {
            double z = log10(fmax(layers[i].obs_error, 1e-30));
            int bin = zmax > zmin ? (int)((z - zmin) / (zmax - zmin) * HESSIAN_LEVELS) : 0;
            if (bin >= HESSIAN_LEVELS) bin = HESSIAN_LEVELS - 1;
            base[i] = target + HESSIAN_STEP * ((HESSIAN_LEVELS - 1) / 2.0 - bin);
        }
    } else {
        /* OWL: per block, the outlier ratio over its layers; ratios mapped onto [0, 2 lambda],
         * centred, and more outliers = more weights kept. */
        int nb = 0;
        for (int i = 0; i < n; i++) nb = layers[i].block + 1 > nb ? layers[i].block + 1 : nb;
        double *num = calloc((size_t)nb, sizeof(double)), *den = calloc((size_t)nb, sizeof(double));
        if (!num || !den) { free(num); free(den); free(base); return err_set(e, SPARQ_ERUNTIME, "out of memory"); }
        for (int i = 0; i < n; i++) {
            num[layers[i].block] += layers[i].outliers * layers[i].params;
            den[layers[i].block] += layers[i].params;
        }
        double rmin = INFINITY, rmax = -INFINITY, rmean = 0;
        for (int b = 0; b < nb; b++) {
            num[b] = den[b] > 0 ? num[b] / den[b] : 0;
            rmin = fmin(rmin, num[b]);
            rmax = fmax(rmax, num[b]);
        }
        for (int b = 0; b < nb; b++) {
            num[b] = rmax > rmin ? (num[b] - rmin) / (rmax - rmin) * 2 * OWL_LAMBDA : 0;
            rmean += num[b] / nb;
        }
        for (int i = 0; i < n; i++) base[i] = target - (num[layers[i].block] - rmean);
        free(num);
        free(den);
    }
    shift_to_target(layers, n, target, base, out);
    free(base);
    return SPARQ_OK;
}
