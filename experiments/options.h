/* The compression options of a run (solver, sparsity, N:M, bits, group, ...) as one table, in
 * the manner of Redis' standardConfig: each row names an option once and says how to parse,
 * label, key and record it. The CLI's compress flags, the sweep's [grid.*] keys, run labels,
 * run keys and the records' "config" all walk this table, so a new option is one row here plus
 * its use in the solver. Owns the table; runs nothing. */
#ifndef SPARQ_OPTIONS_H
#define SPARQ_OPTIONS_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "../core/err.h"
#include "compress.h"

typedef enum { OPT_BOOL, OPT_INT, OPT_REAL, OPT_CHOICE, OPT_SPECIAL } option_type;

typedef struct option option;
struct option {
    const char *name;        /* INI key and record field; the CLI flag is --name with '-' for '_' */
    option_type type;
    size_t      offset, size;            /* the field in compress_options                       */
    double      lo, hi;                  /* INT and REAL: the accepted range [lo, hi]            */
    bool        hi_open;                 /* REAL: [lo, hi) instead                              */
    const char *arg;                     /* what the value is, for usage: "S", "N:M"            */
    const char *label;                   /* printf format of the label part, shown when the
                                            value differs from the default (BOOL: the word)    */
    const char *(*choice)(int i);        /* CHOICE: name of value i, NULL past the last         */
    bool (*shown)(const compress_options *o);   /* extra condition for the label, or NULL      */
    bool        key_if_set;              /* in run keys only when not the default: a row added
                                            after records exist leaves their keys valid         */
    /* SPECIAL options parse and print themselves. */
    int  (*parse)(compress_options *o, const char *v, err *e);
    void (*print)(const compress_options *o, char *buf, size_t n);   /* canonical value */
    void (*record)(const compress_options *o, cJSON *config);
};

extern const option options_table[];
extern const int    options_count;

/* The reference defaults: no solver yet, target_default(), uniform schedule. */
compress_options options_default(void);

/* The option with this INI name (sparsity) or CLI flag (--sparsity, --act-order), or NULL. */
const option *options_find(const char *name);

/* The CLI spelling of an option's name: "--act-order". */
void options_flag(const option *opt, char *buf, size_t n);

/* Set one option from its text; BOOL accepts 1/0, true/false, yes/no, on/off. Messages name
 * the option by its flag when prefix is "--" ("--act-order x: ..." for the CLI), else as
 * prefix + name ("act_order x: ..." for configs). */
int options_set(compress_options *o, const option *opt, const char *value, const char *prefix,
                err *e);

/* What no single option can check: a solver is named, N:M and a sparsity agree. */
int options_check(const compress_options *o, err *e);

/* "sparsegpt 2:4 4-bit g128": the solver and every option that differs from its default. */
void options_label(const compress_options *o, char *buf, size_t n);

/* "solver=sparsegpt|sparsity=0.5|nm=0:0|...": every option, canonically, for run keys. */
void options_key(const compress_options *o, char *buf, size_t n);

/* "[--solver NAME] [--nm N:M] ...", wrapped at `width` columns, each line indented by
 * `indent` spaces and ended by a newline: the usage text of the options. */
void options_usage(char *buf, size_t n, int indent, int width);

/* Every option as fields of a record's "config" object. */
void options_record(const compress_options *o, cJSON *config);

#endif
