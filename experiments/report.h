/* Reports of a sweep: the records of DIR/runs.jsonl as Markdown, CSV and LaTeX (booktabs)
 * tables, and gnuplot plots (perplexity vs sparsity, retention vs TCr with the Pareto frontier,
 * perplexity vs bits per weight as packed, SrCr per configuration) as PNG and SVG. Owns the
 * derived columns (retention, SrCr) and the output files; never runs a model. */
#ifndef SPARQ_REPORT_H
#define SPARQ_REPORT_H

#include <cJSON.h>
#include <stdbool.h>

#include "../core/err.h"

/* Mark the non-dominated points (maximise both x and y): front[i] is false when another point
 * has x >= and y >= with one strictly greater. */
void report_pareto(const double *x, const double *y, int n, bool *front);

/* Write report.md, results.csv, tables.tex into dir and the plots into plots_dir (NULL:
 * dir/plots). `print` ("md", "csv", "latex" or NULL) also prints that table on stdout.
 * srcr_formula names the SrCr formula (metrics_srcr); NULL: the one the records name (the
 * sweep config's `srcr_formula`), else the default. */
int report_write(const char *dir, const char *plots_dir, const char *print, const char *srcr_formula,
                 err *e);

/* Columns a report keeps: the first REPORT_MAX_PPL perplexity texts and REPORT_MAX_TASKS tasks
 * seen in the records. */
#define REPORT_MAX_PPL   8
#define REPORT_MAX_TASKS 16

/* One run's row, as every table and plot shows it; NaN where the record has no value. Strings
 * point into the loaded records. */
typedef struct {
    const char *label, *solver, *grid, *schedule, *key;
    double sparsity, bits, group, bpw, bpw_theoretical, bytes_packed, tcr, seconds;
    double ppl[REPORT_MAX_PPL];                                  /* per perplexity column */
    double acc[REPORT_MAX_TASKS], acc_stderr[REPORT_MAX_TASKS];  /* per task column       */
    double retention, srcr;
    bool   dense, front;                                         /* front: Pareto frontier */
} report_row;

/* The plots alone, from the rows report_write builds (plot.c). */
int report_plot(const report_row *rows, int n, const char *const *ppl_names, int n_ppl,
                bool retention_from_tasks, const char *srcr_text, const char *dir, err *e);

#endif
