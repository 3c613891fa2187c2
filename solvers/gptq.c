/* GPTQ, algorithms.md §4 (IST-DASLab/gptq fasterquant): the blocked OBS sweep of obs_sweep.h with
 * every weight rounded to the grid and its error compensated to the right; groups refitted as
 * the sweep reaches them (or static), act-order, lazy batch updates. As the second stage of a
 * chain (case B) it keeps the pruned entries of the first stage at exactly zero. */
#include "solver.h"
#include "obs_sweep.h"

static int gptq_compress(float *W, int rows, int cols, const float *H, const target *t,
                         layer_report *r, err *e) {
    obs_sweep_mask mode = t->keep_mask ? OBS_SWEEP_MASK_FIXED : OBS_SWEEP_MASK_NONE;
    return obs_sweep(W, rows, cols, H, t, mode, r, e);
}

const solver solver_gptq = {
    .name = "gptq", .compress = gptq_compress, .uses_hessian = true, .quantizes = true,
    .needs_bits = true,
};
