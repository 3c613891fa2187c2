/* The sequential compression driver of algorithms.md §0: block by block, capture the inputs
 * of the linear layers on the calibration data, accumulate their Hessians, compress every
 * linear layer with a solver, re-run the compressed block to get the next block's inputs.
 * Embeddings, norms and the classifier are never compressed. Owns the run's layer reports. */
#ifndef SPARQ_COMPRESS_H
#define SPARQ_COMPRESS_H

#include <stdbool.h>

#include "../core/model.h"
#include "../core/progress.h"
#include "../core/tokenizer.h"
#include "../solvers/schedule.h"
#include "../solvers/solver.h"

typedef struct {
    solver_spec   solver;            /* a solver or a chain such as sparsegpt+gptq */
    target        target;
    bool          true_sequential;   /* groups [k,v,q] -> [o] -> [up,gate] -> [down], re-running
                                        the block between groups (gptq/sparsegpt llama.py)   */
    schedule_kind schedule;          /* per-layer sparsity around target.sparsity; hessian and
                                        owl measure the dense model in a first pass          */
    int           dense_cols;        /* layers whose input width is not a multiple of this stay
                                        dense (0: none): set by the run when a GGUF block type,
                                        which cannot hold them, is the output; not an option  */
} compress_options;

typedef struct {
    char         name[32];           /* "3.gate" */
    int          rows, cols;
    double       target_sparsity;    /* what the schedule gave this layer */
    layer_report report;
} compress_layer;

typedef struct {
    compress_layer *layers;          /* n_layers * 7, in block order, q k v o gate up down */
    int             n;
    double          sparsity;        /* pruned fraction of all linear weights */
    double          seconds;
} compress_report;

void compress_report_free(compress_report *r);

/* Check that every linear layer of m accepts the target before any work. */
int compress_check(const model *m, const compress_options *o, err *e);

/* Compress m in place with calibration sequences calib. progress counts finished layers. */
int compress_model(model *m, const token_seqs *calib, const compress_options *o,
                   compress_report *out, progress_fn progress, void *progress_ctx, err *e);

#endif
