/* What defines a run: the setup a sweep shares (model, tokenizer, calibration, what to
 * evaluate) and one grid point (its compression options). Filled by the config parser or by
 * the CLI's flags; read by the run, the sweep and the records. Types only. */
#ifndef SPARQ_SPEC_H
#define SPARQ_SPEC_H

#include <stdbool.h>

#include "../eval/perplexity.h"
#include "compress.h"

#define SPEC_PATH 1024
#define SPEC_MAX_EVALS 8
#define SPEC_MAX_TASKS 16

typedef struct {
    char         path[SPEC_PATH];
    char         name[64];           /* file name without folders, for tables */
    ppl_protocol protocol;
    int          seqlen;             /* 0 = the model's context */
} spec_ppl;

typedef struct {
    char name[64];                   /* task adapter: piqa, arc_easy, ..., cloze, ending */
    char path[SPEC_PATH];
} spec_task;

typedef struct {
    char      model[SPEC_PATH];
    char      tokenizer[SPEC_PATH];  /* "" = the model's own (tokenizer_load_for_model)  */
    char      calib[SPEC_PATH];      /* a text, or "self": sampled from the model         */
    int       nsamples, calib_seqlen, seed;    /* calib_seqlen 0 = the model's context    */
    spec_ppl  ppl[SPEC_MAX_EVALS];
    int       n_ppl;
    spec_task tasks[SPEC_MAX_TASKS];
    int       n_tasks;
    int       limit;                 /* first N windows/documents/items, 0 = all          */
    char      srcr_formula[32];      /* how reports combine retention and compression     */
    double    max_memory;            /* bytes a run may use, 0 = this machine's memory     */
} run_setup;

typedef struct {
    char             grid[64];       /* the [grid.NAME] it came from; "dense" for the baseline */
    bool             dense;          /* the uncompressed baseline                              */
    compress_options opts;
    char             label[160];     /* "sparsegpt s=0.5 4-bit g128"                           */
    char             invalid[256];   /* why the point cannot run, or ""                        */
    char             key[17];        /* 16 hex digits, set once the inputs are hashed          */
} run_spec;

/* "20", "20G", "20GB", "512M", "512MB" (no suffix: GB) into bytes; false when not such a size. */
bool run_parse_memory(const char *v, double *bytes);

/* The defaults of a setup: 128 calibration samples, SrCr formula "recon". */
void run_setup_default(run_setup *s);

#endif
