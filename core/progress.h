/* A progress bar on stderr, drawn only when stderr is a terminal. Owns nothing but its own
 * state; library code reports progress through the callback type and never prints. */
#ifndef SPARQ_PROGRESS_H
#define SPARQ_PROGRESS_H

#include <stdbool.h>

/* What long-running library calls accept: done out of total units so far. */
typedef void (*progress_fn)(void *ctx, long done, long total);

typedef struct {
    bool        on;
    const char *label;
    double      t0;
    int         last_permille;
} progress;

void progress_start(progress *p, const char *label);
void progress_update(void *p, long done, long total);   /* a progress_fn; ctx = progress */
void progress_end(progress *p);

#endif
