/* `dalign compare` logic (src/eval/compare.c): flattening a metrics.json
 * to dotted numeric keys, rejecting malformed files with clear messages, and
 * the side-by-side table (shared keys with B - A and the relative change,
 * then the keys only one file has). */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/compare.h"

/* shaped like eval-base's metrics.json */
static const char *DOC_A =
    "{\"weights\": \"weights\", \"config\": {\"prompts\": 200, \"seeds\": 4, \"sampler\": \"ddim\"},\n"
    " \"held_out\": {\"faithfulness\": {\"mean\": 0.5, \"ci95\": [0.45, 0.55], \"n\": 800},\n"
    "              \"clauses\": {\"colour\": {\"mean\": 0.8}}, \"ok\": true, \"none\": null},\n"
    " \"vae\": {\"psnr\": 0}, \"only_a\": 1.5e2}";
static const char *DOC_B =
    "{\"config\": {\"prompts\": 200, \"seeds\": 4},\n"
    " \"held_out\": {\"faithfulness\": {\"mean\": 0.625, \"ci95\": [0.6, 0.65], \"n\": 800},\n"
    "              \"clauses\": {\"colour\": {\"mean\": 0.6}}},\n"
    " \"vae\": {\"psnr\": 2}, \"only_b\": -3}";

static void parse_ok(const char *doc, da_flat_metrics *m)
{
    if (da_flat_metrics_parse(doc, strlen(doc), m) != DA_OK) fail_msg("parse: %s", da_last_error());
}

static void assert_value(const da_flat_metrics *m, const char *key, double want)
{
    const da_flat_metric *x = da_flat_metrics_find(m, key);
    if (!x) fail_msg("key %s missing", key);
    if (x->value != want) fail_msg("%s = %.17g, want %.17g", key, x->value, want);   /* exact: strtod of the literal */
}

/* Numeric leaves in document order with dotted keys; arrays get indices;
 * strings, booleans and nulls are skipped. */
static void test_flatten(void **state)
{
    (void)state;
    da_flat_metrics m;
    parse_ok(DOC_A, &m);
    const char *keys[] = {"config.prompts", "config.seeds", "held_out.faithfulness.mean",
                          "held_out.faithfulness.ci95.0", "held_out.faithfulness.ci95.1", "held_out.faithfulness.n",
                          "held_out.clauses.colour.mean", "vae.psnr", "only_a"};
    int n = (int)(sizeof keys / sizeof keys[0]);
    assert_int_equal(m.n, n);
    for (int i = 0; i < n; i++) assert_string_equal(m.m[i].key, keys[i]);
    assert_value(&m, "held_out.faithfulness.ci95.1", 0.55);
    assert_value(&m, "only_a", 150.0);
    assert_value(&m, "config.prompts", 200.0);
    assert_null(da_flat_metrics_find(&m, "weights"));
    assert_null(da_flat_metrics_find(&m, "held_out.ok"));
    assert_null(da_flat_metrics_find(&m, "held_out.none"));
    da_flat_metrics_free(&m);
    parse_ok("{}", &m);   /* an empty object is valid, with nothing in it */
    assert_int_equal(m.n, 0);
    da_flat_metrics_free(&m);
}

static void expect_format_error(const char *doc, const char *needle)
{
    da_flat_metrics m;
    da_status s = da_flat_metrics_parse(doc, strlen(doc), &m);
    if (s != DA_ERR_FORMAT) fail_msg("'%s' gave status %d, want DA_ERR_FORMAT", doc, (int)s);
    if (!strstr(da_last_error(), needle)) fail_msg("'%s': message '%s' lacks '%s'", doc, da_last_error(), needle);
    assert_int_equal(m.n, 0);
    assert_null(m.m);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_format_error("{\"a\": 1,}", "JSON");              /* strict: no trailing comma */
    expect_format_error("{\"a\": 1", "JSON");
    expect_format_error("", "JSON");
    expect_format_error("[1, 2]", "not a JSON object");
    expect_format_error("3", "not a JSON object");
    expect_format_error("{\"a\": 1e999}", "double");
    expect_format_error("{\"a\": {\"b\": 1}, \"a.b\": 2}", "a.b");   /* two leaves flatten to one key */
    expect_format_error("{\"a\": 1, \"a\": 2}", "twice");
    expect_format_error("{\"a\\u0000b\": 1}", "NUL");
    /* a key longer than DA_METRIC_KEY_MAX - 1 bytes */
    size_t k = DA_METRIC_KEY_MAX + 10;
    char *doc = malloc(k + 16);
    doc[0] = '{';
    doc[1] = '"';
    memset(doc + 2, 'x', k);
    strcpy(doc + 2 + k, "\": 1}");
    expect_format_error(doc, "longer");
    free(doc);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Loading names the file in every error. */
static void test_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/dalign_compare_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    da_flat_metrics m;
    assert_int_equal(da_flat_metrics_load(path, &m), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), path));
    write_file(path, "{\"a\": [1, 2");
    assert_int_equal(da_flat_metrics_load(path, &m), DA_ERR_FORMAT);
    assert_non_null(strstr(da_last_error(), path));
    assert_non_null(strstr(da_last_error(), "JSON"));
    write_file(path, DOC_B);
    assert_int_equal(da_flat_metrics_load(path, &m), DA_OK);
    assert_int_equal(m.n, 9);
    assert_value(&m, "only_b", -3.0);
    da_flat_metrics_free(&m);
    assert_int_equal(da_flat_metrics_load(dir, &m), DA_ERR_IO);   /* a directory is not a file */
    remove(path);
    rmdir(dir);
}

