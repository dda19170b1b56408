/* `dalign train ...` as a user runs it (src/cli/train*.c, issue 14): one
 * option convention for every trainer (getopt_long: --opt value and
 * --opt=value, -t/-q/-v/-h everywhere, -t 0 refused), a fresh run that
 * refuses to overwrite another run's checkpoint without --force, temp files
 * of a killed run cleaned up by the next one (and nothing else touched),
 * and --resume errors that name the file they could not use.
 *
 * The runs are `train vae` at 2 steps of 2 images (a fraction of a second);
 * under an emulator (DA_TEST_RUNNER) only the parsing checks run. */
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
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_cli_train_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

/* g_dir/name in one of 8 rotating buffers: copy what must outlive a few calls */
static const char *path_in(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* dalign ARGS; fails unless the exit status is rc and the output (stdout
 * and stderr) contains want */
static void expect_cli(const char *args, int rc, const char *want)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s > %s 2>&1", tu_cli_cmd(), args, path_in("log"));
    int st = system(cmd);
    int got = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char *out = tu_slurp(path_in("log"), NULL);
    if (got != rc || !strstr(out, want))
        fail_msg("dalign %s: exit %d (want %d), output:\n%s\n(want '%s')", args, got, rc, out, want);
    free(out);
}

static int heavy_skipped(void)
{
    const char *runner = getenv("DA_TEST_RUNNER");
    return runner && *runner;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
}

/* the smallest real run: 2 steps of 2 images, 2 images for the scale factor */
#define VAE_TINY "train vae --steps=2 --batch=2 --scale-images=2 --eval-images=1 -t 1"

/* Every trainer parses the same way: --help (with the common options),
 * unknown options, -t 0 and a missing value are usage errors (exit 2). */
static void test_every_trainer_parses_alike(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    const char *cmds[] = {"clip", "vae", "unet", "reward", "dpo", "sft", "rpo", "kto",
                          "refiner", "promptloop", "ddpo", "grpo", "raft"};
    char args[512];
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        snprintf(args, sizeof args, "train %s --help", cmds[i]);
        expect_cli(args, 0, "-t, --threads N");
        expect_cli(args, 0, "--opt=value");
        snprintf(args, sizeof args, "train %s --bogus", cmds[i]);
        expect_cli(args, 2, "unknown option '--bogus'");
        snprintf(args, sizeof args, "train %s -t 0", cmds[i]);
        expect_cli(args, 2, "-t needs an integer in [1, 4096], got '0'");
        snprintf(args, sizeof args, "train %s --threads=0", cmds[i]);
        expect_cli(args, 2, "--threads needs an integer in [1, 4096], got '0'");
        snprintf(args, sizeof args, "train %s --seed=x", cmds[i]);
        expect_cli(args, 2, "--seed needs a non-negative integer");
        snprintf(args, sizeof args, "train %s --seed", cmds[i]);
        expect_cli(args, 2, "--seed needs a value");
    }
    /* an option of another model is refused by name, in either spelling */
    expect_cli("train clip --width=8,16", 2, "--width does not apply to clip");
    expect_cli("train ddpo --kl=0.1", 2, "no such option for this method: '--kl'");
    expect_cli("train vae --lr=fast", 2, "--lr needs a number > 0, got 'fast'");
    expect_cli("train promptloop --cfg-scale=x", 2, "--cfg-scale needs a finite number, got 'x'");
    expect_cli("train vae stray", 2, "unexpected argument 'stray'");
}

/* --opt=value and -s work in a real run; -s -1 draws a seed and prints it */
static void test_opt_equals_value_run(void **state)
{
    (void)state;
    if (!tu_cli_path()[0] || heavy_skipped()) skip();
    char args[2048];
    snprintf(args, sizeof args, VAE_TINY " -s 5 --out=%s", path_in("eq"));
    expect_cli(args, 0, "seed 5,");
    assert_true(file_exists(path_in("eq/vae.safetensors")) && file_exists(path_in("eq/vae.json")));
    snprintf(args, sizeof args, VAE_TINY " --seed=-1 --out=%s --force -q", path_in("eq"));
    expect_cli(args, 0, "--seed -1: random seed");
}

/* A fresh run into a folder with another run's checkpoint: refused without
 * --force, the file left as it was; the same run rerun after it finished is
 * fine (scripts/make-weights.sh reruns whole), --force overwrites. */
