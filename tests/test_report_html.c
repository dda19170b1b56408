/* The pages and files a person digs into (issue 14, item 7): index.html of
 * `dalign eval` with every prompt's images inline, worst first, each image
 * with the clauses it failed, tooltips on the chart dots; the compare page
 * of two runs with their images side by side; metrics.json's dalign version
 * and weights SHA-256 (and `compare` saying when they differ); the Wilson
 * interval that keeps shares inside [0, 1]; the completion marker written
 * last; and the report commands' getopt_long options. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/json.h"
#include "eval/compare.h"
#include "eval/provenance.h"

#define P 3
#define K 2

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_report_html_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* ---- Wilson ------------------------------------------------------------------------------ */

static void test_wilson(void **state)
{
    (void)state;
    /* textbook values (z = 1.96): 10/10 -> [0.7225, 1], 0/10 -> [0, 0.2775] */
    da_eval_stat a = da_eval_wilson(10, 10), b = da_eval_wilson(0, 10), c = da_eval_wilson(5, 10);
    assert_true(a.mean == 1.0 && a.hi == 1.0 && fabs(a.lo - 0.72246) < 1e-4);
    assert_true(b.mean == 0.0 && b.lo == 0.0 && fabs(b.hi - 0.27754) < 1e-4);
    assert_true(fabs(c.lo - 0.23659) < 1e-4 && fabs(c.hi - 0.76341) < 1e-4);   /* symmetric at 1/2 */
    assert_int_equal(da_eval_wilson(0, 0).n, 0);
    /* ten prompts of one image, all successes: the clustered share is the plain count's */
    double s[10], n[10];
    for (int i = 0; i < 10; i++) s[i] = n[i] = 1.0;
    da_eval_stat d = da_eval_cluster_share(s, n, 10);
    assert_true(d.hi == 1.0 && fabs(d.lo - 0.72246) < 1e-4 && d.n == 10);
    /* the report's case: a share near 1 over few prompts, where mean +- half
     * passed 1 ([0.53, 1.07] in the issue); the Wilson interval stays inside */
    const double s2[3] = {4, 4, 2}, n2[3] = {4, 4, 4};
    da_eval_stat normal = da_eval_cluster_mean(s2, n2, 3), share = da_eval_cluster_share(s2, n2, 3);
    assert_true(normal.mean + normal.half > 1.0);
    assert_true(share.lo >= 0.0 && share.hi <= 1.0 && share.lo < share.mean && share.mean < share.hi);
    assert_true(fabs(share.mean - normal.mean) < 1e-15 && share.half == normal.half);
    /* the plain mean's interval is its half width around the mean */
    assert_true(normal.lo == normal.mean - normal.half && normal.hi == normal.mean + normal.half);
}

/* ---- SHA-256 ------------------------------------------------------------------------------ */

static void test_sha256(void **state)
{
    (void)state;
    /* FIPS 180-4 examples: one block, two blocks (56 bytes pad into a second), empty */
    const char *msg[3] = {"abc", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", ""};
    const char *want[3] = {"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                           "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
                           "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"};
    for (int i = 0; i < 3; i++) {
        da_sha256 c;
        char hex[65];
        da_sha256_init(&c);
        /* in two pieces: the buffering across updates is exercised */
        size_t len = strlen(msg[i]), cut = len / 3;
        da_sha256_update(&c, msg[i], cut);
        da_sha256_update(&c, msg[i] + cut, len - cut);
        da_sha256_hex(&c, hex);
        assert_string_equal(hex, want[i]);
    }
    /* a million 'a': many blocks through the file reader */
    char path[128], hex[65];
    snprintf(path, sizeof path, "%s/million", g_dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 1000000; i++) fputc('a', f);
    fclose(f);
    assert_int_equal(da_sha256_file(path, hex), DA_OK);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    snprintf(path, sizeof path, "%s/absent", g_dir);
    assert_int_equal(da_sha256_file(path, hex), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "absent"));
}

/* ---- a report made by hand ------------------------------------------------------------- */

/* P heldout prompts, K seeds, only the faithful reward; faithfulness per
 * prompt (1, 1), (0.5, 0.25), (0.75, 0.75): the worst is prompt 2 of the
 * page (index 1), then 3, then 1. Image (1, 1) failed its colour clause. */
