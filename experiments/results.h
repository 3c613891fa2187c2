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
    const ppl_result      *ppl;              /* [setup->n_ppl]; NULL: not scored yet (the
                                                "ppl" object is left empty)                 */
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

/* A sharded evaluation (`eval --shard I/N`): what was scored (model, text, protocol, seqlen,
 * limit, the number of sequences before sharding) and each scored sequence's part with its
 * original index. Saved atomically as one JSON object; merging checks that the files describe
 * one evaluation and cover every sequence exactly once, then combines the parts in index order,
 * which gives exactly the unsharded result. */
typedef struct {
    char model[4096], text[4096], protocol[32];
    int  seqlen, limit, shard, shards, sequences;
} ppl_shard_meta;

int results_ppl_part_save(const char *path, const ppl_shard_meta *m, const ppl_part *parts,
                          const int *index, int n, const ppl_result *r, err *e);
/* Merge the part files; *r gets the combined result (tokens_forward and seconds summed over the
 * shards), *meta the evaluation they describe. */
int results_ppl_parts_merge(char *const *paths, int n_paths, ppl_shard_meta *meta, ppl_result *r,
                            err *e);

/* Write `text` to path atomically (temporary file in the same folder, fsync, rename). */
int results_write_atomic(const char *path, const void *text, size_t n, err *e);

#endif
