/* SparseGPT, algorithms.md §3 (IST-DASLab/sparsegpt fasterprune): the blocked OBS sweep of
 * obs_sweep.h with an adaptive per-block mask (unstructured) or a per-group choice from the
 * current weights (N:M), and optional joint quantization of the kept weights in the same sweep
 * (per-row asymmetric grid fitted on the dense rows before the sweep, as the reference does). */
#include "solver.h"
#include "obs_sweep.h"

static int sparsegpt_compress(float *W, int rows, int cols, const float *H, const target *t,
                              layer_report *r, err *e) {
    obs_sweep_mask mode = t->keep_mask ? OBS_SWEEP_MASK_FIXED
                        : t->m > 0 ? OBS_SWEEP_MASK_NM
                        : t->sparsity > 0.0 ? OBS_SWEEP_MASK_ADAPTIVE : OBS_SWEEP_MASK_NONE;
    return obs_sweep(W, rows, cols, H, t, mode, r, e);
}

const solver solver_sparsegpt = {
    .name = "sparsegpt", .compress = sparsegpt_compress, .uses_hessian = true, .prunes = true,
    .quantizes = true,
};
