/* The records of a sweep: DIR/runs.jsonl, one JSON object per finished run with its "key".
 * Appends are atomic (write a temporary copy, then rename) and serialised across processes by
 * an flock on DIR/runs.lock, so killed runs never leave half a record and concurrent shards
 * never write one twice. Owns the file format; knows nothing of how records are made. */
#ifndef SPARQ_RESULTS_H
#define SPARQ_RESULTS_H

#include <cJSON.h>
#include <stdbool.h>

#include "../core/err.h"

/* mkdir -p. */
int results_mkdir(const char *dir, err *e);

/* All records of DIR (none when runs.jsonl does not exist). A line that is not a JSON object
 * with a string "key" is an error naming the line. Caller frees with results_free. */
int  results_load(const char *dir, cJSON ***recs, int *n, err *e);
void results_free(cJSON **recs, int n);

/* The record with this key, or NULL. */
const cJSON *results_find(cJSON *const *recs, int n, const char *key);

/* Append the record unless a record with its key is already there (*added tells). */
int results_append(const char *dir, const cJSON *rec, bool *added, err *e);

/* Write `text` to path atomically (temporary file in the same folder, fsync, rename). */
int results_write_atomic(const char *path, const void *text, size_t n, err *e);

#endif
