/* ggml's quantized blocks of 32 weights (llama.cpp's ggml-common.h): Q8_0, Q4_0, Q4_1, Q5_0,
 * Q5_1. Owns their byte layouts (a float16 scale d, a float16 min m for the _1 types, the packed
 * codes), their dequantization, ggml's reference quantization (quantize_row_*_ref: what
 * llama-quantize writes without an importance matrix) and the packing of values that already lie
 * on a block's grid. One table row per type; knows nothing of files or solvers. */
#ifndef SPARQ_GGML_BLOCKS_H
#define SPARQ_GGML_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

enum { GGML_BLOCK = 32 };   /* weights per block, for every type here */

typedef struct {
    dtype       dt;
    const char *name;         /* "q4_0" */
    uint32_t    ggml_type;    /* the type id in GGUF tensor infos: Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7, Q8_0 8 */
    int         bits;         /* bits per code */
    bool        has_min;      /* _1: value = d q + m; _0: value = d (q - offset) */
    int         offset;       /* _0: the code of 0 (8, 16; 128 for Q8_0's int8 codes); _1: 0 */
    int         bytes;        /* bytes per block */
} ggml_block_type;

extern const ggml_block_type ggml_block_types[];
extern const int             ggml_block_count;

const ggml_block_type *ggml_block_find(dtype t);              /* NULL: not a block type */
const ggml_block_type *ggml_block_by_id(uint32_t ggml_type);  /* NULL: not one of these */
const ggml_block_type *ggml_block_by_name(const char *name);  /* "q4_0", any case */

/* The value of code q (0 .. 2^bits - 1) on the grid (d, m), exactly as the dequantizer
 * computes it: d * (q - offset), or d * q + m. Solvers use it so that their values and the
 * file's agree bit for bit. */
static inline float ggml_block_value(const ggml_block_type *b, int q, float d, float m) {
    return b->has_min ? (float)q * d + m : (float)(q - b->offset) * d;
}

/* dst[32 nb] = the nb blocks at src (any alignment). Returns how many values are not finite
 * (a scale or min that is infinite or NaN). */
size_t ggml_block_dequantize(const ggml_block_type *b, const void *src, float *dst, size_t nb);

/* ggml's quantize_row_*_ref on nb blocks of src: the bytes llama-quantize writes. The scale
 * (and min) of each block is computed in float32, the codes from it, then stored as float16. */
void ggml_block_quantize_ref(const ggml_block_type *b, const float *src, void *dst, size_t nb);

/* The float16 scale and min (0 for _0 types) stored in block i of src, as float32. */
void ggml_block_params(const ggml_block_type *b, const void *src, size_t i, float *d, float *m);

/* Write nb blocks of values that lie on given grids: block i has scale d[i] and (for _1 types)
 * min m[i], both float16 values; every value must equal ggml_block_value of some code. Returns
 * the index of the first value that is not on its block's grid (or whose d or m is not a
 * float16 value), or 32 nb when all are: the file then holds exactly src. */
size_t ggml_block_pack(const ggml_block_type *b, const float *src, const float *d, const float *m,
                       void *dst, size_t nb);

#endif