static void make_result(da_report_result *r, da_report_config *c, uint8_t shade)
{
    *c = da_report_config_default();
    c->prompts = "heldout";
    c->n_prompts = P;
    c->n_seeds = K;
    assert_int_equal(da_report_init(r, c), DA_OK);
    assert_int_equal(r->page_prompts, P);
    assert_int_equal(r->page_seeds, K);
    r->rewards = 1u << DA_REPORT_FAITHFUL;
    static const float faith[P * K] = {1.0f, 1.0f, 0.5f, 0.25f, 0.75f, 0.75f};
    double s[P], n[P];
    for (int j = 0; j < P * K; j++) {
        r->faith[j] = r->scores[j] = faith[j];   /* reward 0 is faithful */
        r->utility[j] = 5.0f + (float)j;
        r->n_detected[j] = r->n_objects[j / K];
        r->n_clauses[j] = 2;
        r->clauses[j * DA_MAX_CLAUSES] = (da_clause){DA_CLAUSE_COLOUR, 0, 1};
        r->clauses[j * DA_MAX_CLAUSES + 1] = (da_clause){DA_CLAUSE_SHAPE, 0, faith[j] == 1.0f};
    }
    r->clauses[3 * DA_MAX_CLAUSES].satisfied = 0;   /* image (1, 1): colour failed too */
    for (int i = 0; i < P * K * DA_IMG * DA_IMG * 3; i++) r->rgb[i] = (uint8_t)(shade + i % 7 * 20);
    for (int p = 0; p < P; p++) {
        s[p] = faith[p * K] + faith[p * K + 1];
        n[p] = K;
        r->diversity[p] = 0.1 * p;
    }
    r->reward[DA_REPORT_FAITHFUL] = r->faith_all = da_eval_cluster_share(s, n, P);
    for (int p = 0; p < P; p++) s[p] = (faith[p * K] == 1.0f) + (faith[p * K + 1] == 1.0f);
    r->exact = da_eval_cluster_share(s, n, P);
    r->rater = da_eval_cluster_mean(s, n, P);
    for (int p = 0; p < P; p++) n[p] = 1.0;
    r->div = da_eval_cluster_mean(r->diversity, n, P);
}

static char *page_of(const da_report_config *c, const da_report_result *r)
{
    static char *buf;   /* static: open_memstream keeps their addresses until fclose */
    static size_t len;
    buf = NULL;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    da_report_html(f, c, r, "weights", "unet");
    fclose(f);
    return buf;
}

static void test_index_html(void **state)
{
    (void)state;
    da_report_result r;
    da_report_config c;
    make_result(&r, &c, 10);
    char *page = page_of(&c, &r);
    /* every image of every prompt, inline: a PNG (its signature in base64) */
    assert_int_equal(count(page, "src=\"data:image/png;base64,"), P * K);
    assert_int_equal(count(page, "src=\"data:image/png;base64,iVBORw0KGgo"), P * K);
    assert_null(strstr(page, "grid.png\""));   /* self-contained: no file referenced */
    /* worst first: prompt 2 (mean 0.375), then 3 (0.75), then 1 (1.0) */
    const char *p1 = strstr(page, "id=\"p1\""), *p2 = strstr(page, "id=\"p2\""), *p3 = strstr(page, "id=\"p3\"");
    assert_true(p1 && p2 && p3 && p2 < p3 && p3 < p1);
    /* each image with the clauses it failed: prompt 2's two images failed the
     * shape, its second the colour too; prompt 1's met every clause */
    const char *end1 = strstr(p1, "<h2>");   /* the section after the prompts */
    assert_non_null(end1);
    char *block2 = strndup(p2, (size_t)(p3 - p2)), *block1 = strndup(p1, (size_t)(end1 - p1));
    assert_int_equal(count(block2, "&#10007; shape"), 2);
    assert_int_equal(count(block2, "&#10007; colour"), 1);
    assert_int_equal(count(block1, "every clause met"), K);
    assert_int_equal(count(block1, "&#10007;"), 0);
    free(block2);
    free(block1);
    /* every dot of the spread chart has a tooltip naming its prompt, and links to it */
    int dots = count(page, "<circle");
    assert_true(dots >= 2 * P);   /* faithful, diversity and the rater: P dots each */
    assert_int_equal(count(page, "</title></circle>"), dots);
    assert_non_null(strstr(page, "<a href=\"#p2\"><circle"));
    const char *text = r.prompts + DA_CAPTION_MAX;   /* prompt 2's words in its tooltip */
    char want[256];
    snprintf(want, sizeof want, "prompt 2, %s</title>", text);
    assert_non_null(strstr(page, want));
    /* the interval of a share is inside [0, 1] on the page too */
    char interval[96];
    snprintf(interval, sizeof interval, "[%.4f, %.4f]", r.faith_all.lo, r.faith_all.hi);
    assert_non_null(strstr(page, interval));
    assert_true(r.faith_all.hi <= 1.0);
    free(page);
    da_report_result_free(&r);
}

