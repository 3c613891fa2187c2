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

/* The plots alone, from the table rows report_write builds (plot.c). */
typedef struct {
    const char *label, *solver;
    double sparsity, bits, bpw, tcr, retention, srcr;
    double ppl[8];
    bool   dense, front;
} report_row;

int report_plot(const report_row *rows, int n, const char *const *ppl_names, int n_ppl,
                bool retention_from_tasks, const char *srcr_text, const char *dir, err *e);

#endif
