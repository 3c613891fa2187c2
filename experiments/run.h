/* One run of a sweep end to end: restore the pristine weights, calibrate (cached), compress,
 * evaluate the perplexities and tasks of the config, measure, and build the JSON record of
 * ARCHITECTURE.md ("Results"). Owns the per-process context: the model loaded once, the
 * tokenizer, and the tokenized calibration and evaluation data (cached on disk by content). */
#ifndef SPARQ_RUN_H
#define SPARQ_RUN_H

#include <cJSON.h>

#include "../core/model.h"
#include "../core/progress.h"
#include "../core/tokenizer.h"
#include "sweep.h"

typedef struct run_context run_context;

int  run_context_new(run_context **ctx, const sweep_config *cfg, err *e);
void run_context_free(run_context *ctx);

/* The model and tokenizer of the context (for checks before a sweep starts). */
const model *run_context_model(const run_context *ctx);

/* Execute the run and return its record (caller deletes). `dense` is the sweep's dense record
 * when known, for retention; NULL otherwise. */
int run_execute(run_context *ctx, const run_spec *r, const cJSON *dense, cJSON **record, err *e);

#endif
