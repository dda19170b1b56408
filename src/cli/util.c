/* Option parsing and checks shared by the subcommands (cli.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/fileio.h"

/* the space between "dalign" and a command's name; main's messages have none */
#define SP(cmd) (*(cmd) ? " " : "")

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
    fprintf(stderr, "dalign%s%s: %s needs %s, got '%s'\n", SP(cmd), cmd, opt, want, val);
    return 2;
}

int cli_parse_int_in(const char *cmd, const char *opt, const char *val, int lo, int hi, int *out)
{
    char want[64];
    snprintf(want, sizeof want, "an integer in [%d, %d]", lo, hi);
    if (cli_parse_int(val, out) || *out < lo || *out > hi) return cli_bad_value(cmd, opt, val, want);
    return 0;
}

/* a seed from the kernel's entropy pool, else from the clock and the pid;
 * at most 2^53 so that it survives a round trip through JSON numbers */
static uint64_t random_seed(void)
{
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &s, sizeof s) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid() << 32;
    }
    if (fd >= 0) close(fd);
    return s >> 11;
}

int cli_parse_seed(const char *cmd, const char *opt, const char *val, uint64_t *out)
{
    if (!strcmp(val, "-1")) {
        *out = random_seed();
        fprintf(stderr, "dalign %s: %s -1: random seed %llu\n", cmd, opt, (unsigned long long)*out);
        return 0;
    }
    return cli_parse_u64(val, out) ? cli_bad_value(cmd, opt, val, "a non-negative integer (or -1: random)") : 0;
}

int cli_check_loop_args(const char *cmd, const cli_loop_args *l, const da_sample_opts *o)
{
    if (!l->refiner && (l->opts.mode != DA_REFINE_LOOP || l->opts.n_refine != da_loop_opts_default().n_refine ||
                        l->opts.temperature != da_loop_opts_default().temperature || l->keep_meaning_given ||
                        l->window_given)) {
        fprintf(stderr, "dalign %s: --refine-mode, --refine-steps, --refine-temperature, "
                        "--[no-]refine-keep-meaning and --refine-window need --refiner NAME\n", cmd);
        return 2;
    }
    if (l->refiner && l->opts.mode != DA_REFINE_ONCE && l->opts.n_refine > o->steps) {
        fprintf(stderr, "dalign %s: --refine-steps %d: more refinements than the %d sampler steps\n", cmd,
                l->opts.n_refine, o->steps);
        return 2;
    }
    return 0;
}

/* --refine-window unset: the window the refiner was trained with, if any */
static int resolve_window(const char *cmd, cli_loop_args *l, const char *dir, int quiet)
{
    if (!l->refiner || l->window_given || l->opts.mode == DA_REFINE_ONCE) return 0;
    int first, end;
    if (da_weights_refiner_window(dir, l->refiner, &first, &end) != DA_OK) {
        fprintf(stderr, "dalign %s: %s\n", cmd, da_last_error());
        return 1;
    }
    if (!first && !end) return 0;
    l->opts.window_first = first;
    l->opts.window_end = end;
    if (!quiet)
        fprintf(stderr, "dalign %s: refiner %s was trained with --refine-window %d:%d: its refinements are spread "
                        "over those steps, as in its training\n", cmd, l->refiner, first, end);
    return 0;
}

