/* Output files written whole or not at all. A run can be killed (Ctrl-C, a
 * time limit, a full disk) at any moment; whoever reads its files next (a
 * test, the next run, a person comparing reports) must see either the old
 * file or the complete new one, never a half-written one. So every file goes
 * to a temp file beside it, is fsync'd, and is renamed over the old one:
 * rename within one directory is atomic. */
#ifndef DA_FILEIO_H
#define DA_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dalign/core.h"

/* buf[0..n) to path through path.tmp.PID (same directory, so the rename
 * never crosses file systems), fsync, rename. On failure the temp file is
 * removed, path is left as it was and the message names path and the step
 * that failed. */
da_status da_write_atomic(const char *path, const void *buf, size_t n);

/* The same, for a file too large to build in memory first (checkpoints):
 *
 *     da_atomic_file f;
 *     if (da_atomic_begin(&f, path) == DA_OK) {      creates path.tmp.PID
 *         da_atomic_put(&f, bytes, n); ...           any number of pieces
 *         s = da_atomic_commit(&f);                  fsync, close, rename
 *     }
 *
 * put remembers the first failure and ignores what follows, so a writer
 * checks once, at commit. commit always ends f: on any failure (a put
 * before, or its own steps) the temp file is removed and path is left as it
 * was. da_atomic_abort ends f without renaming (the writer's own error). */
typedef struct da_atomic_file {
    int fd;
    int err;                 /* errno of the first failed put, 0 while all is well */
    const char *path;        /* the caller's: must outlive f */
    char tmp[4096];          /* path.tmp.PID */
} da_atomic_file;

da_status da_atomic_begin(da_atomic_file *f, const char *path);
void da_atomic_put(da_atomic_file *f, const void *buf, size_t n);
da_status da_atomic_commit(da_atomic_file *f);
void da_atomic_abort(da_atomic_file *f);

/* The whole file at path into *out (malloc'd, with a NUL after the last
 * byte so text can be parsed in place; free it), its size in *out_n. A file
 * larger than max_bytes is refused (DA_ERR_RANGE) rather than read: every
 * reader states its own cap. A missing file is DA_ERR_IO with errno ENOENT
 * left set, for callers where "absent" is a normal answer. The size from
 * fstat is only a first guess: a file that changes while read is handled. */
da_status da_read_file(const char *path, size_t max_bytes, char **out, size_t *out_n);

/* Prints one whole file to f; ctx is the writer's own data. */
typedef void (*da_writer_fn)(FILE *f, const void *ctx);

/* dir/name from what fn prints. The text is collected in memory first
 * (open_memstream), so writers can use plain fprintf and nothing reaches the
 * disk before the text is complete; then da_write_atomic. */
da_status da_write_with(const char *dir, const char *name, da_writer_fn fn, const void *ctx);
/* The same to a whole path (PATH itself, through PATH.tmp.PID). */
da_status da_write_path_with(const char *path, da_writer_fn fn, const void *ctx);

/* mkdir -p: dir and its missing parents, mode 0755. Directories that exist
 * already are fine; a file in the way is an error. */
da_status da_make_dirs(const char *dir);

/* Seconds on the monotonic clock (for progress and wall times, never for
 * results). */
double da_now_s(void);

/* Decimal digits only: no sign, no space, no overflow. 0 ok, -1 refused. */
int da_parse_u64(const char *s, uint64_t *out);

#endif
