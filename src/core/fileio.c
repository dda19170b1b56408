/* Atomic output files (fileio.h): temp file, fsync, rename. */
#include "core/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_CAP 4096

da_status da_write_atomic(const char *path, const void *buf, size_t n)
{
    char tmp[PATH_CAP];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return da_fail(DA_ERR_INVALID, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return da_fail(DA_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    const char *p = buf;
    size_t done = 0;
    int e = 0;
    while (done < n && !e) {
        errno = 0;   /* so an errno below is this write's, not an earlier call's */
        ssize_t k = write(fd, p + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        /* a write that returns 0 sets no errno: still a short file, never renamed */
        if (k == 0) e = EIO;
        else if (k < 0) e = errno ? errno : EIO;
        else done += (size_t)k;
    }
    if (!e && fsync(fd) != 0) e = errno;
    if (close(fd) != 0 && !e) e = errno;
    if (!e && rename(tmp, path) != 0) e = errno;
    if (e) {
        unlink(tmp);
        return da_fail(DA_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return DA_OK;
}

da_status da_write_with(const char *dir, const char *name, da_writer_fn fn, const void *ctx)
{
    char path[PATH_CAP];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return da_fail(DA_ERR_INVALID, "path too long: %s/%s", dir, name);
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
