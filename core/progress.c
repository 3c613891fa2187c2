#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void progress_start(progress *p, const char *label) {
    p->on = isatty(STDERR_FILENO);
    p->label = label;
    p->t0 = now();
    p->last_permille = -1;
}

void progress_update(void *ctx, long done, long total) {
    progress *p = ctx;
    if (!p || !p->on || total <= 0) return;
    int pm = (int)(1000.0 * done / total);
    if (pm == p->last_permille) return;
    p->last_permille = pm;
    int w = 30, fill = pm * w / 1000;
    char bar[31];
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = '\0';
    double el = now() - p->t0;
    fprintf(stderr, "\r%s [%s] %5.1f%% %ld/%ld %.1fs", p->label, bar, pm / 10.0, done, total, el);
    fflush(stderr);
}

void progress_end(progress *p) {
    if (p->on && p->last_permille >= 0) fprintf(stderr, "\n");
}
