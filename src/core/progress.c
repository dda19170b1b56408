/* Progress bar and JSONL metrics log for long-running loops (training).
 *
 * Both write through raw file descriptors with one write() per line: a line
 * is never split across buffers, and whatever was written before a crash or
 * a kill is already in the kernel, not lost in a stdio buffer. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/log.h"
#include "dalign/core.h"

/* ------------------------------------------------------------------------ */
/* Progress bar                                                             */
/* ------------------------------------------------------------------------ */

static void write_str(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;  /* a closed stderr must not stop training */
        s += w;
        n -= (size_t)w;
    }
}

/* fd 2 is the log when the host program installed one (da_set_log) */
static int to_log(int fd) { return fd == 2 && da_log_is_custom(); }

void da_progress_init(da_progress *p, int fd, const char *label, long start, long total, long plain_every)
{
    memset(p, 0, sizeof *p);
    p->fd = fd;
    p->tty = fd >= 0 && !to_log(fd) && isatty(fd);
    p->label = label ? label : "";
    p->start = p->step = start;
    p->total = total;
    p->plain_every = plain_every > 0 ? plain_every : (total >= 10 ? total / 10 : 1);
    p->min_interval = 0.1;
    p->t_start = da_now_s();
    p->t_last_draw = -1e30;
}

/* "1:02:03" or "02:03" */
static void fmt_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0.0) || s > 1e8) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

/* "label  step/total  loss 0.1234  5.67 it/s  ETA 01:02" (no line ending) */
static int format_line(const da_progress *p, double now, char *buf, size_t n)
{
    double dt = now - p->t_start;
    long done = p->step - p->start;
    double rate = dt > 0.0 && done > 0 ? (double)done / dt : 0.0;
    char eta[32], elapsed[32];
    fmt_duration(eta, sizeof eta, rate > 0.0 ? (double)(p->total - p->step) / rate : -1.0);
    fmt_duration(elapsed, sizeof elapsed, dt);
    double loss = p->loss_den > 0.0 ? p->loss_num / p->loss_den : NAN;
    int k = snprintf(buf, n, "%s%s%ld/%ld  loss %.4g  %.2f it/s  %s %s", p->label, p->label[0] ? "  " : "",
                     p->step, p->total, loss, rate, p->step >= p->total ? "elapsed" : "ETA",
                     p->step >= p->total ? elapsed : eta);
    return k < 0 ? 0 : (size_t)k >= n ? (int)n - 1 : k;
}

static void draw(da_progress *p, double now, int final)
{
    char line[256];
    int k = format_line(p, now, line + 1, sizeof line - 8);
    if (to_log(p->fd)) {
        line[1 + k] = '\0';
        da_log(DA_LOG_PROGRESS, "%s", line + 1);   /* a whole line: the host draws it as it likes */
    } else if (p->tty) {
        /* '\r' back to column 0, the line, then ESC[K clears what a longer
         * previous line left behind */
        line[0] = '\r';
        memcpy(line + 1 + k, "\033[K", 3);
        k += 4;
        if (final) line[k++] = '\n';
        write_str(p->fd, line, (size_t)k);
    } else {
        line[1 + k] = '\n';
        write_str(p->fd, line + 1, (size_t)k + 1);
    }
    p->t_last_draw = now;
    p->drawn_step = p->step;
}

void da_progress_update(da_progress *p, long step, float loss)
{
    p->step = step;
    if (isfinite(loss)) {
        /* bias-corrected EMA (weight 0.9): the first value shows as itself */
        p->loss_num = 0.9 * p->loss_num + (double)loss;
        p->loss_den = 0.9 * p->loss_den + 1.0;
    }
    if (p->fd < 0) return;
    if (p->tty) {
        double now = da_now_s();
        if (now - p->t_last_draw >= p->min_interval) draw(p, now, 0);
    } else if (step % p->plain_every == 0 && step < p->total) {
        draw(p, da_now_s(), 0);  /* the last step is drawn by finish */
    }
}

void da_progress_finish(da_progress *p)
{
    if (p->fd < 0 || p->finished) return;
    p->finished = 1;
    /* non-TTY: the final line only when steps were made since the last one */
    if (p->tty || p->drawn_step != p->step || p->step == p->start) draw(p, da_now_s(), 1);
}

/* ------------------------------------------------------------------------ */
/* JSONL metrics log                                                        */
/* ------------------------------------------------------------------------ */

/* The "step" of one complete log line, or -1 when the line is not a JSON
 * object with a non-negative integer "step". */
