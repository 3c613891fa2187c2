/* What a run measures about itself: monotonic wall-clock seconds and the process's peak resident
 * memory. One copy for every timer and memory figure the tool prints or records. */
#ifndef SPARQ_CLOCK_H
#define SPARQ_CLOCK_H

/* Seconds on the monotonic clock (an arbitrary origin: subtract two readings). */
double clock_seconds(void);

/* The process's peak resident set size so far, in MiB. */
double clock_peak_rss_mb(void);

/* Bytes of memory this process may use: the machine's physical memory, or a lower address-space
 * or data limit (RLIMIT_AS, RLIMIT_DATA). What the resource guards compare their needs with. */
double clock_memory_bytes(void);

#endif
