/* Whole-file reads and atomic output files (fileio.h): temp file, fsync,
 * rename. */
#include "core/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PATH_CAP 4096

da_status da_atomic_begin(da_atomic_file *f, const char *path)
{
    f->fd = -1;
    f->err = 0;
    f->path = path;
    if (snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof f->tmp)
        return da_fail(DA_ERR_INVALID, "path too long: %s", path);
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (f->fd < 0) return da_fail(DA_ERR_IO, "cannot write %s (create failed): %s", path, strerror(errno));
    return DA_OK;
}

void da_atomic_put(da_atomic_file *f, const void *buf, size_t n)
{
    const char *p = buf;
    size_t done = 0;
    while (done < n && !f->err) {
        errno = 0;   /* so an errno below is this write's, not an earlier call's */
        ssize_t k = write(f->fd, p + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        /* a write that returns 0 sets no errno: still a short file, never renamed */
        if (k == 0) f->err = EIO;
        else if (k < 0) f->err = errno ? errno : EIO;
        else done += (size_t)k;
    }
}

da_status da_atomic_commit(da_atomic_file *f)
{
    const char *step = f->err ? "write" : NULL;
    int e = f->err;
    if (!step && fsync(f->fd) != 0) { step = "fsync"; e = errno; }
    if (close(f->fd) != 0 && !step) { step = "close"; e = errno; }
    f->fd = -1;
    if (!step && rename(f->tmp, f->path) != 0) { step = "rename"; e = errno; }
    if (!step) return DA_OK;
    unlink(f->tmp);
    return da_fail(DA_ERR_IO, "cannot write %s (%s failed): %s", f->path, step, strerror(e));
}

void da_atomic_abort(da_atomic_file *f)
{
    if (f->fd < 0) return;
    close(f->fd);
    f->fd = -1;
    unlink(f->tmp);
}

da_status da_write_atomic(const char *path, const void *buf, size_t n)
{
    da_atomic_file f;
    da_status s = da_atomic_begin(&f, path);
    if (s != DA_OK) return s;
    da_atomic_put(&f, buf, n);
    return da_atomic_commit(&f);
}

da_status da_read_file(const char *path, size_t max_bytes, char **out, size_t *out_n)
{
    *out = NULL;
    *out_n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        da_status s = da_fail(DA_ERR_IO, "cannot open %s: %s", path, strerror(e));
        errno = e;
        return s;
    }
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        close(fd);
        return da_fail(DA_ERR_IO, "cannot read %s: it is a directory", path);
    }
    size_t cap = 1 << 16;
    if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size < (uint64_t)max_bytes)
        cap = (size_t)sb.st_size + 1;   /* +1: the read that sees end of file */
    if (cap > max_bytes + 1) cap = max_bytes + 1;
    char *buf = malloc(cap + 1);
    size_t n = 0;
    int e = 0;
    while (buf) {
        if (n == cap) {
            if (n > max_bytes) break;
            size_t ncap = cap > max_bytes / 2 ? max_bytes + 1 : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) free(buf);
            buf = nb;
            cap = ncap;
            continue;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { e = errno; break; }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (!buf) return da_fail(DA_ERR_NOMEM, "out of memory reading %s", path);
    if (e || n > max_bytes) {
        free(buf);
        return e ? da_fail(DA_ERR_IO, "cannot read %s: %s", path, strerror(e))
                 : da_fail(DA_ERR_RANGE, "%s is larger than %zu bytes", path, max_bytes);
    }
    buf[n] = '\0';
    *out = buf;
    *out_n = n;
    return DA_OK;
}

double da_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int da_parse_u64(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

da_status da_write_path_with(const char *path, da_writer_fn fn, const void *ctx)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return da_fail(DA_ERR_NOMEM, "out of memory writing %s", path);
    fn(f, ctx);
    /* a memstream fails only when it cannot grow: then the text is cut short */
    int bad = fclose(f) != 0 || !buf;
    da_status s = bad ? da_fail(DA_ERR_NOMEM, "out of memory writing %s", path) : da_write_atomic(path, buf, n);
    free(buf);
    return s;
}

da_status da_write_with(const char *dir, const char *name, da_writer_fn fn, const void *ctx)
{
    char path[PATH_CAP];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return da_fail(DA_ERR_INVALID, "path too long: %s/%s", dir, name);
    return da_write_path_with(path, fn, ctx);
}

da_status da_make_dirs(const char *dir)
{
    char p[PATH_CAP];
    if (!dir || !*dir || snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return da_fail(DA_ERR_INVALID, "bad output directory '%s'", dir ? dir : "");
    for (char *q = p + 1;; q++) {
        int end = *q == '\0';
        if (*q != '/' && !end) continue;
        *q = '\0';
        struct stat sb;
        if (mkdir(p, 0755) != 0 && (errno != EEXIST || stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)))
            return da_fail(DA_ERR_IO, "cannot create directory %s: %s", p,
                           errno == EEXIST ? "a file is in the way" : strerror(errno));
        if (end) return DA_OK;
        *q = '/';
    }
}
