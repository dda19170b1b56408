/* The report tools' numbers: `dalign winrate` (src/eval/winrate.c,
 * src/cli/winrate.c) on hand-written images.tsv files with a hand-computed
 * answer and interval, rows that are not the same images refused with the
 * first differing one named, malformed files; `dalign table`
 * (src/cli/table.c) printing the expected cells for two small metrics.json
 * files. */
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
#include "dalign.h"

#define Z95 1.959963984540054

/* |got - want| <= tol, naming the expression (this cmocka has no
 * assert_double_equal) */
#define assert_near(got, want, tol) near_or_fail(#got, (got), (want), (tol))
static void near_or_fail(const char *what, double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol)) fail_msg("%s = %.17g, want %.17g (tolerance %g)", what, got, want, tol);
}

static char g_dir[64];

static const char *tmp_path(const char *name)
{
    static char buf[4][400];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_winrate_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

#define HEADER "prompt_index\tk\tseed\tprompt\tpref\trater\tobjects\n"

/* 3 prompts x 2 seeds. rater, model vs base, image by image:
 *   prompt 0: 6 vs 5 (win), 6 vs 6 (tie)     wins 1.5, diff  1
 *   prompt 1: 6.5 vs 7 (loss), 9 vs 8 (win)  wins 1,   diff  0.5
 *   prompt 2: 5 vs 4 (win), 3.5 vs 4 (loss)  wins 1,   diff  0.5
 * pref: the model higher on every image. */
static const char *BASE_TSV = HEADER
    "0\t0\t100\ta red circle\t1\t5\t1\n"
    "0\t1\t101\ta red circle\t1\t6\t1\n"
    "1\t0\t356\ta blue square\t2\t7\t1\n"
    "1\t1\t357\ta blue square\t2\t8\t1\n"
    "2\t0\t612\ta small green triangle\t3\t4\t1\n"
    "2\t1\t613\ta small green triangle\t3\t4\t2\n";
static const char *MODEL_TSV = HEADER
    "0\t0\t100\ta red circle\t1.5\t6\t1\n"
    "0\t1\t101\ta red circle\t1.5\t6\t1\n"
    "1\t0\t356\ta blue square\t2.5\t6.5\t1\n"
    "1\t1\t357\ta blue square\t2.5\t9\t1\n"
    "2\t0\t612\ta small green triangle\t3.5\t5\t1\n"
    "2\t1\t613\ta small green triangle\t3.5\t3.5\t1\n";

static void assert_stat(const char *what, const da_eval_stat *got, const da_eval_stat *want)
{
    if (got->mean != want->mean || got->half != want->half || got->n != want->n)
        fail_msg("%s: %.17g +- %.17g (n %ld), want %.17g +- %.17g (n %ld)", what, got->mean, got->half, got->n,
                 want->mean, want->half, want->n);
}

static void compute_ok(const char *base, const char *model, const char *column, da_winrate *w)
{
    if (da_winrate_compute(base, model, column, w) != DA_OK) fail_msg("winrate: %s", da_last_error());
}

/* The answer worked out by hand: win-rate 3.5 / 6 and mean difference 2 / 6.
 * Both have residuals s_i - r n_i of (1/3, -1/6, -1/6), so sum e^2 = 1/6 and
 * half = Z95 sqrt(1/6 * 3/2) / 6 = Z95 / 12; and the same bits as
 * da_eval_cluster_mean on the per-prompt sums. */
static void test_known_answer(void **state)
{
    (void)state;
    write_text(tmp_path("base.tsv"), BASE_TSV);
    write_text(tmp_path("model.tsv"), MODEL_TSV);
    da_winrate w;
    compute_ok(tmp_path("base.tsv"), tmp_path("model.tsv"), "rater", &w);
    assert_int_equal(w.n_images, 6);
    assert_int_equal(w.n_prompts, 3);
    assert_near(w.win.mean, 3.5 / 6.0, 1e-15);
    assert_near(w.win.half, Z95 / 12.0, 1e-15);
    assert_near(w.diff.mean, 2.0 / 6.0, 1e-15);
    assert_near(w.diff.half, Z95 / 12.0, 1e-15);
    const double wins[3] = {1.5, 1.0, 1.0}, diffs[3] = {1.0, 0.5, 0.5}, counts[3] = {2, 2, 2};
    da_eval_stat want_win = da_eval_cluster_mean(wins, counts, 3);
    da_eval_stat want_diff = da_eval_cluster_mean(diffs, counts, 3);
    assert_stat("win", &w.win, &want_win);
    assert_stat("diff", &w.diff, &want_diff);

    /* another column: the model wins every image, every prompt alike */
    compute_ok(tmp_path("base.tsv"), tmp_path("model.tsv"), "pref", &w);
    assert_near(w.win.mean, 1.0, 0.0);
    assert_near(w.win.half, 0.0, 0.0);
    assert_near(w.diff.mean, 0.5, 1e-15);

    /* a run against itself: every image a tie */
    compute_ok(tmp_path("model.tsv"), tmp_path("model.tsv"), "rater", &w);
    assert_near(w.win.mean, 0.5, 0.0);
    assert_near(w.win.half, 0.0, 0.0);
    assert_near(w.diff.mean, 0.0, 0.0);
}

/* Clusters are prompts, not runs of adjacent rows: the same images in
 * another (shared) order give the same sums, so the same answer. */
static void test_clusters_by_prompt_index(void **state)
{
    (void)state;
    write_text(tmp_path("base2.tsv"), HEADER
               "2\t1\t613\ta small green triangle\t3\t4\t2\n"
               "0\t0\t100\ta red circle\t1\t5\t1\n"
               "1\t0\t356\ta blue square\t2\t7\t1\n"
               "2\t0\t612\ta small green triangle\t3\t4\t1\n"
               "0\t1\t101\ta red circle\t1\t6\t1\n"
               "1\t1\t357\ta blue square\t2\t8\t1\n");
    write_text(tmp_path("model2.tsv"), HEADER
               "2\t1\t613\ta small green triangle\t3.5\t3.5\t1\n"
               "0\t0\t100\ta red circle\t1.5\t6\t1\n"
               "1\t0\t356\ta blue square\t2.5\t6.5\t1\n"
               "2\t0\t612\ta small green triangle\t3.5\t5\t1\n"
               "0\t1\t101\ta red circle\t1.5\t6\t1\n"
               "1\t1\t357\ta blue square\t2.5\t9\t1\n");
    da_winrate w;
    compute_ok(tmp_path("base2.tsv"), tmp_path("model2.tsv"), "rater", &w);
    assert_int_equal(w.n_prompts, 3);
    assert_near(w.win.mean, 3.5 / 6.0, 1e-15);
    assert_near(w.win.half, Z95 / 12.0, 1e-12);
    assert_near(w.diff.half, Z95 / 12.0, 1e-12);
}

static void assert_refused(const char *base_text, const char *model_text, const char *column, da_status want,
                           const char *const *needles)
{
    write_text(tmp_path("rb.tsv"), base_text);
    write_text(tmp_path("rm.tsv"), model_text);
    da_winrate w;
    da_status s = da_winrate_compute(tmp_path("rb.tsv"), tmp_path("rm.tsv"), column, &w);
    if (s != want) fail_msg("status %d, want %d (%s)", s, want, da_last_error());
    for (int i = 0; needles[i]; i++)
        if (!strstr(da_last_error(), needles[i])) fail_msg("'%s' not in: %s", needles[i], da_last_error());
}

/* Rows that are not the same images: the first differing one is named,
 * with both files and lines. */
static void test_mismatch_refused(void **state)
{
    (void)state;
    char other_seed[1024], other_prompt[1024];
    snprintf(other_seed, sizeof other_seed, "%s", MODEL_TSV);
    char *p = strstr(other_seed, "\t357\t");   /* image 4's seed */
    memcpy(p, "\t358\t", 5);
    assert_refused(BASE_TSV, other_seed, "rater", DA_ERR_INVALID,
                   (const char *const[]){"image 4", "seed 357", "seed 358", "rb.tsv:5", "rm.tsv:5", NULL});

    snprintf(other_prompt, sizeof other_prompt, "%s", MODEL_TSV);
    p = strstr(other_prompt, "a blue square");
    memcpy(p, "a blue circle", 13);
    assert_refused(BASE_TSV, other_prompt, "rater", DA_ERR_INVALID,
                   (const char *const[]){"image 3", "'a blue square'", "'a blue circle'", NULL});

    /* one run with an image fewer */
    char shorter[1024];
    snprintf(shorter, sizeof shorter, "%s", MODEL_TSV);
    *(strstr(shorter, "2\t1\t613")) = '\0';
    assert_refused(BASE_TSV, shorter, "rater", DA_ERR_INVALID,
                   (const char *const[]){"6 images", "5", "image 6", "seed 613", NULL});
}

static void test_malformed_refused(void **state)
{
    (void)state;
    assert_refused(BASE_TSV, MODEL_TSV, "ratr", DA_ERR_FORMAT,
                   (const char *const[]){"no column 'ratr'", "rater", "rb.tsv", NULL});
    assert_refused(BASE_TSV, HEADER "0\t0\t100\ta red circle\t1\tnan\t1\n", "rater", DA_ERR_FORMAT,
                   (const char *const[]){"rm.tsv:2", "rater", "'nan'", NULL});
    assert_refused(BASE_TSV, HEADER "0\t0\t100\ta red circle\t1\t1\n", "rater", DA_ERR_FORMAT,
                   (const char *const[]){"rm.tsv:2", "6 fields", "7", NULL});
    assert_refused(BASE_TSV, HEADER "x\t0\t100\ta red circle\t1\t1\t1\n", "rater", DA_ERR_FORMAT,
                   (const char *const[]){"rm.tsv:2", "integers", NULL});
    assert_refused(BASE_TSV, HEADER, "rater", DA_ERR_FORMAT, (const char *const[]){"no images", NULL});
    assert_refused(BASE_TSV, "", "rater", DA_ERR_FORMAT, (const char *const[]){"empty", NULL});
    da_winrate w;
    assert_int_equal(da_winrate_compute(tmp_path("missing.tsv"), tmp_path("rm.tsv"), "rater", &w), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "missing.tsv"));
}

