/* dalign compare A/metrics.json B/metrics.json: a side-by-side table of every
 * numeric metric the two files share, with B - A (src/eval/compare.c). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "dalign.h"
#include "eval/compare.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign compare A/metrics.json B/metrics.json\n"
            "\n"
            "Print every numeric value present in both files side by side (nested\n"
            "objects and arrays flattened to dotted keys, e.g. held_out.faithfulness.mean,\n"
            "held_out.faithfulness.ci95.0), with the change B - A and the relative change\n"
            "(B - A) / |A| (\"-\" when A is 0), in A's order; then the values only one file\n"
            "has. Strings, booleans and nulls are ignored. Works with the metrics.json of\n"
            "dalign eval and dalign eval-base, or any JSON object.\n"
            "\n"
            "Exit status: 0 ok, 1 a file is missing or not a valid JSON object, 2 usage error.\n");
}

int cmd_compare(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
    if (argc != 3) {
        fprintf(stderr, "dalign compare: expected two files, got %d\n\n", argc - 1);
        usage(stderr);
        return 2;
    }
    da_flat_metrics m[2];
    for (int k = 0; k < 2; k++) {
        if (da_flat_metrics_load(argv[1 + k], &m[k]) != DA_OK) {
            fprintf(stderr, "dalign compare: %s\n", da_last_error());
            if (k) da_flat_metrics_free(&m[0]);
            return 1;
        }
    }
    da_flat_metrics_compare(stdout, &m[0], &m[1], argv[1], argv[2], NULL);
    da_flat_metrics_free(&m[0]);
    da_flat_metrics_free(&m[1]);
    return 0;
}
