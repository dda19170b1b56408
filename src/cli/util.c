/* Option parsing and checks shared by the subcommands (cli.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/fileio.h"

int cli_parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < INT_MIN || v > INT_MAX) return -1;
    *out = (int)v;
    return 0;
}

int cli_parse_u64(const char *s, uint64_t *out) { return da_parse_u64(s, out); }

int cli_parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int cli_bad_value(const char *cmd, const char *opt, const char *val, const char *want)
{
    fprintf(stderr, "dalign %s: %s needs %s, got '%s'\n", cmd, opt, want, val);
    return 2;
}

int cli_parse_int_in(const char *cmd, const char *opt, const char *val, int lo, int hi, int *out)
{
    char want[64];
    snprintf(want, sizeof want, "an integer in [%d, %d]", lo, hi);
    if (cli_parse_int(val, out) || *out < lo || *out > hi) return cli_bad_value(cmd, opt, val, want);
    return 0;
}

int cli_parse_seed(const char *cmd, const char *opt, const char *val, uint64_t *out)
{
    return cli_parse_u64(val, out) ? cli_bad_value(cmd, opt, val, "a non-negative integer") : 0;
}

int cli_parse_options(const char *cmd, int argc, char **argv, void (*usage)(FILE *f), cli_option_fn option,
                      void *args, int *progress)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(o, "-q") || !strcmp(o, "--quiet")) {
            *progress = 0;
            continue;
        }
        if (o[0] != '-' || i + 1 >= argc) {
            if (o[0] == '-') fprintf(stderr, "dalign %s: %s needs a value\n", cmd, o);
            else fprintf(stderr, "dalign %s: unexpected argument '%s'\n", cmd, o);
            return 2;
        }
        int rc = option(args, o, argv[++i]);
        if (rc == CLI_NOT_MINE) {
            fprintf(stderr, "dalign %s: unknown option '%s' (see dalign %s --help)\n", cmd, o, cmd);
            return 2;
        }
        if (rc) return rc;
    }
    return -1;
}

int cli_parse_sample_option(const char *cmd, const char *opt, const char *val, da_sample_opts *o)
{
    if (!strcmp(opt, "--steps")) return cli_parse_int_in(cmd, opt, val, 1, DA_CLI_MAX_STEPS, &o->steps);
    if (!strcmp(opt, "--cfg")) {
        if (cli_parse_float(val, &o->cfg)) return cli_bad_value(cmd, opt, val, "a number");
        return 0;
    }
    if (!strcmp(opt, "--eta")) {
        if (cli_parse_float(val, &o->eta) || o->eta < 0.0f) return cli_bad_value(cmd, opt, val, "a number >= 0");
        return 0;
    }
    if (!strcmp(opt, "--sampler")) {
        if (da_sampler_parse(val, &o->sampler) != DA_OK) return cli_bad_value(cmd, opt, val, "ddim, ddpm or euler");
        return 0;
    }
    return CLI_NOT_MINE;
}

int cli_parse_loop_option(const char *cmd, const char *opt, const char *val, cli_loop_args *l)
{
    if (!strcmp(opt, "--refiner")) {
        l->refiner = val;
        return 0;
    }
    if (!strcmp(opt, "--refine-mode")) {
        if (da_refine_mode_parse(val, &l->opts.mode) != DA_OK) return cli_bad_value(cmd, opt, val, "loop, apriori or once");
        return 0;
    }
    if (!strcmp(opt, "--refine-steps")) return cli_parse_int_in(cmd, opt, val, 1, DA_CLI_MAX_STEPS, &l->opts.n_refine);
    if (!strcmp(opt, "--refine-temperature")) {
        if (cli_parse_float(val, &l->opts.temperature) || l->opts.temperature < 0.0f)
            return cli_bad_value(cmd, opt, val, "a number >= 0");
        return 0;
    }
    return CLI_NOT_MINE;
}

int cli_check_loop_args(const char *cmd, const cli_loop_args *l, const da_sample_opts *o)
{
    if (!l->refiner && (l->opts.mode != DA_REFINE_LOOP || l->opts.n_refine != da_loop_opts_default().n_refine ||
                        l->opts.temperature != da_loop_opts_default().temperature)) {
        fprintf(stderr, "dalign %s: --refine-mode, --refine-steps and --refine-temperature need --refiner NAME\n", cmd);
        return 2;
    }
    if (l->refiner && l->opts.mode != DA_REFINE_ONCE && l->opts.n_refine > o->steps) {
        fprintf(stderr, "dalign %s: --refine-steps %d: more refinements than the %d sampler steps\n", cmd,
                l->opts.n_refine, o->steps);
        return 2;
    }
    return 0;
}

int cli_check_writable(const char *cmd, const char *shown, const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        fprintf(stderr, "dalign %s: cannot write -o %s: path too long\n", cmd, shown);
        return 1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        fprintf(stderr, "dalign %s: cannot write -o %s: %s (checked before the work starts)\n", cmd, shown, strerror(errno));
        return 1;
    }
    close(fd);
    unlink(tmp);
    return 0;
}
