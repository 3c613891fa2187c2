/* One run end to end, the one path the CLI's `compress` and every sweep worker take: restore the
 * pristine weights, calibrate, compress, evaluate the setup's perplexities and tasks, and hand
 * the outcome to results_record. Owns the run context: the model loaded once, its tokenizer, the
 * content hashes of every input, and the tokenized calibration and evaluation data (cached on
 * disk by content when a cache folder is given). */
#ifndef SPARQ_RUN_H
#define SPARQ_RUN_H

#include <cJSON.h>
#include <stdbool.h>

#include "../core/gguf.h"
#include "../core/model.h"
#include "../core/tokenizer.h"
#include "spec.h"

typedef struct run_context run_context;

/* What a long run reports: the stage ("calib", "compress", "eval", a task name) and its units
 * done out of total. */
typedef void (*run_progress_fn)(void *ctx, const char *stage, long done, long total);

/* Load the setup's model and tokenizer and check the setup against the model (sequence lengths
 * within its context). `reuse`: the context serves several runs, so a pristine copy of the
 * weights is kept and restored before each. `cache_dir`: where tokenized data is cached (NULL:
 * not cached). The setup must outlive the context. */
int  run_context_new(run_context **ctx, const run_setup *s, bool reuse, const char *cache_dir,
                     err *e);
void run_context_free(run_context *ctx);

const model     *run_context_model(const run_context *ctx);    /* NULL once released */
const tokenizer *run_context_tokenizer(const run_context *ctx);

/* Free the model (and its pristine copy) for a process that loads the models it scores itself
 * (sweep's eval stage), so that a big model is not held twice; the tokenizer, hashes, keys and
 * tokenized data stay. run_check and run_execute fail afterwards. */
void run_context_release_model(run_context *ctx);

/* The setup's i-th perplexity text, tokenized as every run scores it (and cached), with the
 * sequence length it is scored at. The sequences belong to the context. */
int run_context_ppl(run_context *ctx, int i, const token_seqs **seqs, int *seqlen, err *e);

/* Whether the point can run on this model's layers (N:M against every width, ...). */
int run_check(const run_context *ctx, const run_spec *r, err *e);

/* r->key: a hash of everything that defines the run, files by their contents. */
int run_key(run_context *ctx, run_spec *r, err *e);

/* Where a run writes its compressed model. */
typedef struct {
    const char    *path;       /* NULL: nothing is written                                     */
    model_format   format;     /* MODEL_FORMAT_AUTO: by the extension                          */
    dtype          dtype;      /* F32 by default; a ggml block type writes a GGUF whose linear
                                  layers hold exactly the solver's values (run_check_output)   */
    bool           pure;       /* block types: the token embedding in the type too (ggml's
                                  rounding, as llama-quantize --pure), not F16                 */
    gguf_save_info info;       /* filled when a GGUF is written                                */
    bool           skip_ppl;   /* score no perplexity: the record's "ppl" stays empty, to be
                                  filled from sharded scores (sweep.h, eval_shards)            */
} run_output;

/* Whether the run's compressed model can be written as out asks, checked before any work: a
 * block type needs a GGUF and a target whose grids map onto its blocks (target_check_block). */
int run_check_output(const run_spec *r, const run_output *out, err *e);

/* Execute the run and return its record (caller deletes). out (may be NULL): also write the
 * compressed model there (a GGUF gets the vocabulary). progress may be NULL. */
int run_execute(run_context *ctx, const run_spec *r, run_output *out, run_progress_fn progress,
                void *progress_ctx, cJSON **record, err *e);

#endif
