/* Magnitude pruning, algorithms.md §1: score |W|, compared over the whole layer (sparsegpt
 * --gmp, wanda prune_magnitude), within each row, or within aligned N:M groups. No weight
 * update, no calibration data. */
#include <math.h>
#include <stdlib.h>

#include "mask.h"
#include "solver.h"

static int magnitude_compress(float *W, int rows, int cols, const float *H, const target *t,
                              layer_report *r, err *e) {
    (void)H;
    size_t n = (size_t)rows * cols;
    float *score = malloc(n * sizeof(float)), *tmp = malloc(n * sizeof(float));
    if (!score || !tmp) {
        free(score); free(tmp);
        return err_set(e, SPARQ_ERUNTIME, "out of memory for a %d x %d layer", rows, cols);
    }
    for (size_t i = 0; i < n; i++) score[i] = fabsf(W[i]);
    if (t->m > 0) {
        for (int i = 0; i < rows; i++)
            mask_nm(score + (size_t)i * cols, cols, t->n, t->m, r->mask + (size_t)i * cols);
    } else if (t->scope == SCOPE_ROW) {
        int k = (int)((double)cols * t->sparsity);
        for (int i = 0; i < rows; i++)
            mask_smallest(score + (size_t)i * cols, cols, k, r->mask + (size_t)i * cols, tmp);
    } else {
        mask_threshold(score, n, t->sparsity, r->mask, tmp);
    }
    free(score);
    free(tmp);
    return SPARQ_OK;
}

const solver solver_magnitude = {
    .name = "magnitude", .compress = magnitude_compress, .uses_hessian = false, .prunes = true,
};
