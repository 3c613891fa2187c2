/* Error reporting shared by every module. Owns the err struct and the error codes;
 * library code fills an err and returns a code, only the CLI prints.
 * One message per error: the first failure wins, callers may prefix context. */
#ifndef SPARQ_ERR_H
#define SPARQ_ERR_H

#include <stddef.h>

enum {
    SPARQ_OK = 0,
    SPARQ_ERUNTIME = -1,     /* out of memory, numerical failure, I/O error mid-run: exit 1 */
    SPARQ_EINPUT = -2,       /* bad usage, bad or missing input file: exit 2                */
};

typedef struct {
    int  code;
    char msg[512];
} err;

/* Fill e (if not NULL) with a printf-style message and return code, so callers can write
 * `return err_set(e, SPARQ_EINPUT, "%s: ...", path);`. */
int err_set(err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Exit status the CLI uses for an error code: 2 for input errors, 1 otherwise. */
int err_exit_status(int code);

#endif
