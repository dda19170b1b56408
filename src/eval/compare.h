/* Comparing two metrics.json files (`dalign compare`, src/cli/compare.c):
 * every numeric value of a file, with nested objects and arrays flattened to
 * dotted keys ("held_out.faithfulness.mean", "held_out.faithfulness.ci95.0"),
 * then a side-by-side table of the keys both files have, with B - A and the
 * relative change, and the keys only one file has; then the text values
 * (settings, dalign_version, weights_sha256.*) that differ, so two runs
 * made with other weights or another dalign say so. Keys are found through
 * an index sorted by key (binary search): n log n, for any number of keys. */
#ifndef DA_EVAL_COMPARE_H
#define DA_EVAL_COMPARE_H

#include <stdio.h>

#include "dalign/eval.h"

#define DA_METRIC_KEY_MAX 512   /* bytes of a flattened key, NUL included */

typedef struct da_flat_metric {
    char *key;              /* < DA_METRIC_KEY_MAX bytes */
    double value;
} da_flat_metric;

typedef struct da_flat_text {
    char *key, *value;
} da_flat_text;

/* The numeric leaves of a JSON document, in document order, and its string
 * leaves; booleans and nulls are skipped. by_key and text_by_key index them
 * sorted by key (strcmp), for da_flat_metrics_find and the comparison. */
typedef struct da_flat_metrics {
    int n, cap;
    da_flat_metric *m;
    const da_flat_metric **by_key;   /* (n) */
    int n_text, cap_text;
    da_flat_text *text;
    const da_flat_text **text_by_key;   /* (n_text) */
} da_flat_metrics;

/* Parse text[0..len) with the strict JSON parser and flatten it. *out is
 * zeroed first (free with da_flat_metrics_free, also after an error).
 * DA_ERR_FORMAT (with the parser's message) for malformed JSON, a top level
 * that is not an object, a number that is not finite as a double, a key
 * that flattens to one already seen, or a key longer than
 * DA_METRIC_KEY_MAX - 1 bytes. */
da_status da_flat_metrics_parse(const char *text, size_t len, da_flat_metrics *out);
/* The same from a file: DA_ERR_IO (naming it) when it cannot be read;
 * format errors name the file too. */
da_status da_flat_metrics_load(const char *path, da_flat_metrics *out);
void da_flat_metrics_free(da_flat_metrics *m);
/* The leaf called key, or NULL (O(log n)). */
const da_flat_metric *da_flat_metrics_find(const da_flat_metrics *m, const char *key);
/* The string leaf called key, or NULL. */
const da_flat_text *da_flat_metrics_find_text(const da_flat_metrics *m, const char *key);

/* Counts of what da_flat_metrics_compare printed. */
typedef struct da_compare_counts {
    int both, only_a, only_b;
    int text_differ;          /* string leaves in both files with different values */
    int provenance_differ;    /* of those, dalign_version and weights_sha256.* */
} da_compare_counts;

/* The table to f: one row per key of a that b has too (in a's order):
 * A, B, B - A and (B - A) / |A| in percent ("-" when A is 0); then the keys
 * only in a, then those only in b, with their values. name_a and name_b
 * label the columns' files. counts may be NULL. */
void da_flat_metrics_compare(FILE *f, const da_flat_metrics *a, const da_flat_metrics *b, const char *name_a,
                        const char *name_b, da_compare_counts *counts);

/* The same as one self-contained HTML page: the provenance (version and
 * weights, differences marked), every metric with an interval (KEY.mean
 * with KEY.ci95) as A [lo, hi], B [lo, hi] and B - A, the other shared
 * numbers, and, when dir_a and dir_b (the runs' folders, may be NULL) both
 * hold images.png and images.tsv of `dalign eval`, every prompt the two
 * runs share with A's images beside B's, the biggest loss in faithfulness
 * first. */
da_status da_compare_html(FILE *f, const da_flat_metrics *a, const da_flat_metrics *b, const char *name_a,
                          const char *name_b, const char *dir_a, const char *dir_b);

#endif
