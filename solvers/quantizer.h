/* The min-max quantization grid of algorithms.md §4 (GPTQ's quant.py): asymmetric or
 * symmetric, fitted on a set of weights (a row or a group of columns), optional MSE range
 * search, round half to even. Zero always maps to exactly zero. Owns no memory. */
#ifndef SPARQ_QUANTIZER_H
#define SPARQ_QUANTIZER_H

#include <stdbool.h>

#include "../core/err.h"

typedef struct {
    float scale, zero, maxq;
} quant_params;

/* Fit the grid on x[0], x[stride], ..., x[(n-1)*stride]. Non-finite input is an error. */
int quant_fit(const float *x, int n, int stride, int bits, bool sym, bool mse, quant_params *p,
              err *e);

/* The grid value nearest to x: scale * (clamp(rint(x / scale) + zero, 0, maxq) - zero). */
static inline float quant_value(float x, const quant_params *p) {
    float q = __builtin_rintf(x / p->scale) + p->zero;
    q = q < 0.0f ? 0.0f : (q > p->maxq ? p->maxq : q);
    return p->scale * (q - p->zero);
}

/* The stored integer of x on the grid (what a packed format keeps). */
static inline int quant_code(float x, const quant_params *p) {
    float q = __builtin_rintf(x / p->scale) + p->zero;
    return (int)(q < 0.0f ? 0.0f : (q > p->maxq ? p->maxq : q));
}

#endif
