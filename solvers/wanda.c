/* Wanda, algorithms.md §2: score |W_ij| * ||X_j||, compared within each output row (exactly
 * floor(cols * s) pruned per row) or within aligned N:M groups; no weight update. The input
 * norms come from the diagonal of H = 2/N X X^T, which is ||X_j||^2 up to a global factor that
 * does not change a per-row comparison. */
#include <math.h>
#include <stdlib.h>

#include "mask.h"
#include "solver.h"

static int wanda_compress(float *W, int rows, int cols, const float *H, const target *t,
                          layer_report *r, err *e) {
    float *norm = malloc((size_t)cols * sizeof(float));
    float *score = malloc((size_t)cols * sizeof(float)), *tmp = malloc((size_t)cols * sizeof(float));
    if (!norm || !score || !tmp) {
        free(norm); free(score); free(tmp);
        return err_set(e, SPARQ_ERUNTIME, "out of memory for a layer of %d columns", cols);
    }
    for (int j = 0; j < cols; j++) norm[j] = sqrtf(fmaxf(H[(size_t)j * cols + j], 0.0f));
    int k = (int)((double)cols * t->sparsity);
    for (int i = 0; i < rows; i++) {
        const float *w = W + (size_t)i * cols;
        uint8_t *mk = r->mask + (size_t)i * cols;
        for (int j = 0; j < cols; j++) score[j] = fabsf(w[j]) * norm[j];
        if (t->m > 0) mask_nm(score, cols, t->n, t->m, mk);
        else mask_smallest(score, cols, k, mk, tmp);
    }
    free(norm);
    free(score);
    free(tmp);
    return SPARQ_OK;
}

const solver solver_wanda = {
    .name = "wanda", .compress = wanda_compress, .uses_hessian = true, .prunes = true,
};