/* ---- files: metrics.json provenance, the marker, images.png ------------------------------- */

/* a weights folder whose unet.json holds `unet` (other files absent: not hashed) */
static void fake_weights(const char *dir, const char *unet)
{
    char path[256];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/unet.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(unet, f);
    fclose(f);
}

static void write_run(const char *name, const char *unet_text, uint8_t shade, char *out, size_t cap)
{
    char weights[128];
    snprintf(weights, sizeof weights, "%s/w-%s", g_dir, name);
    fake_weights(weights, unet_text);
    snprintf(out, cap, "%s/%s", g_dir, name);
    da_report_result r;
    da_report_config c;
    make_result(&r, &c, shade);
    if (da_report_write(out, &c, &r, weights, "unet") != DA_OK) fail_msg("write: %s", da_last_error());
    da_report_result_free(&r);
}

static const da_json_value *member(const da_json_value *o, const char *key)
{
    for (int i = 0; o && i < o->n; i++)
        if (!strcmp(o->items[i].key, key)) return &o->items[i];
    fail_msg("no member %s", key);
    return NULL;
}

static void test_metrics_provenance(void **state)
{
    (void)state;
    char dir[128], path[256];
    write_run("a", "abc", 10, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    size_t n;
    char *js = tu_slurp(path, &n), err[128];
    da_json_value root;
    if (da_json_parse(js, n, &root, err, sizeof err)) fail_msg("metrics.json: %s", err);
    assert_string_equal(member(&root, "dalign_version")->str, da_version());
    const da_json_value *sha = member(&root, "weights_sha256");
    assert_int_equal(sha->n, 1);   /* only the file that exists */
    assert_string_equal(member(sha, "unet.json")->str,
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");   /* SHA-256("abc") */
    /* the share's interval from the file: inside [0, 1] */
    const da_json_value *ci = member(member(member(&root, "faithfulness"), "exact"), "ci95");
    assert_true(ci->type == DA_JSON_ARRAY && ci->n == 2);
    da_json_free(&root);
    free(js);
    /* the marker names every file, and the files are there */
    snprintf(path, sizeof path, "%s/%s", dir, DA_EVAL_DONE);
    char *done = tu_slurp(path, NULL);
    const char *files[] = {"metrics.json", "images.tsv", "images.png", "index.html", "grid.png"};
    for (int i = 0; i < 5; i++) {
        assert_non_null(strstr(done, files[i]));
        char f[256];
        snprintf(f, sizeof f, "%s/%s", dir, files[i]);
        assert_int_equal(access(f, R_OK), 0);
    }
    free(done);
    /* a rerun into the folder is unfinished until its marker is back */
    assert_int_equal(da_done_clear(dir), DA_OK);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(da_done_clear(dir), DA_OK);   /* no marker: fine */
}

/* ---- compare: the provenance difference, and the page ----------------------------------- */

static void test_compare_page(void **state)
{
    (void)state;
    char a[128], b[128], pa[256], pb[256];
    write_run("ca", "abc", 10, a, sizeof a);
    write_run("cb", "abd", 90, b, sizeof b);   /* other UNet weights */
    snprintf(pa, sizeof pa, "%s/metrics.json", a);
    snprintf(pb, sizeof pb, "%s/metrics.json", b);
    da_flat_metrics ma, mb;
    assert_int_equal(da_flat_metrics_load(pa, &ma), DA_OK);
    assert_int_equal(da_flat_metrics_load(pb, &mb), DA_OK);
    /* the table says the weights differ */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    da_compare_counts cnt;
    da_flat_metrics_compare(f, &ma, &mb, "a", "b", &cnt);
    fclose(f);
    assert_int_equal(cnt.provenance_differ, 1);
    assert_non_null(strstr(buf, "note: 1 weights file differs"));
    assert_non_null(strstr(buf, "weights_sha256.unet.json: ba7816bf"));
    free(buf);
    /* the page: provenance marked, the metrics with both intervals, the same
     * prompts' images of both runs side by side */
    f = open_memstream(&buf, &len);
    assert_int_equal(da_compare_html(f, &ma, &mb, "a", "b", a, b), DA_OK);
    fclose(f);
    assert_non_null(strstr(buf, "The runs differ in dalign version or weights"));
    assert_non_null(strstr(buf, "<tr class=\"differ\"><td>weights_sha256.unet.json</td>"));
    assert_non_null(strstr(buf, "<td>faithfulness.exact</td>"));
    assert_int_equal(count(buf, "src=\"data:image/png;base64,iVBORw0KGgo"), 2 * P * K);
    assert_int_equal(count(buf, "<div class=\"pair\">"), P);
    assert_int_equal(count(buf, "<div class=\"run\"><b>A</b>"), P);
    free(buf);
    /* files, not folders: the page says why it has no images */
    f = open_memstream(&buf, &len);
    da_compare_html(f, &ma, &mb, "a", "b", NULL, NULL);
    fclose(f);
    assert_int_equal(count(buf, "data:image/png"), 0);
    assert_non_null(strstr(buf, "compare was given files, not folders"));
    free(buf);
    da_flat_metrics_free(&ma);
    da_flat_metrics_free(&mb);
}

/* ---- the commands: getopt_long options --------------------------------------------------- */

/* dalign ARGS; its exit status, and its output contains `want` */
static void expect_cli(const char *args, int rc, const char *want)
{
    char log[128], cmd[2048];
    snprintf(log, sizeof log, "%s/log", g_dir);
    snprintf(cmd, sizeof cmd, "%s %s > %s 2>&1", tu_cli_cmd(), args, log);
    int st = system(cmd);
    int got = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char *out = tu_slurp(log, NULL);
    if (got != rc || !strstr(out, want)) fail_msg("dalign %s: exit %d (want %d), output:\n%s", args, got, rc, out);
    free(out);
}

static void test_report_commands(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    char a[128], b[128], args[1024], path[256];
    write_run("xa", "abc", 10, a, sizeof a);
    write_run("xb", "abd", 90, b, sizeof b);
    /* compare: --html=OUT and --html OUT, options after the files, -q */
    snprintf(args, sizeof args, "compare %s %s --html=%s/c.html -q", a, b, g_dir);
    expect_cli(args, 0, "weights_sha256.unet.json");
    snprintf(path, sizeof path, "%s/c.html", g_dir);
    char *page = tu_slurp(path, NULL);
    assert_int_equal(count(page, "data:image/png;base64,"), 2 * P * K);
    free(page);
    snprintf(args, sizeof args, "compare --html %s/d.html %s %s", g_dir, a, b);
    expect_cli(args, 0, "wrote");
    expect_cli("compare a.json --html", 2, "--html needs a value");
    expect_cli("compare --bogus a b", 2, "unknown option '--bogus'");
    expect_cli("compare --help", 0, "--threads");
    /* winrate, table: --opt=value, and the common options */
    snprintf(args, sizeof args, "winrate --column=faithful %s -t 1 %s", a, b);
    expect_cli(args, 0, "faithful win-rate");
    expect_cli("winrate --column", 2, "--column needs a value");
    snprintf(args, sizeof args, "table --keys=faithfulness.exact,rater %s %s --labels A,B", a, b);
    expect_cli(args, 0, "| faithfulness.exact |");
    expect_cli("table --help", 0, "--quiet");
    /* plot: every numeric key of a log without --y; --keys picks */
    snprintf(path, sizeof path, "%s/t.metrics.jsonl", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int s = 1; s <= 5; s++)
        fprintf(f, "{\"step\":%d,\"loss\":%g,\"kl\":%g,\"note\":\"x\"%s}\n", s, 1.0 / s, 0.01 * s,
                s == 3 ? ",\"acc\":0.5" : "");
    fclose(f);
    snprintf(args, sizeof args, "plot %s -o %s/all.svg", path, g_dir);
    expect_cli(args, 0, "");
    snprintf(path, sizeof path, "%s/all.svg", g_dir);
    char *svg = tu_slurp(path, NULL);
    assert_non_null(strstr(svg, ">loss<"));
    assert_non_null(strstr(svg, ">kl<"));
    assert_non_null(strstr(svg, ">acc<"));   /* a key of one line only */
    assert_null(strstr(svg, ">note<"));      /* not a number */
    free(svg);
    snprintf(args, sizeof args, "plot --keys=kl --output=%s/kl.svg %s/t.metrics.jsonl", g_dir, g_dir);
    expect_cli(args, 0, "");
    snprintf(path, sizeof path, "%s/kl.svg", g_dir);
    svg = tu_slurp(path, NULL);
    assert_non_null(strstr(svg, ">kl<"));
    assert_null(strstr(svg, ">loss<"));
    free(svg);
    expect_cli("plot --smooth=0 -o x.svg y.jsonl", 2, "--smooth needs an integer");
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wilson),           cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_index_html),       cmocka_unit_test(test_metrics_provenance),
        cmocka_unit_test(test_compare_page),     cmocka_unit_test(test_report_commands),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
