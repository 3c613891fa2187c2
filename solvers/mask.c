#include "mask.h"

#include <string.h>

static void swapf(float *a, float *b) { float t = *a; *a = *b; *b = t; }

float mask_kth(const float *score, size_t n, size_t k, float *tmp) {
    memcpy(tmp, score, n * sizeof(float));
    size_t lo = 0, hi = n - 1;
    /* Quickselect with median-of-three pivots and a three-way partition, so runs of equal
     * scores (pruned zeros, dead columns) do not degrade it. */
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

void mask_threshold(const float *score, size_t n, float s, uint8_t *mask, float *tmp) {
    if (s <= 0.0f || n == 0) return;
    size_t k = (size_t)((double)n * s);
    if (k >= n) { memset(mask, 1, n); return; }
    float t = mask_kth(score, n, k, tmp);
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
