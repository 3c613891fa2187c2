#include "dtype.h"

#include <ctype.h>

#include "ggml_blocks.h"
#include <math.h>
#include <strings.h>

const char *dtype_name(dtype t) {
    switch (t) {
    case DTYPE_F32: return "f32";
    case DTYPE_F16: return "f16";
    case DTYPE_BF16: return "bf16";
    default: break;
    }
    const ggml_block_type *b = ggml_block_find(t);
    return b ? b->name : "?";
}

bool dtype_is_block(dtype t) { return ggml_block_find(t) != NULL; }

int dtype_parse(const char *s, dtype *t) {
    if (strcasecmp(s, "f32") == 0 || strcasecmp(s, "float32") == 0) *t = DTYPE_F32;
    else if (strcasecmp(s, "f16") == 0 || strcasecmp(s, "float16") == 0) *t = DTYPE_F16;
    else if (strcasecmp(s, "bf16") == 0 || strcasecmp(s, "bfloat16") == 0) *t = DTYPE_BF16;
    else if (ggml_block_by_name(s)) *t = ggml_block_by_name(s)->dt;
    else return -1;
    return 0;
}

bool dtype_bytes(dtype t, uint64_t n, uint64_t *bytes) {
    switch (t) {
    case DTYPE_F32:
        if (n > UINT64_MAX / 4) return false;
        *bytes = 4 * n;
        return true;
    case DTYPE_F16:
    case DTYPE_BF16:
        if (n > UINT64_MAX / 2) return false;
        *bytes = 2 * n;
        return true;
    default: {
        const ggml_block_type *b = ggml_block_find(t);
        if (!b || n % GGML_BLOCK) return false;
        *bytes = n / GGML_BLOCK * (uint64_t)b->bytes;
        return true;
    }
    }
}

/* Below this many values a parallel region costs more than it saves. */
#define PAR_MIN (1u << 16)

/* float16 -> float32 with the F16C instruction (8 values per instruction, exact like the scalar
 * path) when the CPU has it: the conversion is most of a f16 checkpoint's load time. Chosen at
 * run time, so the build needs no -mf16c and runs on any x86-64. Clang 14 (the fuzzing build)
 * does not know "f16c" in __builtin_cpu_supports, so it gets the scalar path only. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define HAVE_F16C_PATH 1
__attribute__((target("avx,f16c"))) static long long f16_to_f32_f16c(float *dst, const unsigned char *src,
                                                                     long long n) {
    long long bad = 0, i = 0;
    const __m128i expo = _mm_set1_epi16(0x7c00);
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
        __m128i inf = _mm_cmpeq_epi16(_mm_and_si128(h, expo), expo);
        bad += __builtin_popcount((unsigned)_mm_movemask_epi8(inf)) / 2;
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        bad += (h & 0x7c00u) == 0x7c00u;
        dst[i] = f16_to_f32(h);
    }
    return bad;
}
#endif

size_t dtype_to_f32(float *dst, const void *src, dtype t, size_t n) {
    const unsigned char *s = src;
    long long N = (long long)n, bad = 0;
    switch (t) {
    case DTYPE_F32:
        #pragma omp parallel for schedule(static) reduction(+ : bad) if (n >= PAR_MIN)
        for (long long i = 0; i < N; i++) {
            uint32_t u;
            memcpy(&u, s + 4 * i, 4);
            bad += (u & 0x7f800000u) == 0x7f800000u;
            memcpy(&dst[i], &u, 4);
        }
        break;
    case DTYPE_F16:
#ifdef HAVE_F16C_PATH
        if (__builtin_cpu_supports("f16c")) {
            const long long chunk = 1 << 16;
            #pragma omp parallel for schedule(static) reduction(+ : bad) if (n >= PAR_MIN)
            for (long long c = 0; c < (N + chunk - 1) / chunk; c++) {
                long long i0 = c * chunk, len = N - i0 < chunk ? N - i0 : chunk;
                bad += f16_to_f32_f16c(dst + i0, s + 2 * i0, len);
            }
            break;
        }
#endif
        #pragma omp parallel for schedule(static) reduction(+ : bad) if (n >= PAR_MIN)
        for (long long i = 0; i < N; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            bad += (h & 0x7c00u) == 0x7c00u;
            dst[i] = f16_to_f32(h);
        }
        break;
    case DTYPE_BF16:
        #pragma omp parallel for schedule(static) reduction(+ : bad) if (n >= PAR_MIN)
        for (long long i = 0; i < N; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            bad += (h & 0x7f80u) == 0x7f80u;
            dst[i] = bf16_to_f32(h);
        }
        break;
    default: {
        const ggml_block_type *b = ggml_block_find(t);
        if (b) bad = (long long)ggml_block_dequantize(b, src, dst, n / GGML_BLOCK);
        break;
    }
    }
    return (size_t)bad;
}

size_t dtype_from_f32(void *dst, const float *src, dtype t, size_t n) {
    unsigned char *d = dst;
    switch (t) {
    case DTYPE_F32:
        memcpy(dst, src, n * sizeof(float));
        return n;
    case DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = f32_to_f16(src[i]);
            if ((h & 0x7c00u) == 0x7c00u && isfinite(src[i])) return i;
            memcpy(d + 2 * i, &h, 2);
        }
        return n;
    case DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = f32_to_bf16(src[i]);
            if ((h & 0x7f80u) == 0x7f80u && isfinite(src[i])) return i;
            memcpy(d + 2 * i, &h, 2);
        }
        return n;
    default:
        break;   /* block types: ggml_block_pack / ggml_block_quantize_ref */
    }
    return 0;
}