/* The JSON parses strictly and holds the numbers. */
static void test_json(void **state)
{
    (void)state;
    write_text(tmp_path("base.tsv"), BASE_TSV);
    write_text(tmp_path("model.tsv"), MODEL_TSV);
    da_winrate w;
    compute_ok(tmp_path("base.tsv"), tmp_path("model.tsv"), "rater", &w);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    da_winrate_json(f, &w, "rater", "runs/base", "runs/\"dpo\"");
    fclose(f);
    da_flat_metrics m;
    if (da_flat_metrics_parse(buf, len, &m) != DA_OK) fail_msg("%s\n%s", da_last_error(), buf);
    assert_near(da_flat_metrics_find(&m, "win_rate.mean")->value, 3.5 / 6.0, 1e-9);
    /* the win-rate is a share: the Wilson interval at the effective sample
     * size p (1 - p) / var = p (1 - p) 144 (var = (half / Z95)^2 = 1/144) */
    double p = 3.5 / 6.0, ne = p * (1.0 - p) * 144.0, z2 = Z95 * Z95, d = 1.0 + z2 / ne;
    double centre = (p + z2 / (2.0 * ne)) / d, hw = Z95 * sqrt(p * (1.0 - p) / ne + z2 / (4.0 * ne * ne)) / d;
    assert_near(da_flat_metrics_find(&m, "win_rate.ci95.0")->value, centre - hw, 1e-9);
    assert_near(da_flat_metrics_find(&m, "win_rate.ci95.1")->value, centre + hw, 1e-9);
    assert_true(centre - hw > 0.41 && centre + hw < 0.74);   /* [0.4198, 0.7304], not 0.5833 +- 0.1633 */
    assert_near(da_flat_metrics_find(&m, "diff.ci95.0")->value, 2.0 / 6.0 - Z95 / 12.0, 1e-9);   /* unbounded */
    assert_near(da_flat_metrics_find(&m, "win_rate.n")->value, 6.0, 0.0);
    assert_near(da_flat_metrics_find(&m, "diff.mean")->value, 2.0 / 6.0, 1e-9);
    assert_near(da_flat_metrics_find(&m, "prompts")->value, 3.0, 0.0);
    assert_near(da_flat_metrics_find(&m, "images")->value, 6.0, 0.0);
    assert_non_null(strstr(buf, "\"column\": \"rater\""));
    assert_non_null(strstr(buf, "\"model\": \"runs/\\\"dpo\\\"\""));
    da_flat_metrics_free(&m);
    free(buf);
}

