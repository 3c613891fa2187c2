/* The one solver interface (ARCHITECTURE.md) and the registry. A solver compresses one linear
 * layer W [rows][cols] in place given H = 2/N sum x x^T of its input; it never sees the model.
 * Owns the registry (the only global state of the project) and the layer report. */
#ifndef SPARQ_SOLVER_H
#define SPARQ_SOLVER_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/err.h"
#include "../core/ggml_blocks.h"
#include "quantizer.h"

typedef enum { SCOPE_LAYER, SCOPE_ROW } prune_scope;

typedef struct {
    double sparsity;         /* fraction of weights set to zero, 0 = none; double, as the
                                reference's Python float: counts are int(n * s) with n * s
                                in double (640 * 0.7 = 448, but 447 with 0.7f)           */
    int   n, m;              /* N:M pattern (prune n of every m), 0:0 = unstructured    */
    int   bits;              /* 16 = no quantization                                    */
    int   group;             /* quantization group along inputs, -1 = one per row       */
    bool  sym, act_order, mse, static_groups;
    float damp;              /* relative damping, default 0.01                          */
    int   block;             /* column block, default 128                               */
    prune_scope scope;       /* magnitude: compare within the layer or within each row  */
    bool  keep_mask;         /* second stage of a chain: the pruned entries already in the
                                report's mask stay exactly 0 (algorithms.md §7, case B)   */
    quant_grid grid;         /* min-max (quant.py) or ggml's scale rule, float16 scales  */
    int   ggml;              /* rtn only: 1 + index in ggml_block_types of the block type
                                whose reference rounding (quantize_row_*_ref) to use, 0 = off */
} target;

/* The reference defaults of algorithms.md: no pruning, 16 bits, per row, damp 0.01, block 128. */
target target_default(void);

typedef struct {
    double   sparsity;       /* fraction of weights the solver pruned (all exactly 0)       */
    double   loss;           /* ||W X - W' X||^2 / N = 1/2 tr(dW H dW^T), undamped H         */
    double   damp;           /* relative damping used, after Cholesky retries               */
    double   seconds;        /* time in the solver, without the loss evaluation             */
    uint8_t *mask;           /* [rows][cols], 1 = pruned                                     */
    /* Quantization grid (bits < 16): value = scale * (q - zero), q in [0, 2^bits - 1]. */
    int      bits, group, n_groups;
    float   *scale, *zero;   /* [rows][n_groups]                                             */
    float   *min;            /* [rows][n_groups] for an affine grid (value = scale q + min), else NULL */
    int     *gidx;           /* [cols]: group of each column (NULL: column / group)          */
} layer_report;

void layer_report_free(layer_report *r);

typedef struct {
    const char *name;        /* "magnitude", "wanda", "sparsegpt", ... */
    int (*compress)(float *W, int rows, int cols, const float *H, const target *t,
                    layer_report *out, err *e);
    bool uses_hessian;       /* false: H may be NULL (magnitude) */
    bool prunes, quantizes;  /* what the solver accepts in a target */
    bool needs_bits;         /* a pure quantizer: bits must be below 16 */
    bool whole_row;          /* accepts block 0: the whole row as one block */
} solver;

/* A solver or a chain "first+second": the first prunes (at 16 bits), the second quantizes the
 * result with the mask re-imposed (case B of algorithms.md §7) or, with quantize_all, every
 * weight including the pruned zeros (case A; zeros may come back). */
typedef struct {
    const solver *stage[2];
    int  n;
    bool quantize_all;
    char name[64];
} solver_spec;

/* "sparsegpt", "sparsegpt+gptq", "magnitude+rtn", ... */
int solver_spec_parse(const char *name, bool quantize_all, solver_spec *out, err *e);

const solver *solver_find(const char *name);
/* Names of all registered solvers, NULL-terminated, for help texts. */
const char *const *solver_names(void);

/* Whether t is a request the solver can honour on a rows x cols layer (checked before any
 * work): sparsity in [0,1), N < M, M dividing cols and the block, bits in 2..8 or 16, ... */
int solver_check(const solver *s, const target *t, int rows, int cols, err *e);

/* Whether the grids the target fits map onto ggml block type b, so that its layers can be
 * written in b's blocks holding exactly the solver's values: bits and group 32 as b, --sym for
 * the _0 types (not for _1), --grid ggml or rtn's --ggml b, groups in column order, and no
 * pruning for the _1 types (0 is not on their grids). `prunes`: the run prunes. */
int target_check_block(const target *t, bool prunes, const ggml_block_type *b, err *e);
int solver_spec_check(const solver_spec *s, const target *t, int rows, int cols, err *e);

/* Run the solver and complete its report: allocates the mask (the solver marks what it
 * prunes), forces pruned weights to exactly 0, measures sparsity, the exact layer loss from H
 * (when H is given) and time, and rejects non-finite results. */
int solver_run(const solver *s, float *W, int rows, int cols, const float *H, const target *t,
               layer_report *r, err *e);
int solver_spec_run(const solver_spec *s, float *W, int rows, int cols, const float *H,
                    const target *t, layer_report *r, err *e);

#endif
