/* File access shared by the model and tokenizer readers and writers: read-only memory maps of
 * input files, atomic output files (a temporary beside the target, then rename) and small path
 * helpers. Owns the mapping and the temporary file; knows nothing of formats. */
#ifndef SPARQ_FILEIO_H
#define SPARQ_FILEIO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

/* A whole file mapped read-only. An empty file maps to data == NULL, size == 0. */
typedef struct {
    const unsigned char *data;
    uint64_t size;
} mapped_file;

/* `what` names the file's role in the error message ("model", "tokenizer"). */
int  mapped_open(mapped_file *f, const char *path, const char *what, err *e);
void mapped_close(mapped_file *f);
/* Drop the pages wholly inside [off, off + len) from this process's memory once they have been
 * read: they stay in the page cache, but no longer count as ours, so a loader that converts
 * tensor by tensor never holds the file and the converted weights at once. */
void mapped_release(const mapped_file *f, uint64_t off, uint64_t len);

/* An output file written to "<path>.tmp.<pid>" and renamed over path on commit, so a reader
 * never sees half a file. Write errors are collected and reported by atomic_commit. */
typedef struct {
    FILE *f;
    char *tmp, *path;
    int   errno_first;     /* the first failed write's errno, 0 while all went well */
} atomic_file;

int  atomic_open(atomic_file *a, const char *path, err *e);
void atomic_write(atomic_file *a, const void *p, size_t n);
void atomic_pad(atomic_file *a, size_t n, unsigned char byte);   /* n copies of byte */
int  atomic_commit(atomic_file *a, err *e);                         /* flush, fsync, rename */
void atomic_abort(atomic_file *a);                                  /* remove the temporary */

bool path_is_dir(const char *path);
bool path_exists(const char *path);
bool path_has_suffix(const char *path, const char *suffix);        /* case-sensitive */
/* buf = the folder part of path including its '/' ("" for a bare name); buf has room for cap. */
void path_dir(const char *path, char *buf, size_t cap);

/* The folder relative data paths resolve against, in out (room for cap bytes): $SPARQ_DATA when
 * set, else the `shared/data` folder beside the sparq checkout the running binary belongs to. The
 * checkout is the nearest folder at or above the executable's (/proc/self/exe) that holds both
 * `Makefile` and `sparq.c`, so ./sparq, build/sparq-tests, build-asan/ and build-fuzz/ binaries
 * all find <checkout>/../shared/data; a binary outside any checkout uses <its folder>/../shared/data.
 * The folder need not exist (callers name it when a file under it is missing). */
int data_root(char *out, size_t cap, err *e);

#endif
