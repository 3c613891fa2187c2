#include "mask.h"

#include <stdlib.h>
#include <string.h>

/* Floats as unsigned keys in the same order (no NaN here: weights are checked finite). */
static inline uint32_t key_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

static inline float float_of(uint32_t k) {
    uint32_t u = k & 0x80000000u ? k & 0x7FFFFFFFu : ~k;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Large sets use a radix select: a histogram of the high 16 bits of every key finds the bucket holding rank k,
 * a histogram of the low 16 bits inside it finds the key. Two linear passes, split across
 * threads for large n: the SparseGPT block mask pools rows x 128 scores per block. */
static void swapf(float *a, float *b) { float t = *a; *a = *b; *b = t; }

/* Quickselect with median-of-three pivots and a three-way partition (runs of equal scores, such
 * as pruned zeros, do not degrade it): for the short rows of Wanda and row-scope magnitude. */
static float quickselect(const float *score, size_t n, size_t k, float *tmp) {
    memcpy(tmp, score, n * sizeof(float));
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tmp[mid] < tmp[lo]) swapf(&tmp[mid], &tmp[lo]);
        if (tmp[hi] < tmp[lo]) swapf(&tmp[hi], &tmp[lo]);
        if (tmp[hi] < tmp[mid]) swapf(&tmp[hi], &tmp[mid]);
        float p = tmp[mid];
        size_t lt = lo, i = lo, gt = hi;
        while (i <= gt) {
            if (tmp[i] < p) swapf(&tmp[lt++], &tmp[i++]);
            else if (tmp[i] > p) { swapf(&tmp[i], &tmp[gt]); if (gt == 0) break; gt--; }
            else i++;
        }
        if (k < lt) hi = lt - 1;
        else if (k > gt) lo = gt + 1;
        else return p;
    }
    return tmp[k];
}

float mask_kth(const float *score, size_t n, size_t k, float *tmp) {
    if (n <= (1u << 15)) return quickselect(score, n, k, tmp);
    enum { BINS = 1 << 16 };
    uint32_t *hist = calloc(BINS, sizeof(uint32_t));
    if (!hist) return 0.0f;   /* unreachable in practice: 256 KB */
    uint32_t hi = 0;
    for (int pass = 0; pass < 2; pass++) {
        memset(hist, 0, BINS * sizeof(uint32_t));
        #pragma omp parallel if (n > (1u << 16))
        {
            uint32_t *local = calloc(BINS, sizeof(uint32_t));
            if (local) {
                #pragma omp for schedule(static) nowait
                for (size_t i = 0; i < n; i++) {
                    uint32_t key = key_of(score[i]);
                    if (pass == 0) local[key >> 16]++;
                    else if ((key >> 16) == hi) local[key & 0xFFFFu]++;
                }
                #pragma omp critical
                for (int b = 0; b < BINS; b++) hist[b] += local[b];
                free(local);
            }
        }
        size_t acc = 0;
        int b = 0;
        while (acc + hist[b] <= k) acc += hist[b++];
        k -= acc;
        if (pass == 0) hi = (uint32_t)b;
        else hi = hi << 16 | (uint32_t)b;
    }
    free(hist);
    return float_of(hi);
}

void mask_threshold(const float *score, size_t n, double s, uint8_t *mask, float *tmp) {
    if (s <= 0.0 || n == 0) return;
    size_t k = (size_t)((double)n * s);
    if (k >= n) { memset(mask, 1, n); return; }
    float t = mask_kth(score, n, k, tmp);
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) mask[i] |= score[i] <= t;
}

void mask_smallest(const float *score, int n, int k, uint8_t *mask, float *tmp) {
    if (k <= 0) return;
    if (k >= n) { memset(mask, 1, (size_t)n); return; }
    float t = mask_kth(score, (size_t)n, (size_t)k - 1, tmp);
    int below = 0;
    for (int i = 0; i < n; i++) below += score[i] < t;
    int ties = k - below;      /* how many entries equal to t, lowest index first */
    for (int i = 0; i < n; i++) {
        if (score[i] < t) mask[i] = 1;
        else if (score[i] == t && ties > 0) { mask[i] = 1; ties--; }
    }
}

void mask_nm(const float *score, int len, int n, int m, uint8_t *mask) {
    for (int g = 0; g + m <= len; g += m) {
        uint8_t taken[64] = {0};     /* m <= 64, checked by solver_check */
        for (int r = 0; r < n; r++) {
            int best = -1;
            for (int j = 0; j < m; j++)
                if (!taken[j] && (best < 0 || score[g + j] < score[g + best])) best = j;
            taken[best] = 1;
            mask[g + best] = 1;
        }
    }
}
