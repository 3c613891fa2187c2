#include "ggml_blocks.h"

#include <float.h>
#include <math.h>
#include <string.h>
#include <strings.h>

/* Layouts (ggml-common.h): d [, m] [, qh: u32, bit j = the fifth bit of code j] then qs, where
 * 4- and 5-bit codes j and j + 16 share byte qs[j] (low and high nibble) and Q8_0 keeps one
 * int8 per weight (code - 128). */
const ggml_block_type ggml_block_types[] = {
    {DTYPE_Q4_0, "q4_0", 2, 4, false, 8, 18},
    {DTYPE_Q4_1, "q4_1", 3, 4, true, 0, 20},
    {DTYPE_Q5_0, "q5_0", 6, 5, false, 16, 22},
    {DTYPE_Q5_1, "q5_1", 7, 5, true, 0, 24},
    {DTYPE_Q8_0, "q8_0", 8, 8, false, 128, 34},
};
const int ggml_block_count = (int)(sizeof ggml_block_types / sizeof ggml_block_types[0]);

const ggml_block_type *ggml_block_find(dtype t) {
    for (int i = 0; i < ggml_block_count; i++)
        if (ggml_block_types[i].dt == t) return &ggml_block_types[i];
    return NULL;
}

const ggml_block_type *ggml_block_by_id(uint32_t id) {
    for (int i = 0; i < ggml_block_count; i++)
        if (ggml_block_types[i].ggml_type == id) return &ggml_block_types[i];
    return NULL;
}

const ggml_block_type *ggml_block_by_name(const char *name) {
    for (int i = 0; i < ggml_block_count; i++)
        if (strcasecmp(ggml_block_types[i].name, name) == 0) return &ggml_block_types[i];
    return NULL;
}

static size_t qs_at(const ggml_block_type *b) { return 2 + (b->has_min ? 2 : 0) + (b->bits == 5 ? 4 : 0); }

static float f16_at(const unsigned char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return f16_to_f32(h);
}

static void codes_get(const ggml_block_type *b, const unsigned char *blk, int c[GGML_BLOCK]) {
    const unsigned char *qs = blk + qs_at(b);
    if (b->bits == 8) {
        for (int j = 0; j < GGML_BLOCK; j++) c[j] = (int)(int8_t)qs[j] + 128;
        return;
    }
    uint32_t qh = 0;
    if (b->bits == 5) memcpy(&qh, qs - 4, 4);
    for (int j = 0; j < GGML_BLOCK / 2; j++) {
        c[j] = (qs[j] & 0x0f) | (int)((qh >> j) & 1u) << 4;
        c[j + 16] = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1u) << 4;
    }
}

/* Codes are masked to the type's bits, as ggml's packing does. */
static void codes_put(const ggml_block_type *b, const int c[GGML_BLOCK], unsigned char *blk) {
    unsigned char *qs = blk + qs_at(b);
    if (b->bits == 8) {
        for (int j = 0; j < GGML_BLOCK; j++) qs[j] = (unsigned char)(int8_t)(c[j] - 128);
        return;
    }
    uint32_t qh = 0;
    for (int j = 0; j < GGML_BLOCK / 2; j++) {
        qs[j] = (unsigned char)((c[j] & 0x0f) | (c[j + 16] & 0x0f) << 4);
        qh |= (uint32_t)((c[j] >> 4) & 1) << j | (uint32_t)((c[j + 16] >> 4) & 1) << (j + 16);
    }
    if (b->bits == 5) memcpy(qs - 4, &qh, 4);
}

static void params_put(const ggml_block_type *b, float d, float m, unsigned char *blk) {
    uint16_t h = f32_to_f16(d);
    memcpy(blk, &h, 2);
    if (b->has_min) {
        h = f32_to_f16(m);
        memcpy(blk + 2, &h, 2);
    }
}

void ggml_block_params(const ggml_block_type *b, const void *src, size_t i, float *d, float *m) {
    const unsigned char *blk = (const unsigned char *)src + i * (size_t)b->bytes;
    *d = f16_at(blk);
    *m = b->has_min ? f16_at(blk + 2) : 0.0f;
}

