/* Element types of weight files (F32, F16, BF16 and ggml's 32-weight blocks Q8_0, Q4_0, Q4_1,
 * Q5_0, Q5_1, whose layouts ggml_blocks.h owns) and their conversion to and from the model's float32. Owns only the conversion rules (IEEE round-to-nearest-even, exact widening);
 * knows nothing of file formats or where the bytes come from. */
#ifndef SPARQ_DTYPE_H
#define SPARQ_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum { DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_Q8_0, DTYPE_Q4_0, DTYPE_Q4_1, DTYPE_Q5_0, DTYPE_Q5_1 } dtype;

const char *dtype_name(dtype t);                 /* "f32", "f16", "bf16", "q8_0", "q4_0", ... */
/* "f32"/"f16"/"bf16" and the block types' names (any case); 0 = ok, -1 else */
int dtype_parse(const char *s, dtype *t);
bool dtype_is_block(dtype t);                    /* one of ggml's 32-weight block types */

/* Bytes that n values take, or false on overflow / n not a multiple of the block (32). */
bool dtype_bytes(dtype t, uint64_t n, uint64_t *bytes);

/* dst[n] = the n values at src (little-endian, any alignment). Parallel over OpenMP threads
 * when n is large; n must satisfy dtype_bytes. Returns how many values are not finite, counted
 * in the same pass so loaders need no second sweep over the weights. */
size_t dtype_to_f32(float *dst, const void *src, dtype t, size_t n);

/* dst = src[n] encoded as t (F32, F16 or BF16; block types are packed by ggml_blocks.h). Returns the index of the first finite value
 * that does not fit the type (|x| beyond the float16 range), or n when all fit. */
size_t dtype_from_f32(void *dst, const float *src, dtype t, size_t n);

static inline float f16_to_f32(uint16_t h) {
    /* Shift exponent and mantissa into a float's fields and rescale by 2^(127-15): exact for
     * normals and subnormals alike; infinities and NaNs keep their class. */
    uint32_t em = h & 0x7fffu, u = em << 13;
    float f;
    memcpy(&f, &u, 4);
    f *= 0x1p112f;
    memcpy(&u, &f, 4);
    if (em >= 0x7c00u) u = 0x7f800000u | (em & 0x3ffu) << 13;
    u |= (uint32_t)(h & 0x8000u) << 16;
    memcpy(&f, &u, 4);
    return f;
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest, ties to even; beyond 65504 gives infinity (callers check). */
static inline uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0);   /* inf, nan */
    if (a >= 0x477ff000u) return sign | 0x7c00u;          /* rounds beyond 65504: overflow */
    if (a < 0x38800000u) {                                /* below 2^-14: a float16 subnormal */
        if (a < 0x33000000u) return sign;                 /* below half the smallest: zero   */
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(a >> 23);                 /* 14..24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u);           /* round the 13 dropped bits */
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);   /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#endif