int cli_loop_resolve(const char *cmd, cli_loop_args *l, const char *dir, int n_steps, int quiet)
{
    if (resolve_window(cmd, l, dir, quiet)) return 1;
    /* the window, given or the file's (absolute steps), must fit these --steps */
    if (l->refiner && (l->opts.window_first || l->opts.window_end) && da_loop_opts_check(&l->opts, n_steps) != DA_OK) {
        if (l->window_given)
            fprintf(stderr, "dalign %s: --refine-window: %s\n", cmd, da_last_error());
        else
            fprintf(stderr, "dalign %s: refiner %s was trained with --refine-window %d:%d: %s (choose one with "
                            "--refine-window)\n", cmd, l->refiner, l->opts.window_first, l->opts.window_end,
                    da_last_error());
        return 2;
    }
    if (!l->refiner || l->keep_meaning_given) return 0;
    int keep;
    if (da_weights_refiner_keep_meaning(dir, l->refiner, &keep) != DA_OK) {
        fprintf(stderr, "dalign %s: %s\n", cmd, da_last_error());
        return 1;
    }
    l->opts.keep_meaning = keep;
    if (keep && !quiet)
        fprintf(stderr, "dalign %s: refiner %s was trained with --refine-keep-meaning: a rewrite that does not mean "
                        "the query is discarded, as in its training (--no-refine-keep-meaning uses every rewrite)\n",
                cmd, l->refiner);
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

/* ---- the getopt_long convention (cli.h) ---------------------------------- */

cli_common cli_global;

cli_parser cli_parser_init(const char *cmd, int argc, char **argv, const char *shortopts,
                           const struct option *longopts, void (*usage)(FILE *f))
{
    cli_parser p;
    memset(&p, 0, sizeof p);
    p.cmd = cmd;
    p.argc = argc;
    p.argv = argv;
    /* ":" first (after a "+", which must lead): a missing value comes back
     * as ':' and is worded here */
    if (!shortopts) shortopts = "";
    int stop = shortopts[0] == '+';
    snprintf(p.shortopts, sizeof p.shortopts, "%s:%s%s", stop ? "+" : "", shortopts + stop, CLI_COMMON_SHORT);
    p.longopts = longopts;
    p.usage = usage;
    p.common = cli_global;
    p.optind = 1;
    optind = 0;   /* glibc: 0 re-initialises getopt for a new argv */
    opterr = 0;   /* errors are worded by cli_next */
    return p;
}

int cli_set_threads(const char *cmd, const char *opt, const char *val)
{
    int n;
    if (cli_parse_int_in(cmd, opt, val, 1, DA_CLI_MAX_THREADS, &n)) return 2;
    da_set_threads(n);
    return 0;
}

/* the option as the user typed it, without "=value": for messages */
static void typed_option(cli_parser *p, int c, int longindex)
{
    if (longindex >= 0) snprintf(p->opt, sizeof p->opt, "--%s", p->longopts[longindex].name);
    else snprintf(p->opt, sizeof p->opt, "-%c", c);
}

/* getopt_long's '?' (unknown option, or a value given to a flag) and ':'
 * (missing value), worded. optopt is the option's code, 0 for an unknown
 * long option; a long option's word is argv[optind - 1] (glibc has moved
 * past it), a short one may sit inside a cluster (-qx), so it is named by
 * its letter. */
static void report_bad_option(cli_parser *p, int c)
{
    const char *w = optind > 0 && optind <= p->argc ? p->argv[optind - 1] : "";
    int is_long = optopt == 0 || optopt >= 0x100 || (w[0] == '-' && w[1] == '-' && w[2]);
    if (is_long) {
        size_t n = strcspn(w, "=");
        if (n > sizeof p->opt - 1) n = sizeof p->opt - 1;
        snprintf(p->opt, sizeof p->opt, "%.*s", (int)n, w);
    } else {
        snprintf(p->opt, sizeof p->opt, "-%c", optopt);
    }
    if (c == ':') fprintf(stderr, "dalign%s%s: %s needs a value\n", SP(p->cmd), p->cmd, p->opt);
    else if (optopt != 0 && is_long) fprintf(stderr, "dalign%s%s: %s takes no value\n", SP(p->cmd), p->cmd, p->opt);
    else
        fprintf(stderr, "dalign%s%s: unknown option '%s' (see dalign%s%s --help)\n", SP(p->cmd), p->cmd, p->opt,
                SP(p->cmd), p->cmd);
}

int cli_next(cli_parser *p)
{
    for (;;) {
        int longindex = -1;
        int c = getopt_long(p->argc, p->argv, p->shortopts, p->longopts, &longindex);
        p->optind = optind;
        p->val = optarg;
        if (c == -1) return CLI_DONE;
        if (c == '?' || c == ':') {
            report_bad_option(p, c);
            p->rc = 2;
            return CLI_EXIT;
        }
        typed_option(p, c, longindex);
        switch (c) {
        case 'h':
            if (p->usage) p->usage(stdout);
            p->rc = 0;
            return CLI_EXIT;
        case 'q':
            p->common.quiet = 1;
            p->common.verbose = 0;
            continue;
        case 'v':
            p->common.verbose = 1;
            p->common.quiet = 0;
            continue;
        case 't':
            if ((p->rc = cli_set_threads(p->cmd, p->opt, p->val))) return CLI_EXIT;
            continue;
        default:
            return c;
        }
    }
}

int cli_unhandled(const cli_parser *p)
{
    fprintf(stderr, "dalign %s: unknown option '%s' (see dalign %s --help)\n", p->cmd, p->opt, p->cmd);
    return 2;
}

int cli_sample_opt(const cli_parser *p, int c, da_sample_opts *o)
{
    const char *cmd = p->cmd, *opt = p->opt, *val = p->val;
    switch (c) {
    case CLI_O_STEPS: return cli_parse_int_in(cmd, opt, val, 1, DA_CLI_MAX_STEPS, &o->steps);
    case CLI_O_CFG:
        return cli_parse_float(val, &o->cfg) ? cli_bad_value(cmd, opt, val, "a finite number") : 0;
    case CLI_O_ETA:
        if (cli_parse_float(val, &o->eta) || o->eta < 0.0f) return cli_bad_value(cmd, opt, val, "a number >= 0");
        return 0;
    case CLI_O_SAMPLER:
        return da_sampler_parse(val, &o->sampler) != DA_OK ? cli_bad_value(cmd, opt, val, "ddim, ddpm or euler") : 0;
    default: return CLI_NOT_MINE;
    }
}

int cli_loop_opt(const cli_parser *p, int c, cli_loop_args *l)
{
    const char *cmd = p->cmd, *opt = p->opt, *val = p->val;
    switch (c) {
    case CLI_O_REFINER: l->refiner = val; return 0;
    case CLI_O_REFINE_MODE:
        return da_refine_mode_parse(val, &l->opts.mode) != DA_OK ? cli_bad_value(cmd, opt, val, "loop, apriori or once")
                                                                 : 0;
    case CLI_O_REFINE_STEPS: return cli_parse_int_in(cmd, opt, val, 1, DA_CLI_MAX_STEPS, &l->opts.n_refine);
    case CLI_O_REFINE_TEMPERATURE:
        if (cli_parse_float(val, &l->opts.temperature) || l->opts.temperature < 0.0f)
            return cli_bad_value(cmd, opt, val, "a number >= 0");
        return 0;
    case CLI_O_REFINE_KEEP_MEANING:
    case CLI_O_NO_REFINE_KEEP_MEANING:
        l->opts.keep_meaning = c == CLI_O_REFINE_KEEP_MEANING;
        l->keep_meaning_given = 1;
        return 0;
    case CLI_O_REFINE_WINDOW:
        if (da_loop_window_parse(val, &l->opts.window_first, &l->opts.window_end) != DA_OK)
            return cli_bad_value(cmd, opt, val, "FIRST:END, two step numbers with FIRST < END");
        l->window_given = 1;
        return 0;
    default: return CLI_NOT_MINE;
    }
}
