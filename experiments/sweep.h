/* Sweep execution: the grid of a config (config.h) run against one run context per process,
 * every finished run appended to cfg->out/runs.jsonl at once, resumable, split across forked
 * workers (--jobs) and machines (--shard, SLURM arrays). Owns the plan; prints nothing: what
 * happens is told through a callback the caller provides. */
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

typedef struct {
    int  jobs;               /* runs at once (forked workers), threads split among them        */
    int  threads;            /* total threads, 0 = one per core                                 */
    int  shard_i, shard_n;   /* run the grid points with index % shard_n == shard_i             */
    bool dry_run;            /* the plan only, nothing run or written                           */
    sweep_note_fn note;      /* may be NULL                                                     */
    void *note_ctx;
} sweep_options;

/* Check every point against the context's model (invalid ones get `invalid` set) and key it. */
int sweep_prepare(run_context *ctx, run_spec *runs, int n, err *e);

/* sweep_prepare on a context of the config's setup, then run every valid, unfinished point of this
 * shard. A failing run is told and the sweep goes on; the result is then an error. */
int sweep_execute(const sweep_config *cfg, run_spec *runs, int n, const sweep_options *o, err *e);

/* Write cfg->out/sweep.slurm (a job array, one grid point per task), report.slurm and submit.sh
 * (the array, then `sparq report` once it is done). */
int sweep_write_slurm(const sweep_config *cfg, int n, const char *config_path, err *e);

#endif
