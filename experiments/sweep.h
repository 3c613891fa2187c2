/* Sweep execution: the grid of a config (config.h) run against one run context per process,
 * every finished run appended to cfg->out/runs.jsonl at once, resumable, split across forked
 * workers (--jobs) and machines (--shard, SLURM arrays), and for big models staged so that one
 * run's perplexities spread over many tasks (eval_shards). Owns the plan, the staged folders and
 * the SLURM scripts; prints nothing: what happens is told through a callback the caller provides. */
#ifndef SPARQ_SWEEP_H
#define SPARQ_SWEEP_H

#include <stdbool.h>

#include "../core/err.h"
#include "config.h"
#include "run.h"

typedef enum {
    SWEEP_NOTE_PLAN,         /* a line of the --dry-run plan (the CLI's stdout)  */
    SWEEP_NOTE_PROGRESS,     /* a run started, finished or failed (stderr)       */
} sweep_note_kind;

/* One line of text (no newline) for the caller to show. */
typedef void (*sweep_note_fn)(void *ctx, sweep_note_kind kind, const char *line);

/* What an invocation does (--stage). SWEEP_RUN: whole runs, each compressed and evaluated in
 * memory. With eval_shards = K a run can be staged instead, its files in OUT/staged/KEY/:
 *   SWEEP_COMPRESS  compress and save the model there in float32 (the dense baseline saves nothing:
 *                   its model is the config's), evaluate the tasks, then write the record
 *                   without perplexities, record.json, last: it marks the compression done;
 *   SWEEP_EVAL      per (run, k < K): score sequences k, k + K, ... of every eval.ppl text on the
 *                   saved model into ppl<i>-<k>of<K>.json, `eval --shard`'s part format;
 *   SWEEP_MERGE     each run with all its parts: the perplexities merged into its record (exactly
 *                   the in-memory figures), appended to runs.jsonl; then its folder is removed.
 * Every file is written atomically and each stage skips what is done, so a killed task loses
 * only its own unfinished work and rerunning a stage completes it. */
typedef enum { SWEEP_RUN, SWEEP_COMPRESS, SWEEP_EVAL, SWEEP_MERGE } sweep_stage;

/* "compress", "eval" or "merge"; SPARQ_EINPUT naming the choices otherwise. */
int sweep_stage_parse(const char *name, sweep_stage *stage, err *e);

typedef struct {
    sweep_stage stage;       /* its work items: runs; for SWEEP_EVAL (run, eval shard) pairs,
                                item = run x eval_shards + shard                               */
    int  jobs;               /* runs at once (forked workers), threads split among them        */
    int  threads;            /* total threads, 0 = one per core                                 */
    int  shard_i, shard_n;   /* do the work items with index % shard_n == shard_i               */
    bool dry_run;            /* the plan only, nothing run or written                           */
    sweep_note_fn note;      /* may be NULL                                                     */
    void *note_ctx;
} sweep_options;

/* Check every point against the context's model (invalid ones get `invalid` set) and key it. */
int sweep_prepare(run_context *ctx, run_spec *runs, int n, err *e);

/* sweep_prepare on a context of the config's setup, then do the stage's every unfinished work
 * item of valid points in this shard. A failing item is told and the sweep goes on; the result is
 * then an error (SWEEP_MERGE: also when a run still lacks a part). */
int sweep_execute(const sweep_config *cfg, run_spec *runs, int n, const sweep_options *o, err *e);

/* Write the SLURM scripts into cfg->out, each calling `sparq` (the binary at sparq_path) with
 * absolute paths: without eval_shards, sweep.slurm (an array, one run per task); with it,
 * sweep.slurm (the compress stage, one run per task) and eval.slurm (the eval stage, one (run,
 * shard) per task). Then report.slurm (the merge stage when staged, then `sparq report`) and
 * submit.sh (the arrays and the report, each after the one before has ended). */
int sweep_write_slurm(const sweep_config *cfg, int n, const char *config_path, const char *sparq_path,
                      err *e);

#endif