static void test_another_runs_checkpoint(void **state)
{
    (void)state;
    if (!tu_cli_path()[0] || heavy_skipped()) skip();
    char dir[512], ckpt[512];
    snprintf(dir, sizeof dir, "%s", path_in("guard"));
    snprintf(ckpt, sizeof ckpt, "%s", path_in("guard/vae.ckpt"));
    char args[2048];
    snprintf(args, sizeof args, VAE_TINY " --seed 0 --out %s -q", dir);
    expect_cli(args, 0, "wrote");
    size_t n0;
    char *before = tu_slurp(ckpt, &n0);

    /* other settings (the seed): another run's checkpoint */
    snprintf(args, sizeof args, VAE_TINY " --seed 1 --out %s -q", dir);
    expect_cli(args, 1, "is another run's checkpoint (trainer 'vae' at step 2 of 2; seed 0 there, 1 in this run)");
    expect_cli(args, 1, "pass --force to overwrite it");
    size_t n1;
    char *after = tu_slurp(ckpt, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(after);

    /* another trainer's checkpoint at --ckpt: also another run's */
    snprintf(args, sizeof args, "train clip --steps 2 --out %s --ckpt %s -q", dir, ckpt);
    expect_cli(args, 1, "trainer 'vae', this run is 'clip'");

    /* not a checkpoint at all */
    touch(path_in("guard/junk.ckpt"));
    snprintf(args, sizeof args, VAE_TINY " --out %s --ckpt %s -q", dir, path_in("guard/junk.ckpt"));
    expect_cli(args, 1, "exists and is not a checkpoint of this run (unreadable as a checkpoint");
    char *junk = tu_slurp(path_in("guard/junk.ckpt"), NULL);
    assert_string_equal(junk, "x");
    free(junk);

    /* the very same run, finished: rerunning it replaces its checkpoint */
    snprintf(args, sizeof args, VAE_TINY " --seed 0 --out %s", dir);
    expect_cli(args, 0, "note: replacing");
    /* --force: another run may overwrite it */
    snprintf(args, sizeof args, VAE_TINY " --seed 1 --out %s --force -q", dir);
    expect_cli(args, 0, "wrote");
    after = tu_slurp(ckpt, &n1);
    assert_true(n0 != n1 || memcmp(before, after, n0) != 0);
    free(after);
    free(before);
}

/* NAME.*.tmp.PID of a process that is gone are removed; a live process's,
 * other models' and non-temp files are not */
static void test_stale_tmp_cleanup(void **state)
{
    (void)state;
    if (!tu_cli_path()[0] || heavy_skipped()) skip();
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path_in("stale"));
    assert_int_equal(mkdir(dir, 0755), 0);
    /* a PID that is surely dead: a child that has exited and been reaped */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    assert_true(dead > 0);
    waitpid(dead, NULL, 0);
    char stale[3][600], keep[4][600];
    snprintf(stale[0], sizeof stale[0], "%s/vae.safetensors.tmp.%ld", dir, (long)dead);
    snprintf(stale[1], sizeof stale[1], "%s/vae.ckpt.tmp.%ld", dir, (long)dead);
    snprintf(stale[2], sizeof stale[2], "%s/vae.json.new.tmp.%ld", dir, (long)dead);
    snprintf(keep[0], sizeof keep[0], "%s/vae.json.tmp.%ld", dir, (long)getpid());   /* alive: this test */
    snprintf(keep[1], sizeof keep[1], "%s/unet.safetensors.tmp.%ld", dir, (long)dead);   /* another model */
    snprintf(keep[2], sizeof keep[2], "%s/vae.tmp.notapid", dir);
    snprintf(keep[3], sizeof keep[3], "%s/vaeish.json.tmp.%ld", dir, (long)dead);   /* NAME. exactly */
    for (int i = 0; i < 3; i++) touch(stale[i]);
    for (int i = 0; i < 4; i++) touch(keep[i]);
    char args[2048];
    snprintf(args, sizeof args, VAE_TINY " --out %s", dir);
    expect_cli(args, 0, "left by a killed run");
    for (int i = 0; i < 3; i++)
        if (file_exists(stale[i])) fail_msg("stale %s was not removed", stale[i]);
    for (int i = 0; i < 4; i++)
        if (!file_exists(keep[i])) fail_msg("%s was removed", keep[i]);
}

/* --resume with a folder, an empty file, a truncated checkpoint: the
 * message names the file and says what is wrong with it */
static void test_resume_errors_name_the_file(void **state)
{
    (void)state;
    if (!tu_cli_path()[0] || heavy_skipped()) skip();
    char dir[512], args[2048], want[1200];
    snprintf(dir, sizeof dir, "%s", path_in("res"));
    snprintf(args, sizeof args, VAE_TINY " --out %s -q", dir);
    expect_cli(args, 0, "wrote");
    /* a truncated copy: the first 1000 bytes of the real checkpoint */
    size_t n;
    char *ck = tu_slurp(path_in("res/vae.ckpt"), &n);
    assert_true(n > 1000);
    FILE *f = fopen(path_in("res/trunc.ckpt"), "wb");
    assert_non_null(f);
    fwrite(ck, 1, 1000, f);
    fclose(f);
    free(ck);
    fclose(fopen(path_in("res/empty.ckpt"), "wb"));

    snprintf(args, sizeof args, VAE_TINY " --out %s -q --resume %s", dir, dir);
    snprintf(want, sizeof want, "cannot resume from %s: it is a directory", dir);
    expect_cli(args, 1, want);
    snprintf(args, sizeof args, VAE_TINY " --out %s -q --resume=%s", dir, path_in("res/empty.ckpt"));
    snprintf(want, sizeof want, "cannot resume from %s: the file is empty", path_in("res/empty.ckpt"));
    expect_cli(args, 1, want);
    snprintf(args, sizeof args, VAE_TINY " --out %s -q --resume %s", dir, path_in("res/trunc.ckpt"));
    snprintf(want, sizeof want, "cannot resume from %s: ", path_in("res/trunc.ckpt"));
    expect_cli(args, 1, want);
    expect_cli(args, 1, "truncated or damaged");
    /* train reward goes through the same harness */
    snprintf(args, sizeof args, "train reward --steps 1 --out %s -q --resume %s", dir, path_in("res/empty.ckpt"));
    snprintf(want, sizeof want, "cannot resume from %s: the file is empty", path_in("res/empty.ckpt"));
    expect_cli(args, 1, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_trainer_parses_alike),
        cmocka_unit_test(test_opt_equals_value_run),
        cmocka_unit_test(test_another_runs_checkpoint),
        cmocka_unit_test(test_stale_tmp_cleanup),
        cmocka_unit_test(test_resume_errors_name_the_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
