/* `dalign sample` as a user runs it (src/cli/sample.c), over a temp weights
 * directory of tiny random models: exit codes and messages for bad input,
 * missing and corrupt weights; the PNG's size for one image, a grid and a
 * multi-prompt grid; the multi-prompt run giving the same latents as one
 * run per prompt; -v listing the resolved options. */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stb/stb_image.h>

static char g_dir[64];
static const char *g_bin;

static const char *tmp_path(const char *name)
{
    static char buf[4][400];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_sample_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    g_bin = tu_cli_path();
    return tu_tiny_weights(tmp_path("weights"));
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

/* dalign sample ARGS, output in DIR/log; the exit status */
static int run_sample(const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s sample %s > %s 2>&1", tu_cli_cmd(), args, tmp_path("log"));
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void assert_log_has(const char *want)
{
    char *out = tu_slurp(tmp_path("log"), NULL);
    if (!strstr(out, want)) fail_msg("expected \"%s\" in the output:\n%s", want, out);
    free(out);
}

static void assert_png_size(const char *path, int want_w, int want_h)
{
    int w, h, c;
    unsigned char *px = stbi_load(path, &w, &h, &c, 3);
    if (!px) fail_msg("%s: not a readable image", path);
    stbi_image_free(px);
    if (w != want_w || h != want_h) fail_msg("%s: %d x %d, want %d x %d", path, w, h, want_w, want_h);
}

/* the (n, 4, 8, 8) latents a run saved with --latents */
static float *load_latents(const char *path, int n)
{
    da_safetensors *st;
    assert_int_equal(da_st_open(path, &st), DA_OK);
    float *x = tu_ref(st, "latents", (size_t)n * 4 * 8 * 8);
    da_st_close(st);
    return x;
}

static void test_usage_errors(void **state)
{
    (void)state;
    if (!g_bin[0]) skip();   /* the suite was run without the dalign binary next to it */
    assert_int_equal(run_sample("--help"), 0);
    assert_log_has("--prompt TEXT");
    assert_int_equal(run_sample("-o x.png"), 2);
    assert_log_has("--prompt is required");
    assert_int_equal(run_sample("--prompt 'a red circle'"), 2);
    assert_log_has("-o OUT.png is required");
    assert_int_equal(run_sample("--prompt 'a red circle' -o x.png --steps 0"), 2);
    assert_int_equal(run_sample("--prompt 'a red circle' -o x.png --n 5000"), 2);
    assert_int_equal(run_sample("--prompt 'a red circle' -o x.png --sampler plms"), 2);
    assert_log_has("ddim, ddpm or euler");
    assert_int_equal(run_sample("--prompt 'a red circle' -o x.png --sampler euler --eta 1"), 2);
    assert_int_equal(run_sample("--prompt 'a red circle' -o x.png --bogus"), 2);
    assert_log_has("--bogus");
}

static void test_bad_prompt_and_weights(void **state)
{
    (void)state;
    if (!g_bin[0]) skip();
    char args[2048];
    /* the parser names the word it does not know, before any weights load */
    snprintf(args, sizeof args, "--weights %s --prompt 'a red circle' --prompt 'a purple hexagon' -o %s",
             tmp_path("weights"), tmp_path("bad.png"));
    assert_int_equal(run_sample(args), 1);
    assert_log_has("hexagon");
    assert_true(access(tmp_path("bad.png"), F_OK) != 0);

    snprintf(args, sizeof args, "--weights %s --prompt 'a red circle' -o %s", tmp_path("nowhere"),
             tmp_path("x.png"));
    assert_int_equal(run_sample(args), 1);
    assert_log_has("nowhere");
    assert_log_has("make weights");   /* an empty directory: says how to get weights */

    /* a truncated UNet file: the loader names it, nothing is written */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp -r %s %s && truncate -s 1000 %s", tmp_path("weights"), tmp_path("corrupt"),
             tmp_path("corrupt/unet.safetensors"));
    assert_int_equal(system(cmd), 0);
    snprintf(args, sizeof args, "--weights %s --prompt 'a red circle' -o %s", tmp_path("corrupt"),
             tmp_path("x.png"));
    assert_int_equal(run_sample(args), 1);
    assert_log_has("unet.safetensors");
    assert_true(access(tmp_path("x.png"), F_OK) != 0);
}

static void test_outputs(void **state)
{
    (void)state;
    if (!g_bin[0]) skip();
    char args[2048];
    snprintf(args, sizeof args, "--weights %s --prompt 'a red circle' --steps 2 --scale 3 -o %s",
             tmp_path("weights"), tmp_path("one.png"));
    assert_int_equal(run_sample(args), 0);
    assert_png_size(tmp_path("one.png"), 96, 96);

    /* 5 images of one prompt in a grid: ceil(sqrt(5)) = 3 columns, 2 rows, 1-pixel gaps */
    snprintf(args, sizeof args, "--weights %s --prompt 'a red circle' --steps 2 --n 5 --grid -o %s",
             tmp_path("weights"), tmp_path("grid.png"));
    assert_int_equal(run_sample(args), 0);
    assert_png_size(tmp_path("grid.png"), 3 * 32 + 2, 2 * 32 + 1);

    /* without --grid: one file per image, the index before the extension */
    snprintf(args, sizeof args, "--weights %s --prompt 'a red circle' --steps 2 --n 2 -o %s",
             tmp_path("weights"), tmp_path("each.png"));
    assert_int_equal(run_sample(args), 0);
    assert_png_size(tmp_path("each-0.png"), 32, 32);
    assert_png_size(tmp_path("each-1.png"), 32, 32);
}

/* three prompts x 2 seeds: a 3-row, 2-column grid, and each row's latents are
 * those of a run with that prompt alone and the same seeds */
static void test_several_prompts(void **state)
{
    (void)state;
    if (!g_bin[0]) skip();
    const char *prompts[3] = {"a red circle", "a large blue square on a white background",
                              "a green triangle above a yellow square"};
    char args[2048];
    snprintf(args, sizeof args,
             "--weights %s --prompt '%s' --prompt '%s' --prompt '%s' --steps 2 --n 2 --grid --seed 5 -v "
             "--latents %s -o %s",
             tmp_path("weights"), prompts[0], prompts[1], prompts[2], tmp_path("multi.safetensors"),
             tmp_path("multi.png"));
    assert_int_equal(run_sample(args), 0);
    assert_log_has("a green triangle above a yellow square");   /* -v lists every prompt */
    assert_log_has("seeds     5..6 (n 2 per prompt)");
    assert_png_size(tmp_path("multi.png"), 2 * 32 + 1, 3 * 32 + 2);
    float *multi = load_latents(tmp_path("multi.safetensors"), 6);
    for (int p = 0; p < 3; p++) {
        snprintf(args, sizeof args, "--weights %s --prompt '%s' --steps 2 --n 2 --seed 5 --latents %s -o %s",
                 tmp_path("weights"), prompts[p], tmp_path("single.safetensors"), tmp_path("single.png"));
        assert_int_equal(run_sample(args), 0);
        float *single = load_latents(tmp_path("single.safetensors"), 2);
        /* 2 DDIM steps of a tiny random UNet: latents are O(1); a batch of 6
         * vs 2 changes only GEMM rounding (~1e-6), a wrong prompt or seed
         * changes them by O(0.1) */
        tu_assert_close("row latents", multi + (size_t)p * 2 * 256, single, 2 * 256, 1e-4, 1e-4);
        free(single);
    }
    free(multi);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_bad_prompt_and_weights),
        cmocka_unit_test(test_outputs),
        cmocka_unit_test(test_several_prompts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
