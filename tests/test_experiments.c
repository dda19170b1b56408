/* The experiment suite (scripts/experiments.sh, `make experiments`, issue
 * 13) at toy size, so that it cannot rot: SMOKE=1 runs every stage (RL on
 * the refiner and on the weights, transfer, composition, over-optimisation,
 * the preference stage, the report) from the shipped weights in about half
 * a minute on 2 cores. Checked: every stage's models and evaluations are
 * finished, the report holds every section and one claim row per claim with
 * a verdict from the four the report defines, a finished step is cached (a
 * second run redoes only the evaluation whose DONE marker was removed), and
 * sizes that break the equal-rollouts rule are refused before any work.
 *
 * Needs weights/ (skipped without them) and the native binary (skipped under
 * an emulator: the suite's hundreds of sampling runs would take hours). */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_experiments_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* why the suite cannot run here, or NULL */
static const char *skip_reason(void)
{
    const char *runner = getenv("DA_TEST_RUNNER");
    if (runner && *runner) return "under an emulator (DA_TEST_RUNNER)";
    if (!tu_cli_path()[0]) return "no dalign binary next to the tests";
    if (!file_exists("weights/refiner-ref.safetensors") || !file_exists("weights/unet-dpo.safetensors"))
        return "no shipped weights (weights/refiner-ref, weights/unet-dpo)";
    return NULL;
}

/* skips the test (cmocka's skip() leaves it) when the suite cannot run */
static void skip_unless_runnable(void)
{
    const char *why = skip_reason();
    if (why) {
        printf("skipped: %s\n", why);
        skip();
    }
}

/* ENV sh scripts/experiments.sh > g_dir/LOG 2>&1; returns the exit status
 * and leaves the log in *log (malloc'd) */
static int run_suite(const char *env, const char *log_name, char **log)
{
    char cmd[2048], log_path[256];
    snprintf(log_path, sizeof log_path, "%s/%s", g_dir, log_name);
    snprintf(cmd, sizeof cmd, "%s OUT=%s/suite DALIGN=%s THREADS=1 sh scripts/experiments.sh > %s 2>&1", env, g_dir,
             tu_cli_path(), log_path);
    int st = system(cmd);
    *log = tu_slurp(log_path, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void test_smoke_suite_runs_every_stage_and_caches(void **state)
{
    (void)state;
    skip_unless_runnable();
    char *log;
    int rc = run_suite("SMOKE=1", "first.log", &log);
    if (rc != 0) fail_msg("experiments.sh SMOKE=1 exited %d:\n%s", rc, log);
    free(log);

    char path[512];
    /* every trained model of stages i and iv is finished */
    const char *models[] = {"loop", "once", "ddpo", "grpo", "raft", "oo-pl-pref-2", "oo-ddpo-pref-2",
                            "oo-grpo-pref-2", "oo-pl-jpeg-neg-2", "oo-ddpo-jpeg-neg-2", "oo-grpo-jpeg-neg-2"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        snprintf(path, sizeof path, "%s/suite-smoke/models/%s.done", g_dir, models[i]);
        if (!file_exists(path)) fail_msg("missing %s", path);
        snprintf(path, sizeof path, "%s/suite-smoke/models/%s.safetensors", g_dir, models[i]);
        if (!file_exists(path)) fail_msg("missing %s", path);
    }
    /* every evaluation of stages i-iii is complete */
    const char *evals[] = {"base", "ref-loop", "loop", "once", "ddpo", "grpo", "raft", "unet-b", "unet-b-loop",
                           "unet-dpo", "unet-dpo-loop"};
    for (size_t i = 0; i < sizeof evals / sizeof evals[0]; i++)
        for (int s = 0; s < 2; s++) {
            snprintf(path, sizeof path, "%s/suite-smoke/eval/%s-%s/DONE", g_dir, evals[i], s ? "heldout" : "heldin");
            if (!file_exists(path)) fail_msg("missing %s", path);
        }

    /* the report: its sections, the smoke warning, the figures */
    snprintf(path, sizeof path, "%s/suite-smoke/report/results.md", g_dir);
    char *report = tu_slurp(path, NULL);
    const char *sections[] = {"## Claims", "## (i) Reward optimisation", "## (ii) Transfer", "## (iii) Composition",
                              "## (iv) Over-optimisation", "## Preference claims", "## Wall time per stage",
                              "SMOKE=1: toy sizes", "curves-faithful.svg", "frontier-pref.svg", "overopt-jpeg-neg.svg"};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        if (!strstr(report, sections[i])) fail_msg("results.md lacks '%s'", sections[i]);
    free(report);
    const char *figures[] = {"curves-faithful.svg", "frontier-pref.svg", "overopt-pref.svg", "grids.html",
                             "grid-loop-heldout.png"};
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++) {
        snprintf(path, sizeof path, "%s/suite-smoke/report/%s", g_dir, figures[i]);
        if (!file_exists(path)) fail_msg("missing %s", path);
    }

    /* claims.tsv: claim <TAB> verdict <TAB> evidence, one row per claim
     * (5 of (i), (ii), (iii), 2 of (iv), 2 preference claims) */
    snprintf(path, sizeof path, "%s/suite-smoke/report/claims.tsv", g_dir);
    char *claims = tu_slurp(path, NULL);
    int rows = 0;
    for (char *save = NULL, *line = strtok_r(claims, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tab1 = strchr(line, '\t');
        char *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        if (!tab2) fail_msg("claims.tsv row without 3 fields: %s", line);
        *tab2 = '\0';
        const char *v = tab1 + 1;
        if (strcmp(v, "reproduced") && strcmp(v, "not reproduced") && strcmp(v, "inconclusive") && strcmp(v, "mixed"))
            fail_msg("claims.tsv: unknown verdict '%s'", v);
        if (!strstr(tab2 + 1, "[")) fail_msg("claims.tsv: a verdict without an interval: %s", tab2 + 1);
        rows++;
    }
    free(claims);
    assert_int_equal(rows, 11);

    /* a second run: every step cached but the evaluation whose marker is gone */
    snprintf(path, sizeof path, "%s/suite-smoke/eval/once-heldout/DONE", g_dir);
    assert_int_equal(unlink(path), 0);
    rc = run_suite("SMOKE=1", "second.log", &log);
    if (rc != 0) fail_msg("the second run exited %d:\n%s", rc, log);
    if (!strstr(log, "eval once on heldout prompts")) fail_msg("the removed evaluation was not redone:\n%s", log);
    if (strstr(log, "(resuming)") || count_lines_with(log, "on heldin prompts") || strstr(log, "pref: scripts/"))
        fail_msg("the second run redid finished work:\n%s", log);
    if (count_lines_with(log, "prompts\n") != 1) fail_msg("the second run ran other evaluations:\n%s", log);
    assert_true(file_exists(path));
    free(log);
}

static void test_unequal_rollouts_refused_before_any_work(void **state)
{
    (void)state;
    skip_unless_runnable();
    char *log;
    int rc = run_suite("PL_Q=3", "unequal.log", &log);
    assert_int_equal(rc, 2);
    if (!strstr(log, "equal rollouts")) fail_msg("no reason given:\n%s", log);
    free(log);
    char path[512];
    snprintf(path, sizeof path, "%s/suite", g_dir);
    assert_false(file_exists(path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_smoke_suite_runs_every_stage_and_caches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unequal_rollouts_refused_before_any_work, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
