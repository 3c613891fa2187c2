/* Run records: the one builder of a run's JSON record (what `compress --json` prints and what a
 * sweep stores), and DIR/runs.jsonl, one record per finished run with its "key". Appends are
 * atomic (write a temporary copy, then rename) and serialised across processes by an flock on
 * DIR/runs.lock, so killed runs never leave half a record and concurrent shards never write one
 * twice. Owns the record's fields and the file format; runs nothing. */
#ifndef SPARQ_RESULTS_H
#define SPARQ_RESULTS_H

#include <cJSON.h>
#include <stdbool.h>

#include "../core/err.h"
#include "../eval/perplexity.h"
#include "../eval/zeroshot.h"
#include "compress.h"
#include "spec.h"

/* What one run produced, for its record. */
typedef struct {
    const run_setup       *setup;
    const run_spec        *spec;
    const compress_report *report;           /* NULL: not compressed (the dense baseline)  */
    const ppl_result      *ppl;              /* [setup->n_ppl]                              */
    int                    ppl_seqlen[SPEC_MAX_EVALS];
    const zeroshot_result *tasks;            /* [setup->n_tasks]                            */
    double linear_params, other_params;
    double seconds_calib, seconds_compress, seconds_eval, seconds_total;
} run_outcome;

/* The record of ARCHITECTURE.md ("Results"): key, label, config (setup and every option of
 * the options table), storage and compression rates (eval/metrics.h), per-layer reports,
 * perplexities with standard errors, task accuracies, seconds and peak memory. NULL when out
 * of memory. */
cJSON *results_record(const run_outcome *o);

/* The fields a record gives one perplexity (ppl, ppl_stderr, nll, nll_stderr, tokens, protocol,
 * seqlen) and one task (acc, acc_stderr, acc_norm, ..., chance, n), added to x: the same
 * fields in `eval --json` and `zeroshot --json` as in records. */
void results_ppl_fields(cJSON *x, const ppl_result *p, ppl_protocol protocol, int seqlen);
void results_task_fields(cJSON *x, const zeroshot_result *z);

/* mkdir -p. */
int results_mkdir(const char *dir, err *e);

/* All records of DIR (none when runs.jsonl does not exist). A line that is not a JSON object
 * with a string "key" is an error naming the line. Caller frees with results_free. */
int  results_load(const char *dir, cJSON ***recs, int *n, err *e);
void results_free(cJSON **recs, int n);

/* The record with this key, or NULL. */
const cJSON *results_find(cJSON *const *recs, int n, const char *key);

/* Append the record unless a record with its key is already there (*added tells). */
int results_append(const char *dir, const cJSON *rec, bool *added, err *e);

/* Write `text` to path atomically (temporary file in the same folder, fsync, rename). */
int results_write_atomic(const char *path, const void *text, size_t n, err *e);

#endif
