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
    bool          true_sequential;   /* the family's stages (LLaMA: [k,v,q] -> [o] -> [up,gate]
                                        -> [down]), re-running the block between them
                                        (gptq/sparsegpt llama.py / opt.py)                    */
    schedule_kind schedule;          /* per-layer sparsity around target.sparsity; hessian and
                                        owl measure the dense model in a first pass          */
} compress_options;

typedef struct {
    char         name[32];           /* "3.gate" */
    int          rows, cols;
    double       target_sparsity;    /* what the schedule gave this layer */
    layer_report report;
} compress_layer;

typedef struct {
    compress_layer *layers;          /* n_layers * the family's linear count, in block order */
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
