#include "err.h"

#include <stdarg.h>
#include <stdio.h>

int err_set(err *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

int err_exit_status(int code) {
    return code == SPARQ_EINPUT ? 2 : 1;
}
