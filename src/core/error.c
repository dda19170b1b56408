/* Error codes and the per-thread message of the last failure. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

da_status da_size_mul(size_t a, size_t b, const char *what, size_t *out)
{
    if (a && b > SIZE_MAX / a)
        return da_fail(DA_ERR_RANGE, "%s: size %zu x %zu overflows", what ? what : "size", a, b);
    *out = a * b;
    return DA_OK;
}

da_status da_size_add(size_t a, size_t b, const char *what, size_t *out)
{
    if (b > SIZE_MAX - a)
        return da_fail(DA_ERR_RANGE, "%s: size %zu + %zu overflows", what ? what : "size", a, b);
    *out = a + b;
    return DA_OK;
}

const char *da_excerpt(const char *text, size_t max_chars, char *buf, size_t cap)
{
    if (!buf || cap == 0) return "";
    if (!text) text = "(null)";
    size_t n = strlen(text);
    if (n <= max_chars) {
        snprintf(buf, cap, "%s", text);
        return buf;
    }
    /* never cut inside a UTF-8 sequence: back up over continuation bytes */
    size_t k = max_chars;
    while (k > 0 && ((unsigned char)text[k] & 0xC0) == 0x80) k--;
    snprintf(buf, cap, "%.*s... (%zu bytes)", (int)k, text, n);
    return buf;
}
