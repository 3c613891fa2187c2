/* How long-running library calls report progress: a callback the caller provides (the CLI draws
 * a bar with it). Library code never prints. Types only. */
#ifndef SPARQ_PROGRESS_H
#define SPARQ_PROGRESS_H

/* done out of total units so far. */
typedef void (*progress_fn)(void *ctx, long done, long total);

#endif
