/* Wall-clock timing for the seconds the tools report: one monotonic clock for every module.
 * Owns nothing; not a source of randomness or of dates. */
#ifndef SPARQ_CLOCK_H
#define SPARQ_CLOCK_H

/* Seconds on the monotonic clock since an arbitrary start: only differences mean anything. */
double clock_seconds(void);

#endif
