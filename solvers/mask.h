/* Choosing the weights to prune from a score (smaller = prune first), shared by the solvers:
 * a threshold over a whole set, the k smallest of a row, and N:M groups. Ties go to the lower
 * index, so masks are reproducible (algorithms.md §0 (d)). Owns no memory. */
#ifndef SPARQ_MASK_H
#define SPARQ_MASK_H

#include <stddef.h>
#include <stdint.h>

/* The value at 0-based position k of score[0..n) sorted ascending (k < n). Uses tmp[n] when
 * n <= 32768 (quickselect); larger sets use a threaded radix select and ignore tmp. */
float mask_kth(const float *score, size_t n, size_t k, float *tmp);

/* mask[i] |= score[i] <= t, t = the sorted score at floor(n * s) (the reference rule: ties may
 * prune slightly more than s). s = 0 prunes nothing. Uses tmp[n]. */
void mask_threshold(const float *score, size_t n, double s, uint8_t *mask, float *tmp);

/* Mark exactly the k smallest scores of one row (ties: lower index first). Uses tmp[n]. */
void mask_smallest(const float *score, int n, int k, uint8_t *mask, float *tmp);

/* In each aligned group of m entries, mark the n smallest (ties: lower index first). */
void mask_nm(const float *score, int len, int n, int m, uint8_t *mask);

#endif
