/* What the `dalign train ...` commands share (train_common.h). */
#include "cli/train_common.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "train/pretrain.h"

/* ---- option values -------------------------------------------------------- */

int train_int(const char *cmd, const char *opt, const char *val, int lo, int *out)
{
    int v;
    if (cli_parse_int(val, &v) != 0 || v < lo) {
        char want[48];
        snprintf(want, sizeof want, "an integer >= %d", lo);
        return cli_bad_value(cmd, opt, val, want);
    }
    *out = v;
    return 0;
}

int train_long(const char *cmd, const char *opt, const char *val, int lo, long *out)
{
    int v = 0, rc = train_int(cmd, opt, val, lo, &v);
    if (!rc) *out = v;
    return rc;
}

int train_float(const char *cmd, const char *opt, const char *val, float lo, float hi, int strict, float *out)
{
    float v;
    int low_ok = 0, high_ok = 0;
    if (cli_parse_float(val, &v) == 0) {
        low_ok = strict & TRAIN_GT ? v > lo : v >= lo;
        high_ok = hi >= TRAIN_NO_MAX || (strict & TRAIN_LT ? v < hi : v <= hi);
    }
    if (!low_ok || !high_ok) {
        char want[64];
        if (hi >= TRAIN_NO_MAX)
            snprintf(want, sizeof want, "a number %s %g", strict & TRAIN_GT ? ">" : ">=", (double)lo);
        else
            snprintf(want, sizeof want, "a number in %s%g, %g%s", strict & TRAIN_GT ? "(" : "[", (double)lo,
                     (double)hi, strict & TRAIN_LT ? ")" : "]");
        return cli_bad_value(cmd, opt, val, want);
    }
    *out = v;
    return 0;
}

/* ---- paths ------------------------------------------------------------- */

const char *train_out_dir(const char *out_dir, const char *weights_dir)
{
    return out_dir ? out_dir : da_weights_dir(weights_dir);
}

int train_default_paths(const char *cmd, const char *out, const char *name, const char *resume, const char **ckpt,
                        char *ckpt_buf, const char **metrics, char *metrics_buf, size_t cap)
{
    if (!*ckpt) {
        if (resume) {
            *ckpt = resume;   /* a resumed run goes on writing the file it came from */
        } else {
            int w = snprintf(ckpt_buf, cap, "%s/%s.ckpt", out, name);
            if (w < 0 || (size_t)w >= cap) goto too_long;
            *ckpt = ckpt_buf;
        }
    }
    if (metrics && !*metrics && metrics_buf) {
        int w = snprintf(metrics_buf, cap, "%s/%s.metrics.jsonl", out, name);
        if (w < 0 || (size_t)w >= cap) goto too_long;
        *metrics = metrics_buf;
    }
    return 0;
too_long:
    fprintf(stderr, "dalign %s: the output path %s/%s... is too long\n", cmd, out, name);
    return 2;
}

/* ---- another run's checkpoint ------------------------------------------- */

int train_check_ckpt(const char *cmd, const char *ckpt, const char *resume, int force, int allow_finished,
                     const da_trainer_config *tc, const char *const *keys, int quiet)
{
    if (resume || !ckpt) return 0;   /* resuming writes on: the checkpoint is this run's by definition */
    dp_ckpt_info in;
    dp_ckpt_describe(ckpt, tc, keys, &in);
    if (in.kind == DP_CKPT_ABSENT) return 0;
    int finished = in.kind == DP_CKPT_SAME_RUN && in.total > 0 && in.step >= in.total;
    if (force || (finished && allow_finished)) {
        if (!quiet)
            fprintf(stderr, "dalign %s: note: replacing %s (%s)\n", cmd, ckpt,
                    finished ? "the finished checkpoint of this same run" : "--force");
        return 0;
    }
    if (finished)
        fprintf(stderr,
                "dalign %s: %s is the checkpoint of a finished run with these settings (trainer '%s', step %ld of "
                "%ld): pass --force to train again from scratch, or give this run another --ckpt or --out\n",
                cmd, ckpt, in.name, in.step, in.total);
    else if (in.kind == DP_CKPT_SAME_RUN)
        fprintf(stderr,
                "dalign %s: %s holds this run's progress (trainer '%s', step %ld of %ld, same settings): continue "
                "it with --resume %s, or pass --force to start over\n",
                cmd, ckpt, in.name, in.step, in.total, ckpt);
    else if (in.kind == DP_CKPT_OTHER_RUN)
        fprintf(stderr,
                "dalign %s: %s is another run's checkpoint (trainer '%s' at step %ld of %ld; %s): pass --force to "
                "overwrite it, or give this run another --ckpt or --out\n",
                cmd, ckpt, in.name, in.step, in.total, in.why);
    else
        fprintf(stderr,
                "dalign %s: %s exists and is not a checkpoint of this run (%s): pass --force to overwrite it, or "
                "give this run another --ckpt or --out\n",
                cmd, ckpt, in.why);
    return 1;
}

/* ---- stale temp files --------------------------------------------------- */

/* the PID of NAME.<anything>.tmp.PID, or 0 when the name is not one */
static long stale_tmp_pid(const char *file, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(file, name, n) || file[n] != '.') return 0;
    const char *tmp = NULL;
    for (const char *p = strstr(file + n, ".tmp."); p; p = strstr(p + 1, ".tmp.")) tmp = p;
    if (!tmp) return 0;
    const char *digits = tmp + 5;
    if (!*digits || strspn(digits, "0123456789") != strlen(digits) || strlen(digits) > 9) return 0;
    return strtol(digits, NULL, 10);
}

void train_clean_stale_tmp(const char *cmd, const char *dir, const char *const *names, int quiet)
{
    DIR *d = opendir(dir);
    if (!d) return;
    char path[4096];
    for (struct dirent *e; (e = readdir(d));) {
        for (int i = 0; names[i]; i++) {
            long pid = stale_tmp_pid(e->d_name, names[i]);
            /* alive (or not ours to signal: EPERM) or this very process: leave it */
            if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
            if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
            if (unlink(path) == 0 && !quiet)
                fprintf(stderr, "dalign %s: removed %s, left by a killed run (process %ld)\n", cmd, path, pid);
            break;
        }
    }
    closedir(d);
}

void train_clean_stale_tmp_of(const char *cmd, const char *path, int quiet)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path) > 0 ? (int)(slash - path) : 1, path);
    else snprintf(dir, sizeof dir, ".");
    const char *names[2] = {slash ? slash + 1 : path, NULL};
    train_clean_stale_tmp(cmd, dir, names, quiet);
}