/* ---- the commands, as a user runs them ------------------------------------ */

/* dalign ARGS, stdout in DIR/out and stderr in DIR/err; the exit status */
static int run_dalign(const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s > %s 2> %s", tu_cli_cmd(), args, tmp_path("out"), tmp_path("err"));
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void assert_file_has(const char *name, const char *want)
{
    char *text = tu_slurp(tmp_path(name), NULL);
    if (!strstr(text, want)) fail_msg("expected \"%s\" in %s:\n%s", want, name, text);
    free(text);
}

static void test_winrate_command(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();   /* the suite was run without the dalign binary next to it */
    mkdir(tmp_path("base"), 0755);
    mkdir(tmp_path("dpo"), 0755);
    write_text(tmp_path("base/images.tsv"), BASE_TSV);
    write_text(tmp_path("dpo/images.tsv"), MODEL_TSV);
    char args[2048];
    snprintf(args, sizeof args, "winrate %s %s --json %s", tmp_path("base"), tmp_path("dpo"), tmp_path("w.json"));
    assert_int_equal(run_dalign(args), 0);
    assert_file_has("out", "rater win-rate of");
    assert_file_has("out", "0.5833 [0.4198, 0.7304]");   /* Wilson (see test_json) */
    assert_file_has("out", "6 images, 3 prompts");
    assert_file_has("w.json", "\"win_rate\": {\"mean\": 0.583333333");

    snprintf(args, sizeof args, "winrate %s %s --column pref", tmp_path("base"), tmp_path("dpo/images.tsv"));
    assert_int_equal(run_dalign(args), 0);
    assert_file_has("out", "pref win-rate");
    assert_file_has("out", "1.0000 [0.6097, 1.0000]");   /* 6 of 6: Wilson, 6 / (6 + z^2) below */

    write_text(tmp_path("dpo/images.tsv"), HEADER "0\t0\t100\ta red circle\t1\t5\t1\n");
    snprintf(args, sizeof args, "winrate %s %s --json %s", tmp_path("base"), tmp_path("dpo"), tmp_path("w2.json"));
    assert_int_equal(run_dalign(args), 1);
    assert_file_has("err", "image 2");
    assert_true(access(tmp_path("w2.json"), F_OK) != 0);

    assert_int_equal(run_dalign("winrate --help"), 0);
    assert_file_has("out", "--column NAME");
    assert_int_equal(run_dalign("winrate onlyone"), 2);
    assert_int_equal(run_dalign("winrate a b --bogus"), 2);
    assert_file_has("err", "--bogus");
    assert_int_equal(run_dalign("winrate a b --column"), 2);
}

static const char *METRICS_A =
    "{\"format\": \"dalign-eval-1\", \"images\": 800,\n"
    " \"rewards\": {\"pref\": {\"mean\": 5.41530094, \"ci95\": [5.09756927, 5.7330326], \"n\": 800}},\n"
    " \"faithfulness\": {\"mean\": 0.861095241, \"ci95\": [0.844375453, 0.877815029], \"n\": 800,\n"
    "   \"clauses\": {\"colour\": {\"mean\": 0.977124183, \"ci95\": [0.967953208, 0.986295158], \"n\": 1224}}},\n"
    " \"diversity\": {\"mean\": null, \"ci95\": null, \"n\": 0},\n"
    " \"rater\": {\"mean\": 8.48478226, \"ci95\": [8.35928591, 8.61027861], \"n\": 800}}\n";
static const char *METRICS_B =
    "{\"images\": 400,\n"
    " \"faithfulness\": {\"mean\": 0.9, \"ci95\": [0.85, 0.95], \"n\": 400},\n"
    " \"diversity\": {\"mean\": 0.0873411326, \"ci95\": [0.0795194346, 0.0951628305]},\n"
    " \"rater\": {\"mean\": 9.125, \"ci95\": [9, 9.25], \"n\": 400}}\n";

static void test_table_command(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    mkdir(tmp_path("run-a"), 0755);
    mkdir(tmp_path("run-b"), 0755);
    write_text(tmp_path("run-a/metrics.json"), METRICS_A);
    write_text(tmp_path("run-b/metrics.json"), METRICS_B);
    char args[2048];
    snprintf(args, sizeof args, "table --keys rater,rewards.pref,faithfulness.clauses.colour,diversity,images %s %s",
             tmp_path("run-a/metrics.json"), tmp_path("run-b"));
    assert_int_equal(run_dalign(args), 0);
    char *out = tu_slurp(tmp_path("out"), NULL);
    const char *want = "| metric | run-a | run-b |\n"
                       "|---|---|---|\n"
                       "| rater | 8.485 [8.359, 8.61] | 9.125 [9, 9.25] |\n"
                       "| rewards.pref | 5.415 [5.098, 5.733] | - |\n"
                       "| faithfulness.clauses.colour | 0.9771 [0.968, 0.9863] | - |\n"
                       "| diversity | - | 0.08734 [0.07952, 0.09516] |\n"
                       "| images | 800 | 400 |\n";
    if (strcmp(out, want)) fail_msg("got:\n%s\nwant:\n%s", out, want);
    free(out);

    /* default keys, labels given: 2 header lines + 11 rows; a key no file has is named */
    snprintf(args, sizeof args, "table --labels 'base|x',DPO %s %s", tmp_path("run-a"), tmp_path("run-b"));
    assert_int_equal(run_dalign(args), 0);
    out = tu_slurp(tmp_path("out"), NULL);
    int lines = 0;
    for (const char *c = out; *c; c++) lines += *c == '\n';
    assert_int_equal(lines, 13);
    assert_non_null(strstr(out, "| metric | base\\|x | DPO |\n"));
    assert_non_null(strstr(out, "| faithfulness | 0.8611 [0.8444, 0.8778] | 0.9 [0.85, 0.95] |\n"));
    assert_non_null(strstr(out, "| rewards.clip | - | - |\n"));
    free(out);
    assert_file_has("err", "no file has 'rewards.clip'");

    snprintf(args, sizeof args, "table %s %s", tmp_path("run-a"), tmp_path("nowhere/metrics.json"));
    assert_int_equal(run_dalign(args), 1);
    assert_file_has("err", "nowhere/metrics.json");
    snprintf(args, sizeof args, "table --labels one %s %s", tmp_path("run-a"), tmp_path("run-b"));
    assert_int_equal(run_dalign(args), 2);
    assert_file_has("err", "1 labels for 2 files");
    assert_int_equal(run_dalign("table --keys a,,b x.json"), 2);
    assert_int_equal(run_dalign("table"), 2);
    assert_int_equal(run_dalign("table --help"), 0);
    assert_file_has("out", "--keys");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_clusters_by_prompt_index),
        cmocka_unit_test(test_mismatch_refused),
        cmocka_unit_test(test_malformed_refused),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_winrate_command),
        cmocka_unit_test(test_table_command),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
