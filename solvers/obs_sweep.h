/* The blocked OBS sweep shared by SparseGPT (algorithms.md §3) and GPTQ (§4): columns in order
 * (or act-order), each pruned and/or quantized, its error compensated into the columns to the
 * right only, in-block by rank-1 updates and beyond the block by one lazy GEMM. Knows masks
 * and grids; owns only scratch memory. */
#ifndef SPARQ_OBS_SWEEP_H
#define SPARQ_OBS_SWEEP_H

#include "solver.h"

typedef enum {
    OBS_SWEEP_MASK_NONE,       /* nothing pruned (GPTQ)                                          */
    OBS_SWEEP_MASK_FIXED,      /* keep the pruned set already in report->mask (chain, case B)    */
    OBS_SWEEP_MASK_ADAPTIVE,   /* SparseGPT: per block, pooled over rows, at t->sparsity         */
    OBS_SWEEP_MASK_NM,         /* SparseGPT: per aligned group of t->m, the t->n lowest saliency */
} obs_sweep_mask;

/* Compress W in place. Quantizes when t->bits < 16 with the grid of t (per row: fitted on the
 * dense rows before the sweep; groups: refitted when the sweep reaches each group, or static),
 * and fills report->scale/zero/gidx. Marks pruned entries (and dead inputs when pruning) in
 * report->mask. */
int obs_sweep(float *W, int rows, int cols, const float *H, const target *t, obs_sweep_mask mode,
              layer_report *r, err *e);

/* Cache-blocked transposes between W [R][C] (original column order) and the sweep layout
 * [C][R] (row k of it is column perm[k] of W), split across threads: strided copies of a large
 * layer otherwise cost as much as the sweep's arithmetic. transpose_in reads dead columns as 0;
 * transpose_mask_out ORs into M. */
void obs_sweep_transpose_in(const float *W, int R, int C, const int *perm, const uint8_t *dead,
                            float *Wt);
void obs_sweep_transpose_out(const float *Wt, int R, int C, const int *perm, float *W);
void obs_sweep_transpose_mask_in(const uint8_t *M, int R, int C, const int *perm, uint8_t *Mk);
void obs_sweep_transpose_mask_out(const uint8_t *Mk, int R, int C, const int *perm, uint8_t *M);

#endif
