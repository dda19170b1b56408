/* Error codes and the per-thread message of the last failure. */
#include <stdarg.h>
#include <stdio.h>

#include "dalign/core.h"

static _Thread_local char last_error[512] = "no error";

const char *da_strerror(da_status status)
{
    switch (status) {
    case DA_OK: return "success";
    case DA_ERR_INVALID: return "invalid argument";
    case DA_ERR_IO: return "input/output error";
    case DA_ERR_FORMAT: return "malformed file";
    case DA_ERR_NOMEM: return "out of memory";
    case DA_ERR_RANGE: return "value out of range";
    }
    return "unknown error";
}

const char *da_last_error(void) { return last_error; }

da_status da_fail(da_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}
