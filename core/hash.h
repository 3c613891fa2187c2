/* Content hashes: 64-bit FNV-1a of bytes, of a file, or of a folder (a Hugging Face checkpoint)
 * as the sorted names and contents of its files. What sweep keys and the token caches are made
 * of, so a renamed file keeps its results and an edited one does not. Owns nothing. */
#ifndef SPARQ_HASH_H
#define SPARQ_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define HASH_INIT 1469598103934665603ull

/* Continue the hash h over n bytes. */
uint64_t hash_bytes(uint64_t h, const void *data, size_t n);

/* The hash of a file's bytes, or of a folder's regular files (names and contents, sorted). */
int hash_path(const char *path, uint64_t *h, err *e);

#endif
