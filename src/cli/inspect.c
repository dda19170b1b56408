/* dalign inspect FILE: one line per tensor (name, dtype, shape, sum of the
 * values), in the order of their byte offsets, then the metadata. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dalign.h"

static const char *const dtype_names[] = {"F32", "F16", "BF16"};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign inspect [options] FILE\n"
            "\n"
            "Validate a safetensors file and list its tensors, one per line:\n"
            "  NAME  DTYPE  [SHAPE]  sum=SUM\n"
            "(SUM adds the values converted to f32, in double), then one line per\n"
            "metadata entry:\n"
            "  meta: KEY = VALUE\n"
            "\n"
            "Options:\n"
            CLI_COMMON_HELP
            "Exit status: 0 ok, 1 unreadable or malformed file, 2 usage error.\n");
}

/* Metadata is free text: escape control characters so one entry stays one line. */
static void print_escaped(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\') fputs("\\\\", stdout);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\x%02X", c);
        else putchar(c);
    }
}

static void print_tensor(const da_st_tensor *t, const float *x, int width)
{
    char shape[160];
    size_t k = (size_t)snprintf(shape, sizeof shape, "[");
    for (int d = 0; d < t->ndim && k < sizeof shape; d++)
        k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < sizeof shape) snprintf(shape + k, sizeof shape - k, "]");
    double sum = 0.0;   /* in order, in double: the same file always prints the same sum */
    for (size_t i = 0; i < t->numel; i++) sum += x[i];
    print_escaped(t->name);
    int pad = width - (int)strlen(t->name);
    printf("%*s  %-4s  %s  sum=", pad > 0 ? pad : 0, "", dtype_names[t->dtype], shape);
    if (isnan(sum)) printf("nan\n");   /* the sign of a NaN sum depends on the hardware */
    else printf("%.6f\n", sum);
}

static const struct option LONG_OPTS[] = {CLI_COMMON_LONG, {0, 0, 0, 0}};

int cmd_inspect(int argc, char **argv)
{
    cli_parser p = cli_parser_init("inspect", argc, argv, "", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        return cli_unhandled(&p);
    }
    if (p.optind != argc - 1) {
        fprintf(stderr, "dalign inspect: %s\n\n", p.optind == argc ? "no FILE given" : "one FILE at a time");
        usage(stderr);
        return 2;
    }
    const char *path = argv[p.optind];
    da_safetensors *st;
    if (da_st_open(path, &st) != DA_OK) {
        fprintf(stderr, "dalign inspect: %s: %s\n", path, da_last_error());
        return 1;
    }
    size_t max_numel = 1;
    int width = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        if (st->tensors[i].numel > max_numel) max_numel = st->tensors[i].numel;
        int w = (int)strlen(st->tensors[i].name);
        if (w > width && w <= 60) width = w;   /* one long name must not push every column away */
    }
    float *x = malloc(max_numel * sizeof *x);
    if (!x) {
        fprintf(stderr, "dalign inspect: %s: out of memory\n", path);
        da_st_close(st);
        return 1;
    }
    for (int i = 0; i < st->n_tensors; i++) {
        da_st_to_f32(st, &st->tensors[i], x);
        print_tensor(&st->tensors[i], x, width);
    }
    for (int i = 0; i < st->n_meta; i++) {
        fputs("meta: ", stdout);
        print_escaped(st->meta[i].key);
        fputs(" = ", stdout);
        print_escaped(st->meta[i].value);
        putchar('\n');
    }
    free(x);
    da_st_close(st);
    return 0;
}
