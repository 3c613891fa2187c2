/* Sweep configs: the INI file of ARCHITECTURE.md ("Configs") parsed with inih into the setup
 * the sweep's runs share and the grid of runs it crosses, each point's options parsed through
 * the options table (options.h). Owns the config and the run list; reads no model and runs
 * nothing (keys and the checks against the model's shapes come with the run context). */
#ifndef SPARQ_CONFIG_H
#define SPARQ_CONFIG_H

#include "../core/err.h"
#include "spec.h"

typedef struct {
    run_setup setup;
    char      out[SPEC_PATH];        /* the results folder                    */
    char      source[SPEC_PATH];     /* the config file                       */
    int       eval_shards;           /* [sweep] eval_shards: --slurm scores each run's perplexities
                                        in this many tasks after one compressing task (sweep.h);
                                        0 = one task per run. Not part of a run's key: the
                                        records are the same either way                      */
} sweep_config;

/* Parse the config and expand its grid (the dense baseline first). Unknown keys and sections
 * are errors naming the key and line; points whose options do not parse are kept with
 * `invalid` set. Relative data paths resolve under the data root (core/fileio.h), else beside
 * the config. */
int config_load(const char *path, sweep_config *cfg, run_spec **runs, int *n, err *e);

#endif
