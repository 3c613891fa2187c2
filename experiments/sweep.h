/* Sweep configs: the INI file of ARCHITECTURE.md ("Configs") parsed with inih into the shared
 * settings of a sweep and the grid of runs it crosses, each run checked and keyed by a hash of
 * everything that defines it. Owns the config and the run list; runs nothing. */
#ifndef SPARQ_SWEEP_H
#define SPARQ_SWEEP_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/err.h"
#include "../eval/perplexity.h"
#include "../solvers/schedule.h"
#include "../solvers/solver.h"

#define SWEEP_PATH 1024
#define SWEEP_MAX_EVALS 8
#define SWEEP_MAX_TASKS 16

typedef struct {
    char         path[SWEEP_PATH];
    char         name[64];           /* file name without folders, for tables */
    ppl_protocol protocol;
    int          seqlen;             /* 0 = the model's context */
} sweep_ppl;

typedef struct {
    char name[64];                   /* task adapter: piqa, arc_easy, ..., cloze, ending */
    char path[SWEEP_PATH];
} sweep_task;

typedef struct {
    char          model[SWEEP_PATH], tokenizer[SWEEP_PATH], calib[SWEEP_PATH];  /* calib "self" */
    int           nsamples, calib_seqlen, seed;
    sweep_ppl     ppl[SWEEP_MAX_EVALS];
    int           n_ppl;
    sweep_task    tasks[SWEEP_MAX_TASKS];
    int           n_tasks;
    int           limit;             /* eval.limit: first N windows/documents/items, 0 = all */
    char          out[SWEEP_PATH];
    char          srcr_formula[32];
    char          source[SWEEP_PATH];/* the config file */
} sweep_config;

typedef struct {
    char          grid[64];          /* the [grid.NAME] it came from; "dense" for the baseline */
    bool          dense;             /* the uncompressed baseline of the sweep                 */
    solver_spec   solver;
    target        target;
    schedule_kind schedule;
    bool          true_sequential;
    char          label[160];        /* "sparsegpt s=0.5 4-bit g128"                           */
    char          invalid[256];      /* why the point cannot run, or ""                        */
    char          key[17];           /* 16 hex digits                                          */
} run_spec;

/* Parse the config and expand its grid (the dense baseline first). Unknown keys and sections
 * are errors naming the key and line; impossible points are kept with `invalid` set. */
int  sweep_load(const char *path, sweep_config *cfg, run_spec **runs, int *n, err *e);

/* 64-bit FNV-1a of a file's bytes (content hashes for keys and caches). */
int  sweep_file_hash(const char *path, uint64_t *h, err *e);
uint64_t sweep_hash(uint64_t h, const void *data, size_t n);
#define SWEEP_HASH_INIT 1469598103934665603ull



typedef struct {
    int  jobs;               /* runs at once (forked workers), BLAS threads split among them   */
    int  threads;            /* total threads, 0 = one per core                                 */
    int  shard_i, shard_n;   /* run the grid points with index % shard_n == shard_i             */
    bool dry_run;            /* print the plan, run nothing                                     */
} sweep_options;

/* Run every valid, unfinished point of this shard; each finished run is appended to
 * cfg->out/runs.jsonl at once. Prints one line per finished run (and invalid points first) on
 * stderr. A failing run is reported and the sweep goes on; the result is then an error. */
int sweep_execute(const sweep_config *cfg, const run_spec *runs, int n, const sweep_options *o,
                  err *e);

/* Write cfg->out/sweep.slurm (a job array, one grid point per task), report.slurm and submit.sh
 * (the array, then `sparq report` once it is done). */
int sweep_write_slurm(const sweep_config *cfg, int n, const char *config_path, err *e);
#endif
