/* The one command-line convention (src/cli/cli.h, getopt_long) as a user
 * meets it in sample, reward, eval, eval-base, pairs and inspect, over a temp
 * weights directory of tiny random models: --opt=value is --opt value (the
 * same image bytes), the stable-diffusion.cpp aliases are the same options,
 * -t 0 / unknown options / a missing value are usage errors naming the
 * option, -q silences stderr, --seed -1 prints a seed that reproduces the
 * run; sample checks every output before sampling and writes its files as a
 * set; reward reads integer upscales and warns about unknown words. */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stb/stb_image_write.h>

static char g_dir[64];

static const char *tmp_path(const char *name)
{
    static char buf[8][400];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_conv_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    return tu_tiny_weights(tmp_path("w"));
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

/* dalign CMD ARGS with stdout in DIR/out and stderr in DIR/err; the exit status */
static int run(const char *cmd, const char *args)
{
    char line[8192];
    snprintf(line, sizeof line, "%s %s %s > %s 2> %s", tu_cli_cmd(), cmd, args, tmp_path("out"), tmp_path("err"));
    int rc = system(line);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp_err(size_t *n) { return tu_slurp(tmp_path("err"), n); }

static void assert_err_has(const char *want)
{
    char *err = slurp_err(NULL);
    if (!strstr(err, want)) fail_msg("expected \"%s\" on stderr:\n%s", want, err);
    free(err);
}

static void assert_err_lacks(const char *unwanted)
{
    char *err = slurp_err(NULL);
    if (strstr(err, unwanted)) fail_msg("did not expect \"%s\" on stderr:\n%s", unwanted, err);
    free(err);
}

static void assert_same_file(const char *a, const char *b)
{
    if (!tu_same_file(a, b)) fail_msg("%s and %s differ", a, b);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* a tiny sample: dalign sample --weights W -p 'a red circle' EXTRA -o DIR/out */
static int sample(const char *extra, const char *out)
{
    char args[2048];
    snprintf(args, sizeof args, "--weights %s -p 'a red circle' --steps 2 %s -o %s", tmp_path("w"), extra,
             tmp_path(out));
    return run("sample", args);
}

static void test_equals_form_and_aliases(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();   /* the suite was run without the dalign binary next to it */
    assert_int_equal(sample("--cfg 2 --sampler euler --seed 7", "spaced.png"), 0);
    char args[2048];
    snprintf(args, sizeof args, "--weights=%s --prompt='a red circle' --steps=2 --cfg-scale=2 "
             "--sampling-method=euler -s7 --output=%s", tmp_path("w"), tmp_path("equals.png"));
    assert_int_equal(run("sample", args), 0);
    assert_same_file(tmp_path("spaced.png"), tmp_path("equals.png"));
    /* and the options count: another cfg gives other bytes */
    assert_int_equal(sample("--cfg=5 --sampler=euler --seed=7", "other.png"), 0);
    size_t na, nb;
    char *x = tu_slurp(tmp_path("spaced.png"), &na), *y = tu_slurp(tmp_path("other.png"), &nb);
    assert_true(na != nb || memcmp(x, y, na) != 0);
    free(x);
    free(y);
}

/* -t 0, an unknown option and a missing value: exit 2 with the option named, in every command */
static void test_usage_errors(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    static const char *const cmds[] = {"sample", "reward", "eval", "eval-base", "pairs", "inspect"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        assert_int_equal(run(cmds[i], "-t 0 x"), 2);
        assert_err_has("-t needs an integer in [1,");
        assert_int_equal(run(cmds[i], "--threads=0 x"), 2);
        assert_err_has("--threads needs an integer in [1,");
        assert_int_equal(run(cmds[i], "--bogus x"), 2);
        assert_err_has("unknown option '--bogus'");
        assert_int_equal(run(cmds[i], "x --threads"), 2);
        assert_err_has("--threads needs a value");
        assert_int_equal(run(cmds[i], "--help"), 0);
        char *out = tu_slurp(tmp_path("out"), NULL);
        if (!strstr(out, "-q, --quiet")) fail_msg("dalign %s --help lacks the common options:\n%s", cmds[i], out);
        free(out);
    }
    const char *missing[][2] = {{"sample", "--steps"}, {"sample", "--seed"}, {"reward", "--reward"},
                                {"eval", "--seeds"},   {"eval-base", "--batch"}, {"pairs", "--n"}};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        assert_int_equal(run(missing[i][0], missing[i][1]), 2);
        char want[64];
        snprintf(want, sizeof want, "%s needs a value", missing[i][1]);
        assert_err_has(want);
    }
    /* eval's --prompts names the prompts; eval-base's number of prompts is --n-prompts */
    assert_int_equal(run("eval-base", "--prompts heldin"), 2);
    assert_err_has("--n-prompts N");
    assert_int_equal(run("eval-base", "--n-prompts=0"), 2);
    assert_err_has("--n-prompts needs an integer");
}

static void test_quiet_and_verbose(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    size_t n;
    /* -q keeps the errors */
    assert_int_equal(sample("-q --latents /dev/null/x.safetensors", "quiet.png"), 1);
    assert_err_has("/dev/null/x.safetensors");
    assert_int_equal(sample("-q", "quiet.png"), 0);
    free(slurp_err(&n));
    assert_int_equal(n, 0);   /* nothing on stderr */
    assert_true(exists(tmp_path("quiet.png")));
    /* -q before the command's name is the same */
    char args[1024];
    snprintf(args, sizeof args, "--weights %s -p 'a red circle' --steps 2 -o %s", tmp_path("w"),
             tmp_path("quiet2.png"));
    assert_int_equal(run("-q sample", args), 0);
    free(slurp_err(&n));
    assert_int_equal(n, 0);
    assert_same_file(tmp_path("quiet.png"), tmp_path("quiet2.png"));
    /* without -q: the resolved options and the file written */
    assert_int_equal(sample("", "loud.png"), 0);
    assert_err_has("sampler   ddim, steps 2, cfg 3");
    assert_err_has("wrote ");
    assert_err_has("loud.png");
    assert_same_file(tmp_path("quiet.png"), tmp_path("loud.png"));
    /* the reward's warning is quiet with -q too */
    snprintf(args, sizeof args, "--weights %s --reward clip -p 'a xyzzy circle' -q %s", tmp_path("w"),
             tmp_path("quiet.png"));
    assert_int_equal(run("reward", args), 0);
    free(slurp_err(&n));
    assert_int_equal(n, 0);
}

/* --seed -1 draws a seed, prints it, and that seed reproduces the image */
static void test_random_seed(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    assert_int_equal(sample("--seed -1", "random.png"), 0);
    char *err = slurp_err(NULL);
    const char *at = strstr(err, "random seed ");
    if (!at) fail_msg("no seed printed:\n%s", err);
    unsigned long long seed = strtoull(at + strlen("random seed "), NULL, 10);
    free(err);
    char extra[64];
    snprintf(extra, sizeof extra, "--seed %llu", seed);
    assert_int_equal(sample(extra, "again.png"), 0);
    assert_same_file(tmp_path("random.png"), tmp_path("again.png"));
}

/* outputs are checked before the weights load and the sampling: with no
 * weights at all, a bad output is what the run reports */
static void test_sample_checks_outputs_first(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    char args[2048];
    snprintf(args, sizeof args, "--weights %s -p 'a red circle' --n 300 --grid --scale 64 -o %s",
             tmp_path("nowhere"), tmp_path("huge.png"));
    assert_int_equal(run("sample", args), 2);
    assert_err_has("more than 32768");
    assert_err_lacks("nowhere");
    /* a directory where OUT-1.png goes: refused before sampling, OUT-0.png never written */
    assert_int_equal(mkdir(tmp_path("set-1.png"), 0755), 0);
    snprintf(args, sizeof args, "--weights %s -p 'a red circle' --n 3 -o %s", tmp_path("nowhere"),
             tmp_path("set.png"));
    assert_int_equal(run("sample", args), 1);
    assert_err_has("set-1.png: it is a directory");
    assert_false(exists(tmp_path("set-0.png")));
    /* an unwritable --latents */
    snprintf(args, sizeof args, "--weights %s -p 'a red circle' --latents %s -o %s", tmp_path("nowhere"),
             tmp_path("no/such/dir/l.safetensors"), tmp_path("one.png"));
    assert_int_equal(run("sample", args), 1);
    assert_err_has("cannot write --latents");
    assert_err_has("l.safetensors");
    assert_err_lacks("nowhere");
    /* a 100 KB prompt is not echoed whole */
    snprintf(args, sizeof args, "--weights %s -p \"$(head -c 100000 /dev/zero | tr '\\0' x)\" -o %s",
             tmp_path("w"), tmp_path("long.png"));
    assert_int_equal(run("sample", args), 1);
    size_t n;
    free(slurp_err(&n));
    assert_true(n < 2000);
    assert_err_has("... (100000 bytes)");
}

/* several files: all of them, no temporary left, latents as a set member; --unet as a path */
static void test_sample_set(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    char extra[1024];
    snprintf(extra, sizeof extra, "--n 3 --unet %s --latents %s", tmp_path("w/unet.safetensors"),
             tmp_path("set.safetensors"));
    assert_int_equal(sample(extra, "multi.png"), 0);
    assert_true(exists(tmp_path("multi-0.png")) && exists(tmp_path("multi-1.png")) && exists(tmp_path("multi-2.png")));
    assert_true(exists(tmp_path("set.safetensors")));
    assert_false(exists(tmp_path("multi.png")));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q '\\.tmp\\.'", g_dir);
    assert_int_not_equal(system(cmd), 0);   /* no temporary file left behind */
    assert_err_has("multi-2.png");
    /* the temporaries a killed run left (its pid is gone) are removed by the
     * next run to the same outputs; another file's are left alone */
    static const char *const stale[] = {"stale-1.png.tmp.2147483646", "stale-1.png.tmp.2147483646.tmp.2147483646",
                                        "stale.safetensors.tmp.2147483646"};
    for (int i = 0; i < 3; i++) {
        FILE *f = fopen(tmp_path(stale[i]), "w");
        assert_non_null(f);
        fclose(f);
    }
    FILE *f = fopen(tmp_path("other.png.tmp.2147483646"), "w");
    assert_non_null(f);
    fclose(f);
    snprintf(extra, sizeof extra, "--n 2 --latents %s", tmp_path("stale.safetensors"));
    assert_int_equal(sample(extra, "stale.png"), 0);
    for (int i = 0; i < 3; i++)
        if (exists(tmp_path(stale[i]))) fail_msg("%s was not removed", stale[i]);
    assert_err_has("left by a run that was stopped");
    assert_true(exists(tmp_path("other.png.tmp.2147483646")));
    unlink(tmp_path("other.png.tmp.2147483646"));
    /* --unet NAME still works and names the same model */
    assert_int_equal(sample("--unet unet", "named.png"), 0);
    assert_int_equal(sample("", "default.png"), 0);
    assert_same_file(tmp_path("named.png"), tmp_path("default.png"));
}

/* the first score printed by dalign reward (stdout: SCORE<TAB>FILE) */
static double first_score(void)
{
    char *out = tu_slurp(tmp_path("out"), NULL);
    double v = strtod(out, NULL);
    free(out);
    return v;
}

static void test_reward_upscale_and_words(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    assert_int_equal(sample("--seed 3", "small.png"), 0);
    assert_int_equal(sample("--seed 3 --scale 8", "big.png"), 0);
    const char *rewards[] = {"colorful", "clip"};
    for (int i = 0; i < 2; i++) {
        char args[1024];
        snprintf(args, sizeof args, "--weights %s --reward=%s -p 'a red circle' %s", tmp_path("w"), rewards[i],
                 tmp_path("small.png"));
        assert_int_equal(run("reward", args), 0);
        double small = first_score();
        assert_err_lacks("warning");   /* every word known */
        snprintf(args, sizeof args, "--weights %s --reward %s --prompt 'a red circle' %s", tmp_path("w"),
                 rewards[i], tmp_path("big.png"));
        assert_int_equal(run("reward", args), 0);
        assert_true(small == first_score());
    }
    /* 64x64 whose 2x2 blocks are not one colour: not an upscale, refused by name */
    unsigned char px[64 * 64 * 3];
    for (int i = 0; i < 64 * 64 * 3; i++) px[i] = (unsigned char)(i * 7);
    assert_true(stbi_write_png(tmp_path("noisy.png"), 64, 64, 3, px, 64 * 3) != 0);
    char args[1024];
    snprintf(args, sizeof args, "--reward colorful %s", tmp_path("noisy.png"));
    assert_int_equal(run("reward", args), 1);
    assert_err_has("noisy.png");
    assert_err_has("not one colour");
    /* a word the tokenizer does not know: scored, with a warning naming it */
    snprintf(args, sizeof args, "--weights %s --reward clip -p 'a xyzzy circle' %s", tmp_path("w"),
             tmp_path("small.png"));
    assert_int_equal(run("reward", args), 0);
    assert_err_has("xyzzy");
    assert_err_has("does not know");
    /* faithful scores a prompt that does not parse 0: said, not silent */
    snprintf(args, sizeof args, "--reward faithful -p 'a xyzzy circle' %s", tmp_path("small.png"));
    assert_int_equal(run("reward", args), 0);
    assert_true(first_score() == 0.0);
    assert_err_has("does not parse");
    assert_err_has("xyzzy");
}

/* eval-base checks -o before loading weights or sampling, as eval and pairs do */
static void test_eval_base_checks_output(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    FILE *f = fopen(tmp_path("afile"), "w");
    assert_non_null(f);
    fclose(f);
    char args[1024];
    snprintf(args, sizeof args, "--weights %s -o %s", tmp_path("nowhere"), tmp_path("afile/sub"));
    assert_int_equal(run("eval-base", args), 1);
    assert_err_has("afile/sub");
    assert_err_lacks("nowhere");
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equals_form_and_aliases),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_quiet_and_verbose),
        cmocka_unit_test(test_random_seed),
        cmocka_unit_test(test_sample_checks_outputs_first),
        cmocka_unit_test(test_sample_set),
        cmocka_unit_test(test_reward_upscale_and_words),
        cmocka_unit_test(test_eval_base_checks_output),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
