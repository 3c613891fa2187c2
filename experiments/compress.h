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
    int           block_first, block_count;  /* compress blocks first .. first + count - 1
                                        only (--blocks A-B: the scale benchmark measures two
                                        of 32); the others stay dense. count 0: to the end    */
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

/* Where one block's time went: the calibration forward passes (capture and propagation), the
 * Hessian accumulation, and the solvers on its layers. */
typedef struct {
    int    index;                    /* the model's block number */
    double forward, hessians, solve, total;
} compress_block;

typedef struct {
    compress_layer *layers;          /* n_layers * the family's linear count, in block order */
    int             n;
    compress_block *blocks;          /* [n_blocks]: the blocks compressed, in order           */
    int             n_blocks;
    double          sparsity;        /* pruned fraction of all linear weights */
    double          seconds;
} compress_report;

void compress_report_free(compress_report *r);

/* What compress_model and its run hold at their peak, in bytes, from the shapes alone: the
 * float32 weights (and the run's pristine copy when a sweep reuses the model), the calibration
 * activations (the current block's inputs for every calibration token, plus one chunk of
 * captures), one block's Hessians, and the largest layer's solver workspace (its weights
 * transposed, the inverse-Hessian factor and its scratch). An estimate within tens of percent:
 * the point is to refuse a run that cannot fit before hours of work, not to budget bytes. */
typedef struct {
    double weights, activations, hessians, solver, total;
} compress_memory;

void compress_estimate(const model *m, long ntok, int maxlen, bool pristine_copy,
                       compress_memory *out);

/* Check that every linear layer of m accepts the target before any work. */
int compress_check(const model *m, const compress_options *o, err *e);

/* Compress m in place with calibration sequences calib. progress counts finished layers. */
int compress_model(model *m, const token_seqs *calib, const compress_options *o,
                   compress_report *out, progress_fn progress, void *progress_ctx, err *e);

#endif
