#include "quantizer.h"

#include <math.h>

/* GPTQ's quant.py: the range always contains 0; sym mirrors it; an all-zero set gets [-1, 1].
 * Returns the adjusted range through xmin/xmax, which the MSE search shrinks. */
static void fit_range(float *xmin, float *xmax, float maxq, bool sym, quant_params *p) {
    if (sym) {
        *xmax = fmaxf(fabsf(*xmin), *xmax);
        if (*xmin < 0.0f) *xmin = -*xmax;
    }
    if (*xmin == 0.0f && *xmax == 0.0f) { *xmin = -1.0f; *xmax = 1.0f; }
    p->maxq = maxq;
    p->scale = (*xmax - *xmin) / maxq;
    p->zero = sym ? (maxq + 1.0f) / 2.0f : rintf(-*xmin / p->scale);
}

int quant_fit(const float *x, int n, int stride, int bits, bool sym, bool mse, quant_params *p,
              err *e) {
    float maxq = (float)((1 << bits) - 1);
    float xmin = 0.0f, xmax = 0.0f;
    for (int i = 0; i < n; i++) {
        float v = x[(long)i * stride];
        if (!isfinite(v))
            return err_set(e, SPARQ_EINPUT, "weight %d of a quantization group is %g", i, (double)v);
        xmin = fminf(xmin, v);
        xmax = fmaxf(xmax, v);
    }
    fit_range(&xmin, &xmax, maxq, sym, p);
    if (!mse) return SPARQ_OK;
    /* quant.py's grid search: shrink the range in 1% steps down to 21% and keep the grid with
     * the least sum |q(x) - x|^2.4; the zero is refitted (asym) or kept (sym). */
    double best = INFINITY;
    float zero_sym = p->zero;
    for (int i = 0; i < 80; i++) {
        float f = 1.0f - i / 100.0f, lo = f * xmin, hi = f * xmax;
        quant_params c = {.maxq = maxq, .scale = (hi - lo) / maxq};
        c.zero = sym ? zero_sym : rintf(-lo / c.scale);
        double errsum = 0.0;
        for (int k = 0; k < n; k++) {
            float v = x[(long)k * stride];
            errsum += pow(fabs((double)quant_value(v, &c) - v), 2.4);
        }
        if (errsum < best) { best = errsum; *p = c; }
    }
    return SPARQ_OK;
}