size_t ggml_block_dequantize(const ggml_block_type *b, const void *src, float *dst, size_t nb) {
    long long bad = 0, N = (long long)nb;
    #pragma omp parallel for schedule(static) reduction(+ : bad) if (nb >= 2048)
    for (long long i = 0; i < N; i++) {
        float d, m;
        int c[GGML_BLOCK];
        ggml_block_params(b, src, (size_t)i, &d, &m);
        codes_get(b, (const unsigned char *)src + i * b->bytes, c);
        bad += isfinite(d) && isfinite(m) ? 0 : GGML_BLOCK;
        for (int j = 0; j < GGML_BLOCK; j++) dst[i * GGML_BLOCK + j] = ggml_block_value(b, c[j], d, m);
    }
    return (size_t)bad;
}

/* quantize_row_{q4_0,q5_0,q4_1,q5_1,q8_0}_ref, operation for operation (ggml-quants.c):
 * float32 arithmetic in the same order, codes by truncation of x * id + offset + 0.5 (roundf
 * for Q8_0), the scale and min rounded to float16 only when stored. */
static void quantize_block_ref(const ggml_block_type *b, const float *x, unsigned char *blk) {
    int c[GGML_BLOCK], maxq = (1 << b->bits) - 1;
    if (b->bits == 8) {
        float amax = 0.0f;
        for (int j = 0; j < GGML_BLOCK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        for (int j = 0; j < GGML_BLOCK; j++) c[j] = (int)roundf(x[j] * id) + 128;
        params_put(b, d, 0.0f, blk);
    } else if (!b->has_min) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < GGML_BLOCK; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / (float)-b->offset, id = d ? 1.0f / d : 0.0f, half = (float)b->offset + 0.5f;
        for (int j = 0; j < GGML_BLOCK; j++) {
            const float x0 = x[j] * id;
            int q = (int)(x0 + half);
            c[j] = q < maxq ? q : maxq;
        }
        params_put(b, d, 0.0f, blk);
    } else {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < GGML_BLOCK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / maxq, id = d ? 1.0f / d : 0.0f;
        for (int j = 0; j < GGML_BLOCK; j++) {
            const float x0 = (x[j] - min) * id;
            int q = (int)(x0 + 0.5f);
            /* Q4_1 clamps at 15; Q5_1 does not (its uint8_t code keeps the low five bits). */
            c[j] = b->bits == 4 ? (q < maxq ? q : maxq) : (q & 0xff);
        }
        params_put(b, d, min, blk);
    }
    codes_put(b, c, blk);
}

void ggml_block_quantize_ref(const ggml_block_type *b, const float *src, void *dst, size_t nb) {
    long long N = (long long)nb;
    #pragma omp parallel for schedule(static) if (nb >= 2048)
    for (long long i = 0; i < N; i++)
        quantize_block_ref(b, src + i * GGML_BLOCK, (unsigned char *)dst + i * b->bytes);
}

static bool is_f16(float v) { return isfinite(v) && f16_to_f32(f32_to_f16(v)) == v; }

size_t ggml_block_pack(const ggml_block_type *b, const float *src, const float *d, const float *m,
                       void *dst, size_t nb) {
    int maxq = (1 << b->bits) - 1;
    for (size_t i = 0; i < nb; i++) {
        const float *x = src + i * GGML_BLOCK;
        float di = d[i], mi = b->has_min ? m[i] : 0.0f;
        unsigned char *blk = (unsigned char *)dst + i * (size_t)b->bytes;
        if (!is_f16(di) || !is_f16(mi)) return i * GGML_BLOCK;
        int c[GGML_BLOCK];
        for (int j = 0; j < GGML_BLOCK; j++) {
            float r = di == 0.0f ? 0.0f : rintf(b->has_min ? (x[j] - mi) / di : x[j] / di);
            int q = b->has_min ? 0 : b->offset;
            if (!(r >= -1.0f - q && r <= (float)(maxq + 1 - q))) return i * GGML_BLOCK + (size_t)j;
            q += (int)r;
            /* ±0 compare equal: a pruned +0 on a grid with a negative scale reads back as -0. */
            if (q < 0 || q > maxq || ggml_block_value(b, q, di, mi) != x[j]) return i * GGML_BLOCK + (size_t)j;
            c[j] = q;
        }
        params_put(b, di, mi, blk);
        codes_put(b, c, blk);
    }
    return nb * GGML_BLOCK;
}
