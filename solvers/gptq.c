/* GPTQ, algorithms.md §4 (IST-DASLab/gptq fasterquant): the blocked OBS sweep of sweep.h with
 * every weight rounded to the grid and its error compensated to the right; groups refitted as
 * the sweep reaches them (or static), act-order, lazy batch updates. As the second stage of a
 * chain (case B) it keeps the pruned entries of the first stage at exactly zero. */
#include "solver.h"
#include "sweep.h"

static int gptq_compress(float *W, int rows, int cols, const float *H, const target *t,
                         layer_report *r, err *e) {
    return obs_sweep(W, rows, cols, H, t, t->keep_mask ? SWEEP_MASK_FIXED : SWEEP_MASK_NONE, r, e);
}

const solver solver_gptq = {
    .name = "gptq", .compress = gptq_compress, .uses_hessian = true, .quantizes = true,
    .needs_bits = true,
};
