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

/* A number, or "-" when absent. */
static void cell(sbuf *s, const char *fmt, double v, const char *missing) {
    if (isfinite(v)) out(s, fmt, v);
    else out(s, "%s", missing);
}

int report_write(const char *dir, const char *plots_dir, const char *print, const char *srcr_formula,
                 err *e) {
    cJSON **recs;
    int n;
    int rc = results_load(dir, &recs, &n, e);
    if (rc) return rc;
    if (n == 0) return err_set(e, SPARQ_EINPUT, "%s: no records (runs.jsonl is missing or empty)", dir);
    qsort(recs, (size_t)n, sizeof *recs, cmp_rec);
    /* Columns: the perplexity texts and tasks seen in any record, in first-seen order. */
    const char *ppl_names[8], *task_names[16];
    int n_ppl = 0, n_task = 0;
    const cJSON *dense = NULL;
    for (int i = 0; i < n; i++) {
        if (cJSON_IsTrue(cJSON_GetObjectItem(recs[i], "dense")) && !dense) dense = recs[i];
        for (const cJSON *p = cJSON_GetObjectItem(recs[i], "ppl") ? cJSON_GetObjectItem(recs[i], "ppl")->child : NULL; p; p = p->next) {
            int k = 0;
            while (k < n_ppl && strcmp(ppl_names[k], p->string)) k++;
            if (k == n_ppl && n_ppl < 8) ppl_names[n_ppl++] = p->string;
        }
        for (const cJSON *p = cJSON_GetObjectItem(recs[i], "tasks") ? cJSON_GetObjectItem(recs[i], "tasks")->child : NULL; p; p = p->next) {
            int k = 0;
            while (k < n_task && strcmp(task_names[k], p->string)) k++;
            if (k == n_task && n_task < 16) task_names[n_task++] = p->string;
        }
    }
    /* The formula: the caller's, else the one the sweep's config named, else the default. */
    if (!srcr_formula || !*srcr_formula) srcr_formula = str(recs[0], "srcr_formula");
    if (!*srcr_formula) srcr_formula = metrics_srcr_names[0];
    double probe;
    rc = metrics_srcr(srcr_formula, 1.0, 0.0, 16, &probe, e);
    if (rc) {
        results_free(recs, n);
        return rc;
    }
    report_row *rows = calloc((size_t)n, sizeof *rows);
    double *tx = calloc((size_t)n, sizeof(double)), *ty = calloc((size_t)n, sizeof(double));
    bool *front = calloc((size_t)n, sizeof(bool));
    if (!rows || !tx || !ty || !front) {
        free(rows); free(tx); free(ty); free(front);
        results_free(recs, n);
        return err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    /* Retention Sr: mean over tasks of accuracy / dense accuracy (algorithms.md §7). Without
     * tasks, the perplexity retention ppl_dense / ppl of the first text stands in (labelled as
     * such): it is 1 for the dense model and falls as the model loses quality. */
    bool from_tasks = n_task > 0;
    for (int i = 0; i < n; i++) {
        const cJSON *r = recs[i], *cfg = cJSON_GetObjectItem(r, "config");
        report_row *w = &rows[i];
        w->label = str(r, "label");
        w->solver = str(cfg, "solver");
        w->dense = cJSON_IsTrue(cJSON_GetObjectItem(r, "dense"));
        w->sparsity = num(r, "sparsity");
        w->bits = num(r, "bits");
        w->bpw = num(r, "bits_per_weight");
        w->tcr = num(r, "tcr");
        for (int k = 0; k < n_ppl; k++)
            w->ppl[k] = num(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "ppl"), ppl_names[k]), "ppl");
        double sr = NAN;
        if (dense && from_tasks) {
            double sum = 0;
            int cnt = 0;
            for (int k = 0; k < n_task; k++) {
                double a = num(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "tasks"), task_names[k]), "acc");
                double d = num(cJSON_GetObjectItem(cJSON_GetObjectItem(dense, "tasks"), task_names[k]), "acc");
                if (isfinite(a) && isfinite(d) && d > 0) { sum += a / d; cnt++; }
            }
            sr = cnt ? sum / cnt : NAN;
        } else if (dense && n_ppl > 0) {
            double d = num(cJSON_GetObjectItem(cJSON_GetObjectItem(dense, "ppl"), ppl_names[0]), "ppl");
            sr = d / w->ppl[0];
        }
        w->retention = sr;
        /* NaN where the formula is undefined (e.g. no retention, or 1-bit): a "-" cell. */
        err ignored = {0};
        if (!isfinite(sr) || metrics_srcr(srcr_formula, sr, w->sparsity, (int)w->bits, &w->srcr, &ignored))
            w->srcr = NAN;
        tx[i] = w->tcr;
        ty[i] = sr;
    }
    report_pareto(tx, ty, n, front);
    for (int i = 0; i < n; i++) rows[i].front = front[i];

    sbuf md = {0}, csv = {0}, tex = {0};
    out(&md, "# sparq report: %s\n\n%d runs. Retention = %s; SrCr by the `%s` formula (%s). "
             "* = on the Pareto frontier of retention vs TCr.\n\n",
        dir, n, from_tasks ? "mean task accuracy relative to dense (Sr)" : "dense perplexity / perplexity (no tasks in the sweep)",
        srcr_formula, metrics_srcr_text(srcr_formula));
    out(&md, "| run | sparsity | bits | bits/weight packed | theoretical | KB packed | TCr |");
    out(&csv, "label,solver,grid,sparsity,bits,group,schedule,bits_per_weight,bits_per_weight_theoretical,bytes_packed,tcr");
    out(&tex, "\\begin{tabular}{l r r r r");
    for (int k = 0; k < n_ppl; k++) {
        out(&md, " ppl %s |", ppl_names[k]);
        out(&csv, ",ppl_%s", ppl_names[k]);
        out(&tex, " r");
    }
    for (int k = 0; k < n_task; k++) {
        out(&md, " %s acc |", task_names[k]);
        out(&csv, ",acc_%s,acc_stderr_%s", task_names[k], task_names[k]);
        out(&tex, " r");
    }
    out(&md, " retention | SrCr | seconds |\n|---|");
    out(&csv, ",retention,srcr,seconds,key\n");
    out(&tex, " r r}\n\\toprule\nrun & sparsity & bits & bits/weight & TCr");
    for (int k = 0; k < n_ppl; k++) out(&tex, " & ppl (%s)", ppl_names[k]);
    for (int k = 0; k < n_task; k++) out(&tex, " & %s", task_names[k]);
    out(&tex, " & retention & SrCr \\\\\n\\midrule\n");
    for (int c = 0; c < 6 + n_ppl + n_task + 3; c++) out(&md, "---:|");
    out(&md, "\n");
    for (int i = 0; i < n; i++) {
        const cJSON *r = recs[i], *cfg = cJSON_GetObjectItem(r, "config");
        const report_row *w = &rows[i];
        out(&md, "| %s%s | %.4f | %.0f | %.3f | %.3f | %.1f | %.2f%% |", w->front ? "* " : "", w->label,
            w->sparsity, w->bits, w->bpw, num(r, "bits_per_weight_theoretical"), num(r, "bytes_packed") / 1024,
            100 * w->tcr);
        out(&csv, "\"%s\",%s,%s,%.6f,%.0f,%.0f,%s,%.6f,%.6f,%.0f,%.6f", w->label, w->solver, str(r, "grid"),
            w->sparsity, w->bits, num(cfg, "group"), str(cfg, "schedule"), w->bpw,
            num(r, "bits_per_weight_theoretical"), num(r, "bytes_packed"), w->tcr);
        out(&tex, "%s & %.2f & %.0f & %.2f & %.1f\\%%", w->label, w->sparsity, w->bits, w->bpw, 100 * w->tcr);
        for (int k = 0; k < n_ppl; k++) {
            out(&md, " ");
            cell(&md, "%.3f", w->ppl[k], "-");
            out(&md, " |");
            out(&csv, ",");
            cell(&csv, "%.6f", w->ppl[k], "");
            out(&tex, " & ");
            cell(&tex, "%.2f", w->ppl[k], "--");
        }
        for (int k = 0; k < n_task; k++) {
            const cJSON *t = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "tasks"), task_names[k]);
            double a = num(t, "acc"), se = num(t, "acc_stderr");
            out(&md, " ");
            cell(&md, "%.4f", a, "-");
            if (isfinite(se)) out(&md, " ± %.4f", se);
            out(&md, " |");
            out(&csv, ",");
            cell(&csv, "%.6f", a, "");
            out(&csv, ",");
            cell(&csv, "%.6f", se, "");
            out(&tex, " & ");
            cell(&tex, "%.3f", a, "--");
        }
        out(&md, " ");
        cell(&md, "%.4f", w->retention, "-");
        out(&md, " | ");
        cell(&md, "%.4f", w->srcr, "-");
        out(&md, " | %.1f |\n", num(cJSON_GetObjectItem(r, "seconds"), "total"));
        out(&csv, ",");
        cell(&csv, "%.6f", w->retention, "");
        out(&csv, ",");
        cell(&csv, "%.6f", w->srcr, "");
        out(&csv, ",%.3f,%s\n", num(cJSON_GetObjectItem(r, "seconds"), "total"), str(r, "key"));
        out(&tex, " & ");
        cell(&tex, "%.3f", w->retention, "--");
        out(&tex, " & ");
        cell(&tex, "%.3f", w->srcr, "--");
        out(&tex, " \\\\\n");
    }
    out(&tex, "\\bottomrule\n\\end{tabular}\n");
    char path[4200], pdir[4200];
    const char *names[3] = {"report.md", "results.csv", "tables.tex"};
    sbuf *bufs[3] = {&md, &csv, &tex};
    for (int k = 0; k < 3 && !rc; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        rc = bufs[k]->buf ? results_write_atomic(path, bufs[k]->buf, bufs[k]->n, e)
                          : err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    snprintf(pdir, sizeof pdir, "%s", plots_dir ? plots_dir : dir);
    if (!plots_dir) snprintf(pdir, sizeof pdir, "%s/plots", dir);
    if (!rc) rc = results_mkdir(pdir, e);
    if (!rc) rc = report_plot(rows, n, ppl_names, n_ppl, from_tasks, metrics_srcr_text(srcr_formula), pdir, e);
    if (!rc && print) {
        const sbuf *p = !strcmp(print, "csv") ? &csv : !strcmp(print, "latex") ? &tex : &md;
        fwrite(p->buf, 1, p->n, stdout);
    }
    free(md.buf); free(csv.buf); free(tex.buf);
    free(rows); free(tx); free(ty); free(front);
    results_free(recs, n);
    return rc;
}
