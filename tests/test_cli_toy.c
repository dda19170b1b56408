/* `dalign toy` as a user runs it (src/cli/toy.c): one convention for its
 * options (getopt_long: --opt value and --opt=value), bounds that refuse
 * what would exhaust memory (issue 14: --batch 2147483647 segfaulted), the
 * output path checked before the training, and a short run that saves and
 * reloads its weights to the same bits. */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_toy_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

/* dalign toy ARGS; its exit status, and its output contains `want` */
static void expect_toy(const char *args, int rc, const char *want)
{
    char log[128], cmd[1024];
    snprintf(log, sizeof log, "%s/log", g_dir);
    snprintf(cmd, sizeof cmd, "%s toy %s > %s 2>&1", tu_cli_cmd(), args, log);
    int st = system(cmd);
    int got = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char *out = tu_slurp(log, NULL);
    if (got != rc || !strstr(out, want)) fail_msg("dalign toy %s: exit %d (want %d), output:\n%s", args, got, rc, out);
    free(out);
}

static void test_toy_cli(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();   /* the suite was run without the dalign binary next to it */
    expect_toy("--batch 2147483647", 2, "--batch needs an integer in [1, 65536]");
    expect_toy("--batch=0", 2, "--batch needs an integer in [1, 65536]");
    expect_toy("--steps", 2, "--steps needs a value");
    expect_toy("-t 0", 2, "-t needs an integer in [1, 4096], got '0'");
    expect_toy("--seed=-1 --steps=abc", 2, "--seed -1: random seed");
    expect_toy("--bogus", 2, "unknown option '--bogus'");
    expect_toy("stray", 2, "unexpected argument 'stray'");
    expect_toy("--help", 0, "--opt=value");
    char args[512];
    /* an unwritable output fails at once, before any training line */
    snprintf(args, sizeof args, "--steps 100000 -o %s/missing/dir/toy.st", g_dir);
    expect_toy(args, 1, "cannot write -o");
    /* the training run takes 2 minutes under qemu (.ci/run's aarch64 stage
     * sets DA_TEST_RUNNER); its arithmetic is the op suites' there */
    const char *runner = getenv("DA_TEST_RUNNER");
    if (runner && *runner) return;
    snprintf(args, sizeof args, "--steps=60 --batch=32 --output=%s/toy.st", g_dir);
    expect_toy(args, 0, "reloaded weights sample the same bits");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toy_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
