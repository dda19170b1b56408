/* The library's one way to print (dalign/core.h, "Log"): a function the
 * host program chooses, stderr by default. */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static da_log_fn log_fn;    /* NULL: the default, stderr */
static void *log_user;

void da_set_log(da_log_fn fn, void *user)
{
    log_fn = fn;
    log_user = fn ? user : NULL;
}

int da_log_is_custom(void) { return log_fn != NULL; }

const char *da_log_level_name(da_log_level level)
{
    switch (level) {
    case DA_LOG_ERROR: return "ERROR";
    case DA_LOG_WARN: return "WARN";
    case DA_LOG_INFO: return "INFO";
    case DA_LOG_PROGRESS: return "PROGRESS";
    case DA_LOG_DEBUG: return "DEBUG";
    }
    return "?";
}

/* the line and its newline with one write(): lines from several threads or
 * processes never interleave mid-line, and nothing waits in a stdio buffer */
static void default_log(da_log_level level, const char *msg)
{
    if (level == DA_LOG_DEBUG) return;
    char line[4098];
    size_t n = strlen(msg);
    if (n > sizeof line - 2) n = sizeof line - 2;
    memcpy(line, msg, n);
    line[n++] = '\n';
    for (size_t off = 0; off < n;) {
        ssize_t w = write(2, line + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;   /* a closed stderr must not stop the work */
        off += (size_t)w;
    }
}

void da_log(da_log_level level, const char *fmt, ...)
{
    int saved = errno;   /* logging never changes what a caller reads from errno */
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (k < 0) msg[0] = '\0';
    size_t n = strlen(msg);
    if (n && msg[n - 1] == '\n') msg[n - 1] = '\0';
    if (log_fn) log_fn(level, msg, log_user);
    else default_log(level, msg);
    errno = saved;
}
