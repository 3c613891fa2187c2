/* The quantization grids of a set of weights (a row or a group of columns): the min-max grid of
 * algorithms.md §4 (GPTQ's quant.py, asymmetric or symmetric) and ggml's grid (the scale rules of
 * ggml's Q4_0/Q5_0/Q8_0 and Q4_1/Q5_1 blocks, scale and min rounded to float16 when fitted), an
 * optional MSE range search, round half to even. Owns no memory. */
#ifndef SPARQ_QUANTIZER_H
#define SPARQ_QUANTIZER_H

#include <stdbool.h>

#include "../core/err.h"

typedef enum {
    QUANT_GRID_MINMAX,   /* quant.py: the range holds 0; sym: scale = 2 max|w| / (2^b - 1)            */
    QUANT_GRID_GGML,     /* sym: scale = (signed w of largest |w|) / -2^(b-1), so that weight is a level
                            (8 bits: max|w| / 127, Q8_0); asym: scale = (max - min) / (2^b - 1) with
                            value = scale q + min (Q4_1/Q5_1); scale and min are float16 values      */
} quant_grid;

/* value = scale * (q - zero), or scale * q + min when affine; q in [0, maxq]. */
typedef struct {
    float scale, zero, maxq, min;
    bool  affine;
} quant_params;

/* Fit the grid on x[0], x[stride], ..., x[(n-1)*stride]. Non-finite input, or a ggml scale
 * beyond the float16 range, is an error. */
int quant_fit(const float *x, int n, int stride, int bits, bool sym, bool mse, quant_grid grid,
              quant_params *p, err *e);

/* The stored integer of x on the grid (what a packed format keeps). A zero scale (a ggml grid
 * fitted on zeros) has one level: the code of 0 (or of min). */
static inline int quant_code(float x, const quant_params *p) {
    float q = p->scale == 0.0f ? (p->affine ? 0.0f : p->zero)
              : p->affine ? __builtin_rintf((x - p->min) / p->scale) : __builtin_rintf(x / p->scale) + p->zero;
    return (int)(q < 0.0f ? 0.0f : (q > p->maxq ? p->maxq : q));
}

/* The grid value nearest to x: scale * (clamp(rint(x / scale) + zero, 0, maxq) - zero), or
 * scale * clamp(rint((x - min) / scale), 0, maxq) + min; the same float operations as ggml's
 * dequantization, so a ggml grid's values are the file's bit for bit. */
static inline float quant_value(float x, const quant_params *p) {
    float q = (float)quant_code(x, p);
    return p->affine ? p->scale * q + p->min : p->scale * (q - p->zero);
}

#endif