/* the line of the table whose first word is key */
static const char *row(const char *table, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = table; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, key, n) && p[n] == ' ') return p;
    return NULL;
}

/* the row of key has the columns A, B, B - A, rel exactly as given */
static void assert_row(const char *table, const char *key, const char *a, const char *b, const char *d,
                       const char *rel)
{
    const char *r = row(table, key);
    if (!r) fail_msg("no row for %s in:\n%s", key, table);
    char k[256], col[4][64];
    if (sscanf(r, "%255s %63s %63s %63s %63s", k, col[0], col[1], col[2], col[3]) != 5)
        fail_msg("row of %s does not have 5 columns", key);
    const char *want[4] = {a, b, d, rel};
    for (int i = 0; i < 4; i++)
        if (strcmp(col[i], want[i])) fail_msg("%s: column %d is '%s', want '%s'", key, i + 1, col[i], want[i]);
}

static void test_table(void **state)
{
    (void)state;
    da_flat_metrics a, b;
    parse_ok(DOC_A, &a);
    parse_ok(DOC_B, &b);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    da_compare_counts c;
    da_flat_metrics_compare(f, &a, &b, "a.json", "b.json", &c);
    fclose(f);
    if (getenv("DA_TEST_VERBOSE")) printf("%s", buf);
    assert_int_equal(c.both, 8);   /* DOC_A's 9 leaves less only_a */
    assert_int_equal(c.only_a, 1);
    assert_int_equal(c.only_b, 1);
    assert_non_null(strstr(buf, "A: a.json\nB: b.json\n"));
    /* A, B, B - A, relative change in % of |A| */
    assert_row(buf, "held_out.faithfulness.mean", "0.5", "0.625", "+0.125", "+25.00%");
    assert_row(buf, "held_out.faithfulness.ci95.1", "0.55", "0.65", "+0.1", "+18.18%");
    assert_row(buf, "held_out.clauses.colour.mean", "0.8", "0.6", "-0.2", "-25.00%");
    assert_row(buf, "config.prompts", "200", "200", "+0", "+0.00%");
    assert_row(buf, "vae.psnr", "0", "2", "+2", "-");   /* from 0: no relative change */
    const char *oa = strstr(buf, "only in a.json:\n  only_a = 150\n");
    const char *ob = strstr(buf, "only in b.json:\n  only_b = -3\n");
    assert_true(oa && ob && oa < ob);
    /* shared keys come in A's order, before the only-in lists */
    assert_true(row(buf, "config.prompts") < row(buf, "vae.psnr") && row(buf, "vae.psnr") < oa);
    free(buf);

    /* nothing shared */
    da_flat_metrics e;
    parse_ok("{\"z\": 1}", &e);
    f = open_memstream(&buf, &len);
    da_flat_metrics_compare(f, &a, &e, "a", "e", &c);
    fclose(f);
    assert_int_equal(c.both, 0);
    assert_int_equal(c.only_a, 9);
    assert_int_equal(c.only_b, 1);
    assert_non_null(strstr(buf, "no numeric metric in both files"));
    free(buf);
    da_flat_metrics_free(&e);
    da_flat_metrics_free(&a);
    da_flat_metrics_free(&b);
}

/* 200,000 keys (issue 14: quadratic, they did not finish in 2 minutes;
 * now a sorted index, n log n, a fraction of a second): two files with
 * the same keys in different orders, one value changed, one key each of
 * its own. Completes, with the counts right; no timing asserted. */
static void test_many_keys(void **state)
{
    (void)state;
    enum { N = 200000 };
    char *doc[2];
    size_t len[2];
    for (int d = 0; d < 2; d++) {
        FILE *f = open_memstream(&doc[d], &len[d]);
        assert_non_null(f);
        fputs("{", f);
        for (int i = 0; i < N; i++) {
            int k = d ? N - 1 - i : i;   /* B in reverse order */
            fprintf(f, "%s\"group%03d\": {\"metric%06d\": %d}", i ? ", " : "", k % 997, k, k == 4242 && d ? -1 : k);
        }
        fprintf(f, ", \"own%d\": 1, \"text\": \"%s\"}", d, d ? "b" : "a");
        fclose(f);
    }
    da_flat_metrics a, b;
    parse_ok(doc[0], &a);
    parse_ok(doc[1], &b);
    assert_int_equal(a.n, N + 1);
    assert_value(&b, "group254.metric004242", -1.0);
    assert_value(&a, "group254.metric004242", 4242.0);
    FILE *f = fopen("/dev/null", "w");
    assert_non_null(f);
    da_compare_counts c;
    da_flat_metrics_compare(f, &a, &b, "a", "b", &c);
    fclose(f);
    assert_int_equal(c.both, N);
    assert_int_equal(c.only_a, 1);
    assert_int_equal(c.only_b, 1);
    assert_int_equal(c.text_differ, 1);
    da_flat_metrics_free(&a);
    da_flat_metrics_free(&b);
    free(doc[0]);
    free(doc[1]);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flatten),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_many_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
