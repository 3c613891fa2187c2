#include "quantizer.h"

#include <math.h>

#include "../core/dtype.h"

/* GGUF's blocks store the scale and min as float16: rounding them when the grid is fitted makes
 * the solver's values the file's values. */
static float to_f16(float x) { return f16_to_f32(f32_to_f16(x)); }

/* GPTQ's quant.py: the range always contains 0; sym mirrors it; an all-zero set gets [-1, 1].
 * Returns the adjusted range through xmin/xmax, which the MSE search shrinks. */
static void fit_range(float *xmin, float *xmax, float maxq, bool sym, quant_params *p) {
    if (sym) {
        *xmax = fmaxf(fabsf(*xmin), *xmax);
        if (*xmin < 0.0f) *xmin = -*xmax;
    }
    if (*xmin == 0.0f && *xmax == 0.0f) { *xmin = -1.0f; *xmax = 1.0f; }
    *p = (quant_params){.maxq = maxq, .scale = (*xmax - *xmin) / maxq};
    p->zero = sym ? (maxq + 1.0f) / 2.0f : rintf(-*xmin / p->scale);
}

/* ggml's rules (ggml-quants.c quantize_row_*_ref) for the grid's range, generalised to 2..8
 * bits: sym from `top`, the weight of largest magnitude with its sign (8 bits: Q8_0's
 * max|w| / 127, levels -128..127), asym from the set's own min and max (0 need not be in the
 * range). A zero scale is +0, so every value of the set quantizes to 0 (or to min). */
static void ggml_grid(float lo, float hi, float top, int bits, bool sym, quant_params *p) {
    float maxq = (float)((1 << bits) - 1);
    *p = (quant_params){.maxq = maxq};
    if (sym) {
        p->zero = (float)(1 << (bits - 1));
        p->scale = to_f16(bits == 8 ? fabsf(top) / 127 : top / -p->zero);
    } else {
        p->affine = true;
        p->scale = to_f16((hi - lo) / maxq);
        p->min = to_f16(lo);
    }
    if (p->scale == 0.0f) p->scale = 0.0f;   /* -0 -> +0 */
}

int quant_fit(const float *x, int n, int stride, int bits, bool sym, bool mse, quant_grid grid,
              quant_params *p, err *e) {
    float maxq = (float)((1 << bits) - 1);
    float xmin = 0.0f, xmax = 0.0f, lo = INFINITY, hi = -INFINITY, top = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float v = x[(long)i * stride];
        if (!isfinite(v))
            return err_set(e, SPARQ_EINPUT, "weight %d of a quantization group is %g", i, (double)v);
        xmin = fminf(xmin, v);
        xmax = fmaxf(xmax, v);
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
        if (amax < fabsf(v)) { amax = fabsf(v); top = v; }   /* the first of largest |w|, as ggml */
    }
    if (grid == QUANT_GRID_GGML) {
        ggml_grid(lo, hi, top, bits, sym, p);
        if (!isfinite(p->scale) || !isfinite(p->min))
            return err_set(e, SPARQ_EINPUT, "a quantization group's ggml scale (range %g to %g) is beyond "
                           "the float16 range", (double)lo, (double)hi);
    } else {
        fit_range(&xmin, &xmax, maxq, sym, p);
    }
    if (!mse) return SPARQ_OK;
    /* quant.py's grid search: shrink the range in 1% steps down to 21% and keep the grid with
     * the least sum |q(x) - x|^2.4; the zero is refitted (asym) or kept (sym). The ggml grid
     * shrinks its own range (top, or min and max) the same way. */
    double best = INFINITY;
    float zero_sym = p->zero;
    for (int i = 0; i < 80; i++) {
        float f = 1.0f - i / 100.0f;
        quant_params c;
        if (grid == QUANT_GRID_GGML) {
            ggml_grid(f * lo, f * hi, f * top, bits, sym, &c);
        } else {
            float l = f * xmin, h = f * xmax;
            c = (quant_params){.maxq = maxq, .scale = (h - l) / maxq};
            c.zero = sym ? zero_sym : rintf(-l / c.scale);
        }
        double errsum = 0.0;
        for (int k = 0; k < n; k++) {
            float v = x[(long)k * stride];
            errsum += pow(fabs((double)quant_value(v, &c) - v), 2.4);
        }
        if (errsum < best) { best = errsum; *p = c; }
    }
    return SPARQ_OK;
}
