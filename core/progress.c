#include "progress.h"

#include <stdio.h>
#include <unistd.h>

#include "clock.h"

void progress_start(progress *p, const char *label) {
    p->on = isatty(STDERR_FILENO);
    p->label = label;
    p->t0 = clock_seconds();
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
    double el = clock_seconds() - p->t0;
    fprintf(stderr, "\r%s [%s] %5.1f%% %ld/%ld %.1fs", p->label, bar, pm / 10.0, done, total, el);
    fflush(stderr);
}

void progress_end(progress *p) {
    if (p->on && p->last_permille >= 0) fprintf(stderr, "\n");
}
