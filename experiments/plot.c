/* gnuplot plots of a report (report.h): data files and a script per plot in the plots folder
 * (kept, so a reader can restyle them), rendered to PNG and SVG by running gnuplot. */
#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "report.h"

extern char **environ;

static int run_gnuplot(const char *script, err *e) {
    char *argv[] = {"gnuplot", (char *)script, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
    if (rc != 0)
        return err_set(e, SPARQ_ERUNTIME, "cannot run gnuplot (%s); install gnuplot-nox", strerror(rc));
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return err_set(e, SPARQ_ERUNTIME, "gnuplot failed on %s", script);
    return SPARQ_OK;
}

/* The series of a row: its label without the sparsity ("sparsegpt s=0.7 4-bit hessian" ->
 * "sparsegpt 4-bit hessian"), so each line joins the sparsities of one configuration. */
static void series_of(const report_row *r, char *buf, size_t n) {
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", r->label);
    size_t w = 0;
    buf[0] = '\0';
    for (char *tok = strtok(tmp, " "); tok; tok = strtok(NULL, " ")) {
        if (strncmp(tok, "s=", 2) == 0) continue;
        w += (size_t)snprintf(buf + w, w < n ? n - w : 0, "%s%s", w ? " " : "", tok);
    }
}

/* Common header: both terminals, readable fonts, a grid. */
static void header(FILE *f, const char *dir, const char *name, const char *title, const char *xl,
                   const char *yl) {
    fprintf(f, "set terminal pngcairo size 1000,600 font \",10\"\nset output \"%s/%s.png\"\n"
               "set title \"%s\" noenhanced\nset xlabel \"%s\"\nset ylabel \"%s\"\nset grid\n"
               "set key outside right top noenhanced\nset datafile separator \"\\t\"\n"
               /* Points on the edge of the autoscaled range stay visible. */
               "set offsets graph 0.03, graph 0.03, graph 0.06, graph 0.03\n",
            dir, name, title, xl, yl);
}

/* After the plot command: the same plot as SVG. */
static void footer(FILE *f, const char *dir, const char *name) {
    fprintf(f, "set terminal svg size 1000,600 dynamic\nset output \"%s/%s.svg\"\nreplot\nunset output\n",
            dir, name);
}

int report_plot(const report_row *rows, int n, const char *const *ppl_names, int n_ppl,
                bool retention_from_tasks, const char *srcr_text, const char *dir, err *e) {
    char path[4200], script[4200];
    /* Series: distinct (solver, bits) of compressed runs, in row order. */
    char series[64][96];
    int ns = 0;
    for (int i = 0; i < n; i++) {
        if (rows[i].dense) continue;
        char s[96];
        series_of(&rows[i], s, sizeof s);
        int k = 0;
        while (k < ns && strcmp(series[k], s)) k++;
        if (k == ns && ns < 64) snprintf(series[ns++], sizeof series[0], "%s", s);
    }
    double dense_ppl[8] = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    for (int i = 0; i < n; i++)
        if (rows[i].dense) for (int k = 0; k < n_ppl; k++) dense_ppl[k] = rows[i].ppl[k];

    /* Data: one block per series (index i), columns sparsity bpw tcr retention ppl... label. */
    snprintf(path, sizeof path, "%s/runs.dat", dir);
    FILE *f = fopen(path, "w");
    if (!f) return err_set(e, SPARQ_ERUNTIME, "%s: %s", path, strerror(errno));
    for (int k = 0; k < ns; k++) {
        fprintf(f, "# %s\n", series[k]);
        for (int i = 0; i < n; i++) {
            char s[96];
            series_of(&rows[i], s, sizeof s);
            if (rows[i].dense || strcmp(s, series[k])) continue;
            fprintf(f, "%g\t%g\t%g\t%g", rows[i].sparsity, rows[i].bpw, rows[i].tcr, rows[i].retention);
            for (int p = 0; p < n_ppl; p++) fprintf(f, "\t%g", rows[i].ppl[p]);
            fprintf(f, "\t%s\n", rows[i].label);
        }
        fprintf(f, "\n\n");
    }
    fclose(f);
    /* Frontier: non-dominated points sorted by TCr. */
    snprintf(path, sizeof path, "%s/frontier.dat", dir);
    f = fopen(path, "w");
    if (!f) return err_set(e, SPARQ_ERUNTIME, "%s: %s", path, strerror(errno));
    int *idx = malloc((size_t)(n > 0 ? n : 1) * sizeof(int)), nf = 0;
    for (int i = 0; idx && i < n; i++) if (rows[i].front) idx[nf++] = i;
    for (int a = 1; a < nf; a++)
        for (int b = a; b > 0 && rows[idx[b]].tcr < rows[idx[b - 1]].tcr; b--) { int t = idx[b]; idx[b] = idx[b - 1]; idx[b - 1] = t; }
    for (int a = 0; a < nf; a++) fprintf(f, "%g\t%g\t%s\n", rows[idx[a]].tcr, rows[idx[a]].retention, rows[idx[a]].label);
    fclose(f);
    free(idx);
    /* The dense model's point (TCr 0) for the retention plot. */
    snprintf(path, sizeof path, "%s/dense.dat", dir);
    f = fopen(path, "w");
    if (!f) return err_set(e, SPARQ_ERUNTIME, "%s: %s", path, strerror(errno));
    bool have_dense = false;
    for (int i = 0; i < n && !have_dense; i++)
        if (rows[i].dense && isfinite(rows[i].retention)) {
            fprintf(f, "%g\t%g\n", rows[i].tcr, rows[i].retention);
            have_dense = true;
        }
    fclose(f);
    /* SrCr bars: every run with a value. */
    snprintf(path, sizeof path, "%s/srcr.dat", dir);
    f = fopen(path, "w");
    if (!f) return err_set(e, SPARQ_ERUNTIME, "%s: %s", path, strerror(errno));
    for (int i = 0; i < n; i++)
        if (isfinite(rows[i].srcr)) fprintf(f, "%d\t%g\t%s\n", i, rows[i].srcr, rows[i].label);
    fclose(f);

    int n_srcr = 0, n_ret = 0;
    for (int i = 0; i < n; i++) {
        n_srcr += isfinite(rows[i].srcr) != 0;
        n_ret += isfinite(rows[i].retention) && !rows[i].dense;
    }
    const char *ret = retention_from_tasks ? "semantic retention Sr (task accuracy / dense)"
                                           : "retention (dense perplexity / perplexity)";
    int rc = SPARQ_OK;
    for (int p = 0; p < n_ppl && !rc; p++) {
        /* Perplexity vs sparsity, and vs bits per weight as packed. */
        const char *what[2] = {"sparsity", "bpw"};
        for (int w = 0; w < 2 && !rc; w++) {
            char name[128];
            snprintf(name, sizeof name, "ppl_vs_%s_%d", what[w], p);
            snprintf(script, sizeof script, "%s/%s.gp", dir, name);
            f = fopen(script, "w");
            if (!f) return err_set(e, SPARQ_ERUNTIME, "%s: %s", script, strerror(errno));
            char title[256];
            snprintf(title, sizeof title, "Perplexity on %s vs %s", ppl_names[p],
                     w ? "storage" : "sparsity");
            header(f, dir, name, title,
                   w ? "bits per weight of the linear layers, as packed (values + mask/N:M metadata + scales)"
                     : "sparsity of the linear layers (fraction of weights pruned)",
                   "perplexity (log scale, lower is better)");
            fprintf(f, "set logscale y\n%s", w ? "" : "set xrange [-0.03:*]\n");
            if (isfinite(dense_ppl[p])) fprintf(f, "dense = %g\n", dense_ppl[p]);
            fprintf(f, "plot ");
            for (int k = 0; k < ns; k++)
                fprintf(f, "%s\"%s/runs.dat\" index %d using %d:%d with linespoints lc %d pt %d title \"%s\"",
                        k ? ", " : "", dir, k, w ? 2 : 1, 5 + p, k + 1, 5 + 2 * (k / 8 % 4), series[k]);
            if (isfinite(dense_ppl[p])) fprintf(f, "%sdense with lines dt 2 lc rgb \"black\" title \"dense\"", ns ? ", " : "");
            if (!ns && !isfinite(dense_ppl[p])) fprintf(f, "1/0 notitle");
            fprintf(f, "\n");
            footer(f, dir, name);
            fclose(f);
            rc = run_gnuplot(script, e);
        }
    }
    if (!rc) {
        snprintf(script, sizeof script, "%s/retention_vs_tcr.gp", dir);
        f = fopen(script, "w");
        if (!f) return err_set(e, SPARQ_ERUNTIME, "%s: %s", script, strerror(errno));
        header(f, dir, "retention_vs_tcr", "Retention vs theoretical compression rate (Pareto frontier marked)",
               "TCr = 1 - (q/16)(1 - s): fraction of fp16 bits removed", ret);
        /* TCr spans 0-100%: a fixed axis, the dense point (0%) just inside it. */
        fprintf(f, "set format x \"%%.0f%%%%\"\nset xrange [-3:100]\nset xtics 0, 10, 100\nplot ");
        if (!n_ret) fprintf(f, "[0:100][0:1] 1/0 notitle\n");
        for (int k = 0; n_ret && k < ns; k++)
            fprintf(f, "%s\"%s/runs.dat\" index %d using ($3*100):4 with points lc %d pt %d ps 1.2 title \"%s\"",
                    k ? ", " : "", dir, k, k + 1, 5 + 2 * (k / 8 % 4), series[k]);
        if (n_ret && have_dense)
            fprintf(f, "%s\"%s/dense.dat\" using ($1*100):2 with points lc rgb \"black\" pt 3 ps 2 title \"dense\"",
                    ns ? ", " : "", dir);
        if (n_ret)
            fprintf(f, "%s\"%s/frontier.dat\" using ($1*100):2 with linespoints lw 2 lc rgb \"black\" pt 6 ps 2 "
                       "title \"Pareto frontier\"\n", ns || have_dense ? ", " : "", dir);
        footer(f, dir, "retention_vs_tcr");
        fclose(f);
        rc = run_gnuplot(script, e);
    }
    if (!rc) {
        snprintf(script, sizeof script, "%s/srcr.gp", dir);
        f = fopen(script, "w");
        if (!f) return err_set(e, SPARQ_ERUNTIME, "%s: %s", script, strerror(errno));
        char title[256];
        snprintf(title, sizeof title, "SrCr per configuration: %s", srcr_text);
        header(f, dir, "srcr", title, "configuration", "SrCr (higher is better)");
        fprintf(f, "set style fill solid 0.6\nset boxwidth 0.8\nset xtics rotate by -60 noenhanced font \",8\"\n"
                   "set key off\nset bmargin 14\nset yrange [0:*]\n");
        if (n_srcr) fprintf(f, "plot \"%s/srcr.dat\" using 0:2:xtic(3) with boxes title \"SrCr\"\n", dir);
        else fprintf(f, "plot [0:1][0:1] 1/0 notitle\n");
        footer(f, dir, "srcr");
        fclose(f);
        rc = run_gnuplot(script, e);
    }
    return rc;
}