static long line_step(const char *s, size_t n)
{
    da_json_value root;
    char err[160];
    if (da_json_parse(s, n, &root, err, sizeof err) != 0) return -1;
    long step = -1;
    if (root.type == DA_JSON_OBJECT) {
        for (int i = 0; i < root.n; i++) {
            uint64_t u;
            if (!strcmp(root.items[i].key, "step") && da_json_to_u64(&root.items[i], &u) == 0 && u < (uint64_t)LONG_MAX)
                step = (long)u;
        }
    }
    da_json_free(&root);
    return step;
}

/* A resumed run reads its whole log into memory once. A line per step for
 * a million steps is some 200 MB; a log over 1 GiB is refused as corrupt or
 * not ours, rather than read. */
#define METRICS_LOG_MAX ((size_t)1 << 30)

/* Rewrite `path` atomically with the complete lines whose step is at most
 * `keep_upto`: the lines a resumed run will write again are dropped, and so
 * is a torn last line (no newline) left by a kill mid-write. */
static da_status truncate_log(const char *path, long keep_upto)
{
    char *buf;
    size_t n;
    da_status s = da_read_file(path, METRICS_LOG_MAX, &buf, &n);
    if (s == DA_ERR_IO && errno == ENOENT) return DA_OK;   /* no log yet: nothing to keep */
    if (s != DA_OK) return s;
    size_t kept = 0;
    for (size_t i = 0; i < n;) {
        char *nl = memchr(buf + i, '\n', n - i);
        if (!nl) break;
        size_t len = (size_t)(nl - (buf + i)) + 1;
        long st = line_step(buf + i, len - 1);
        if (st >= 0 && st <= keep_upto) {
            memmove(buf + kept, buf + i, len);
            kept += len;
        }
        i += len;
    }
    if (kept == n) {
        free(buf);
        return DA_OK;
    }
    s = da_write_atomic(path, buf, kept);
    free(buf);
    return s;
}

da_status da_metrics_open(da_metrics_log *m, const char *path, long resume_step)
{
    m->fd = -1;
    int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
    if (resume_step < 0) flags |= O_TRUNC;
    else {
        da_status s = truncate_log(path, resume_step);
        if (s != DA_OK) return s;
    }
    m->fd = open(path, flags, 0666);
    if (m->fd < 0) return da_fail(DA_ERR_IO, "cannot open metrics log %s: %s", path, strerror(errno));
    return DA_OK;
}

int da_metric_name_ok(const char *name)
{
    if (!name || !name[0] || strlen(name) > 31) return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' ||
              *c == '.' || *c == '-'))
            return 0;
    return 1;
}

/* JSON has no NaN or Infinity: write null */
static int put_number(char *buf, size_t n, double v, const char *fmt)
{
    return isfinite(v) ? snprintf(buf, n, fmt, v) : snprintf(buf, n, "null");
}

da_status da_metrics_write(da_metrics_log *m, long step, const da_metric *fields, int n)
{
    if (m->fd < 0) return DA_OK;
    for (int i = 0; i < n; i++)
        if (!da_metric_name_ok(fields[i].name))
            return da_fail(DA_ERR_INVALID, "metric name '%s': use letters, digits, '_', '.', '-'",
                           fields[i].name ? fields[i].name : "(null)");
    char line[4096];
    size_t k = (size_t)snprintf(line, sizeof line, "{\"step\":%ld", step);
    for (int i = 0; i < n && k < sizeof line; i++) {
        k += (size_t)snprintf(line + k, sizeof line - k, ",\"%s\":", fields[i].name);
        if (k < sizeof line) k += (size_t)put_number(line + k, sizeof line - k, fields[i].value, fields[i].fmt ? fields[i].fmt : "%.9g");
    }
    if (k + 2 >= sizeof line) return da_fail(DA_ERR_RANGE, "metrics line for step %ld is too long", step);
    line[k++] = '}';
    line[k++] = '\n';
    for (size_t off = 0; off < k;) {
        ssize_t w = write(m->fd, line + off, k - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return da_fail(DA_ERR_IO, "cannot write metrics log: %s", strerror(errno));
        off += (size_t)w;
    }
    return DA_OK;
}

da_status da_metrics_sync(da_metrics_log *m)
{
    if (m->fd >= 0 && fsync(m->fd) != 0 && errno != EINVAL)
        return da_fail(DA_ERR_IO, "cannot sync metrics log: %s", strerror(errno));
    return DA_OK;
}

void da_metrics_close(da_metrics_log *m)
{
    if (m->fd >= 0) close(m->fd);
    m->fd = -1;
}
