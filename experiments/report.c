#include "report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../eval/metrics.h"
#include "results.h"

void report_pareto(const double *x, const double *y, int n, bool *front) {
    for (int i = 0; i < n; i++) {
        front[i] = isfinite(x[i]) && isfinite(y[i]);
        for (int j = 0; j < n && front[i]; j++)
            if (j != i && isfinite(x[j]) && isfinite(y[j]) && x[j] >= x[i] && y[j] >= y[i] &&
                (x[j] > x[i] || y[j] > y[i]))
                front[i] = false;
    }
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* Order: dense first, then by grid, solver, bits (high first), N:M, sparsity. */
static int cmp_rec(const void *a, const void *b) {
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    int dx = cJSON_IsTrue(cJSON_GetObjectItem(x, "dense")), dy = cJSON_IsTrue(cJSON_GetObjectItem(y, "dense"));
    if (dx != dy) return dy - dx;
    int c = strcmp(str(x, "grid"), str(y, "grid"));
    if (c) return c;
    const cJSON *cx = cJSON_GetObjectItem(x, "config"), *cy = cJSON_GetObjectItem(y, "config");
    c = strcmp(str(cx, "solver"), str(cy, "solver"));
    if (c) return c;
    double k[4][2] = {{-num(cx, "bits"), -num(cy, "bits")}, {num(cx, "m"), num(cy, "m")},
                      {num(cx, "sparsity"), num(cy, "sparsity")}, {num(cx, "group"), num(cy, "group")}};
    for (int i = 0; i < 4; i++)
        if (k[i][0] != k[i][1]) return k[i][0] < k[i][1] ? -1 : 1;
    return strcmp(str(x, "label"), str(y, "label"));
}

/* The rows every format writes, computed once: records sorted by cmp_rec, the perplexity and
 * task columns seen in any record (first-seen order), retention, SrCr and the Pareto front. */
typedef struct {
    const char *dir, *srcr_formula;
    bool        from_tasks;      /* retention from task accuracy, else from perplexity */
    const char *ppl_names[REPORT_MAX_PPL], *task_names[REPORT_MAX_TASKS];
    int         n_ppl, n_task, n;
    report_row *rows;
} table;

/* Add the keys of record object `o` to names[*n] (at most max), first-seen order. */
static void add_names(const cJSON *o, const char **names, int *n, int max) {
    for (const cJSON *p = o ? o->child : NULL; p; p = p->next) {
        int k = 0;
        while (k < *n && strcmp(names[k], p->string)) k++;
        if (k == *n && *n < max) names[(*n)++] = p->string;
    }
}

static void row_read(report_row *w, const cJSON *r, const table *t) {
    const cJSON *cfg = cJSON_GetObjectItem(r, "config");
    const cJSON *ppl = cJSON_GetObjectItem(r, "ppl"), *tasks = cJSON_GetObjectItem(r, "tasks");
    w->label = str(r, "label");
    w->solver = str(cfg, "solver");
    w->grid = str(r, "grid");
    w->schedule = str(cfg, "schedule");
    w->key = str(r, "key");
    w->dense = cJSON_IsTrue(cJSON_GetObjectItem(r, "dense"));
    w->sparsity = num(r, "sparsity");
    w->bits = num(r, "bits");
    w->group = num(cfg, "group");
    w->bpw = num(r, "bits_per_weight");
    w->bpw_theoretical = num(r, "bits_per_weight_theoretical");
    w->bytes_packed = num(r, "bytes_packed");
    w->tcr = num(r, "tcr");
    w->seconds = num(cJSON_GetObjectItem(r, "seconds"), "total");
    for (int k = 0; k < t->n_ppl; k++)
        w->ppl[k] = num(cJSON_GetObjectItem(ppl, t->ppl_names[k]), "ppl");
    for (int k = 0; k < t->n_task; k++) {
        const cJSON *task = cJSON_GetObjectItem(tasks, t->task_names[k]);
        w->acc[k] = num(task, "acc");
        w->acc_stderr[k] = num(task, "acc_stderr");
    }
}

/* Retention Sr of row w against the dense row d (algorithms.md §7): the mean over tasks of
 * accuracy / dense accuracy. Without tasks, the perplexity retention ppl_dense / ppl of the
 * first text stands in (labelled as such): 1 for the dense model, falling as the model loses
 * quality. NaN without a dense row or anything to compare. */
static double retention(const report_row *w, const report_row *d, const table *t) {
    if (!d) return NAN;
    if (t->from_tasks) {
        double sum = 0;
        int cnt = 0;
        for (int k = 0; k < t->n_task; k++)
            if (isfinite(w->acc[k]) && isfinite(d->acc[k]) && d->acc[k] > 0) {
                sum += w->acc[k] / d->acc[k];
                cnt++;
            }
        return cnt ? sum / cnt : NAN;
    }
    return t->n_ppl > 0 ? d->ppl[0] / w->ppl[0] : NAN;
}

/* Retention, SrCr and the Pareto front of retention vs TCr, for every row. */
static int rows_score(table *t, err *e) {
    const report_row *dense = NULL;
    for (int i = 0; i < t->n && !dense; i++)
        if (t->rows[i].dense) dense = &t->rows[i];
    size_t n = (size_t)(t->n > 0 ? t->n : 1);
    double *tx = calloc(n, sizeof(double)), *ty = calloc(n, sizeof(double));
    bool *front = calloc(n, sizeof(bool));
    if (!tx || !ty || !front) {
        free(tx); free(ty); free(front);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    for (int i = 0; i < t->n; i++) {
        report_row *w = &t->rows[i];
        w->retention = retention(w, dense, t);
        /* NaN where the formula is undefined (e.g. no retention, or 1-bit): a "-" cell. */
        err ignored = {0};
        if (!isfinite(w->retention) || metrics_srcr(t->srcr_formula, w->retention, w->sparsity,
                                                    (int)w->bits, &w->srcr, &ignored))
            w->srcr = NAN;
        tx[i] = w->tcr;
        ty[i] = w->retention;
    }
    report_pareto(tx, ty, t->n, front);
    for (int i = 0; i < t->n; i++) t->rows[i].front = front[i];
    free(tx); free(ty); free(front);
    return SPARQ_OK;
}

/* The table of recs[n] (sorted by cmp_rec). srcr_formula: the caller's, else the one the
 * sweep's config named, else the default. */
static int table_build(table *t, const char *dir, const char *srcr_formula, cJSON **recs, int n,
                       err *e) {
    memset(t, 0, sizeof *t);
    t->dir = dir;
    t->n = n;
    for (int i = 0; i < n; i++) {
        add_names(cJSON_GetObjectItem(recs[i], "ppl"), t->ppl_names, &t->n_ppl, REPORT_MAX_PPL);
        add_names(cJSON_GetObjectItem(recs[i], "tasks"), t->task_names, &t->n_task,
                  REPORT_MAX_TASKS);
    }
    t->from_tasks = t->n_task > 0;
    if (!srcr_formula || !*srcr_formula) srcr_formula = str(recs[0], "srcr_formula");
    if (!*srcr_formula) srcr_formula = metrics_srcr_names[0];
    t->srcr_formula = srcr_formula;
    double probe;
    int rc = metrics_srcr(srcr_formula, 1.0, 0.0, 16, &probe, e);
    if (rc) return rc;
    t->rows = calloc((size_t)n, sizeof *t->rows);
    if (!t->rows) return err_set(e, SPARQ_ERUNTIME, "out of memory");
    for (int i = 0; i < n; i++) row_read(&t->rows[i], recs[i], t);
    return rows_score(t, e);
}

typedef struct {
    char *buf;
    size_t n, cap;
} sbuf;

static void out(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(sbuf *s, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int w = vsnprintf(s->buf ? s->buf + s->n : NULL, s->buf ? s->cap - s->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) return;
        if (s->buf && s->n + (size_t)w < s->cap) { s->n += (size_t)w; return; }
        size_t nc = (s->cap + (size_t)w + 1) * 2;
        char *p = realloc(s->buf, nc);
        if (!p) return;
        s->buf = p;
        s->cap = nc;
    }
}

/* One cell: the separator, then the number, or `missing` when it is absent (NaN). */
static void cell(sbuf *s, const char *sep, const char *fmt, double v, const char *missing) {
    out(s, "%s", sep);
    if (isfinite(v)) out(s, fmt, v);
    else out(s, "%s", missing);
}

static void write_md(sbuf *s, const table *t) {
    out(s, "# sparq report: %s\n\n%d runs. Retention = %s; SrCr by the `%s` formula (%s). "
           "* = on the Pareto frontier of retention vs TCr.\n\n",
        t->dir, t->n, t->from_tasks ? "mean task accuracy relative to dense (Sr)"
                                    : "dense perplexity / perplexity (no tasks in the sweep)",
        t->srcr_formula, metrics_srcr_text(t->srcr_formula));
    out(s, "| run | sparsity | bits | bits/weight packed | theoretical | KB packed | TCr |");
    for (int k = 0; k < t->n_ppl; k++) out(s, " ppl %s |", t->ppl_names[k]);
    for (int k = 0; k < t->n_task; k++) out(s, " %s acc |", t->task_names[k]);
    out(s, " retention | SrCr | seconds |\n|---|");
    for (int c = 0; c < 6 + t->n_ppl + t->n_task + 3; c++) out(s, "---:|");
    out(s, "\n");
    for (int i = 0; i < t->n; i++) {
        const report_row *w = &t->rows[i];
        out(s, "| %s%s | %.4f | %.0f | %.3f | %.3f | %.1f | %.2f%%", w->front ? "* " : "", w->label,
            w->sparsity, w->bits, w->bpw, w->bpw_theoretical, w->bytes_packed / 1024, 100 * w->tcr);
        for (int k = 0; k < t->n_ppl; k++) cell(s, " | ", "%.3f", w->ppl[k], "-");
        for (int k = 0; k < t->n_task; k++) {
            cell(s, " | ", "%.4f", w->acc[k], "-");
            if (isfinite(w->acc_stderr[k])) out(s, " ± %.4f", w->acc_stderr[k]);
        }
        cell(s, " | ", "%.4f", w->retention, "-");
        cell(s, " | ", "%.4f", w->srcr, "-");
        out(s, " | %.1f |\n", w->seconds);
    }
}

static void write_csv(sbuf *s, const table *t) {
    out(s, "label,solver,grid,sparsity,bits,group,schedule,bits_per_weight,"
           "bits_per_weight_theoretical,bytes_packed,tcr");
    for (int k = 0; k < t->n_ppl; k++) out(s, ",ppl_%s", t->ppl_names[k]);
    for (int k = 0; k < t->n_task; k++)
        out(s, ",acc_%s,acc_stderr_%s", t->task_names[k], t->task_names[k]);
    out(s, ",retention,srcr,seconds,key\n");
    for (int i = 0; i < t->n; i++) {
        const report_row *w = &t->rows[i];
        out(s, "\"%s\",%s,%s,%.6f,%.0f,%.0f,%s,%.6f,%.6f,%.0f,%.6f", w->label, w->solver, w->grid,
            w->sparsity, w->bits, w->group, w->schedule, w->bpw, w->bpw_theoretical,
            w->bytes_packed, w->tcr);
        for (int k = 0; k < t->n_ppl; k++) cell(s, ",", "%.6f", w->ppl[k], "");
        for (int k = 0; k < t->n_task; k++) {
            cell(s, ",", "%.6f", w->acc[k], "");
            cell(s, ",", "%.6f", w->acc_stderr[k], "");
        }
        cell(s, ",", "%.6f", w->retention, "");
        cell(s, ",", "%.6f", w->srcr, "");
        out(s, ",%.3f,%s\n", w->seconds, w->key);
    }
}

/* A booktabs tabular, for \input into a paper. */
static void write_tex(sbuf *s, const table *t) {
    out(s, "\\begin{tabular}{l r r r r");
    for (int c = 0; c < t->n_ppl + t->n_task; c++) out(s, " r");
    out(s, " r r}\n\\toprule\nrun & sparsity & bits & bits/weight & TCr");
    for (int k = 0; k < t->n_ppl; k++) out(s, " & ppl (%s)", t->ppl_names[k]);
    for (int k = 0; k < t->n_task; k++) out(s, " & %s", t->task_names[k]);
    out(s, " & retention & SrCr \\\\\n\\midrule\n");
    for (int i = 0; i < t->n; i++) {
        const report_row *w = &t->rows[i];
        out(s, "%s & %.2f & %.0f & %.2f & %.1f\\%%", w->label, w->sparsity, w->bits, w->bpw,
            100 * w->tcr);
        for (int k = 0; k < t->n_ppl; k++) cell(s, " & ", "%.2f", w->ppl[k], "--");
        for (int k = 0; k < t->n_task; k++) cell(s, " & ", "%.3f", w->acc[k], "--");
        cell(s, " & ", "%.3f", w->retention, "--");
        cell(s, " & ", "%.3f", w->srcr, "--");
        out(s, " \\\\\n");
    }
    out(s, "\\bottomrule\n\\end{tabular}\n");
}

int report_write(const char *dir, const char *plots_dir, const char *print, const char *srcr_formula,
                 err *e) {
    cJSON **recs;
    int n;
    int rc = results_load(dir, &recs, &n, e);
    if (rc) return rc;
    if (n == 0) return err_set(e, SPARQ_EINPUT, "%s: no records (runs.jsonl is missing or empty)", dir);
    qsort(recs, (size_t)n, sizeof *recs, cmp_rec);
    table t;
    rc = table_build(&t, dir, srcr_formula, recs, n, e);
    static const struct {
        const char *file;
        void (*write)(sbuf *, const table *);
    } formats[3] = {{"report.md", write_md}, {"results.csv", write_csv}, {"tables.tex", write_tex}};
    sbuf text[3] = {{0}};
    char path[4200], pdir[4200];
    for (int k = 0; k < 3 && !rc; k++) {
        formats[k].write(&text[k], &t);
        snprintf(path, sizeof path, "%s/%s", dir, formats[k].file);
        rc = text[k].buf ? results_write_atomic(path, text[k].buf, text[k].n, e)
                         : err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    if (plots_dir) snprintf(pdir, sizeof pdir, "%s", plots_dir);
    else snprintf(pdir, sizeof pdir, "%s/plots", dir);
    if (!rc) rc = results_mkdir(pdir, e);
    if (!rc)
        rc = report_plot(t.rows, n, t.ppl_names, t.n_ppl, t.from_tasks,
                         metrics_srcr_text(t.srcr_formula), pdir, e);
    if (!rc && print) {
        int k = !strcmp(print, "csv") ? 1 : !strcmp(print, "latex") ? 2 : 0;   /* else Markdown */
        fwrite(text[k].buf, 1, text[k].n, stdout);
    }
    for (int k = 0; k < 3; k++) free(text[k].buf);
    free(t.rows);
    results_free(recs, n);
    return rc;
}
