/* Bounds and robustness of the library (issue 14, item 5): configs whose
 * sizes would overflow are refused naming the field, a device that never
 * ends is not read until memory runs out, a truncated model file's error
 * names the file, a DDIM eta too large says the real bound, a huge prompt
 * is cut short in messages; and the size helpers behind them. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dalign.h"
#include "test_util.h"

static char *scratch_dir(void)
{
    char *d = strdup("/tmp/dalign-test-bounds-XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_dir(char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
    free(d);
}

/* ---- configs ------------------------------------------------------------ */

static void test_unet_channels_int_max(void **state)
{
    (void)state;
    char *d = scratch_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/unet.json", d);
    /* INT_MAX itself, and the largest multiple of every group count (what
     * got past the old "multiple of groups" check and overflowed c1 + c1) */
    const char *bad[] = {"{\"channels\": [64, 2147483647]}", "{\"channels\": [2147483520, 128]}",
                         "{\"time_dim\": 2147483647}", "{\"context_dim\": 100000}"};
    const char *field[] = {"\"channels\"[1]", "\"channels\"[0]", "\"time_dim\"", "\"context_dim\""};
    for (int i = 0; i < 4; i++) {
        write_text(path, bad[i]);
        da_unet_config c = da_unet_config_default(), before = c;
        da_status s = da_unet_config_load(&c, path);
        assert_int_equal(s, DA_ERR_INVALID);
        if (!strstr(da_last_error(), field[i])) fail_msg("error does not name %s: %s", field[i], da_last_error());
        if (strncmp(da_last_error(), path, strlen(path)) != 0) fail_msg("error does not name the file: %s",
                                                                         da_last_error());
        assert_non_null(strstr(da_last_error(), "4096"));
        assert_memory_equal(&c, &before, sizeof c);   /* a failed load leaves the config alone */
    }
    /* the same through da_unet_create (a --width that a CLI put in the struct) */
    da_unet_config c = da_unet_config_default();
    c.ch[0] = 2147483520;
    assert_null(da_unet_create(&c, 0));
    assert_non_null(strstr(da_last_error(), "\"channels\"[0]"));
    remove_dir(d);
}

static void test_vae_and_text_bounds(void **state)
{
    (void)state;
    char *d = scratch_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/vae.json", d);
    write_text(path, "{\"channels\": [32, 64, 2147483640]}");
    da_vae_config v = da_vae_config_default();
    assert_int_equal(da_vae_config_load(&v, path), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "\"channels\"[2]"));
    write_text(path, "{\"latent_channels\": 1000000}");
    assert_int_equal(da_vae_config_load(&v, path), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "\"latent_channels\""));

    da_text_config t = da_text_config_default();
    t.n_layers = 1000;
    assert_int_equal(da_text_config_check(&t), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "\"n_layers\""));
    t = da_text_config_default();
    t.mlp_ratio = 1000000;   /* mlp_ratio * d_model used to overflow int */
    assert_int_equal(da_text_config_check(&t), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "\"mlp_ratio\""));
    remove_dir(d);
}

/* the largest widths allowed still build a model whose sizes fit (no
 * allocation: the table's total is computed without one) */
static void test_size_helpers(void **state)
{
    (void)state;
    size_t out = 7;
    assert_int_equal(da_size_mul(SIZE_MAX / 2, 3, "buffer x", &out), DA_ERR_RANGE);
    assert_int_equal(out, 7);
    assert_non_null(strstr(da_last_error(), "buffer x"));
    assert_int_equal(da_size_add(SIZE_MAX, 1, "sum", &out), DA_ERR_RANGE);
    assert_int_equal(da_size_mul(4096, 4096 * 9, "conv", &out), DA_OK);
    assert_int_equal(out, (size_t)4096 * 4096 * 9);
    assert_int_equal(da_size_add(1, 2, "sum", &out), DA_OK);
    assert_int_equal(out, 3);

    /* a parameter table whose total would wrap size_t fails at alloc, cleanly */
    da_params p;
    da_params_init(&p);
    int huge[4] = {INT_MAX, INT_MAX, INT_MAX, INT_MAX};
    da_params_add(&p, "w", 4, huge);
    assert_int_equal(da_params_alloc(&p, 0), DA_ERR_RANGE);
    assert_non_null(strstr(da_last_error(), "overflow"));
    da_params_free(&p);
}

/* ---- files -------------------------------------------------------------- */

/* /dev/zero never ends: da_st_open stops after its 8-byte length field
 * (0) instead of reading until memory runs out */
static void test_st_open_device(void **state)
{
    (void)state;
    if (access("/dev/zero", R_OK) != 0) skip();
    da_safetensors *st = (da_safetensors *)1;
    da_status s = da_st_open("/dev/zero", &st);
    assert_int_equal(s, DA_ERR_FORMAT);
    assert_null(st);
    assert_non_null(strstr(da_last_error(), "not a regular file"));
    /* random bytes: an absurd length, refused as fast */
    if (access("/dev/urandom", R_OK) == 0) {
        s = da_st_open("/dev/urandom", &st);
        assert_true(s == DA_ERR_FORMAT || s == DA_ERR_RANGE);
    }
    /* a FIFO with a valid header streams in and parses like a file */
    char *d = scratch_dir();
    char fifo[256], src[256];
    snprintf(fifo, sizeof fifo, "%s/fifo", d);
    snprintf(src, sizeof src, "%s/ok.safetensors", d);
    float x[3] = {1, 2, 3};
    da_st_entry e = {"x", x, 1, {3}};
    assert_int_equal(da_st_write(src, &e, 1, NULL, 0), DA_OK);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cat '%s' > '%s' &", src, fifo);
    assert_int_equal(system(cmd), 0);
    s = da_st_open(fifo, &st);
    assert_int_equal(s, DA_OK);
    const da_st_tensor *t = da_st_find(st, "x");
    assert_non_null(t);
    assert_int_equal(t->numel, 3);
    da_st_close(st);
    remove_dir(d);
}

/* a model file cut short: the error names it, whoever loads it (the text
 * encoder of `reward --reward clip`, the reward net of `eval`) */
static void test_truncated_weights_named(void **state)
{
    (void)state;
    char *d = scratch_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/text_encoder.safetensors", d);
    da_text_config c = {.vocab_size = da_vocab_size(), .context = DA_MAX_TOKENS, .d_model = 32, .n_layers = 1,
                        .n_heads = 2, .mlp_ratio = 2, .proj_dim = 16};
    da_text_encoder *m = da_text_encoder_create(&c, 0);
    assert_non_null(m);
    assert_int_equal(da_text_encoder_save(m, path), DA_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    da_status s = da_text_encoder_load(m, path);
    assert_int_equal(s, DA_ERR_FORMAT);
    if (strncmp(da_last_error(), path, strlen(path)) != 0)
        fail_msg("the error does not start with the file: %s", da_last_error());
    /* a file cut inside its header length field too */
    assert_int_equal(truncate(path, 5), 0);
    assert_int_equal(da_text_encoder_load(m, path), DA_ERR_FORMAT);
    assert_non_null(strstr(da_last_error(), path));
    da_text_encoder_free(m);
    remove_dir(d);
}

/* ---- DDIM eta ------------------------------------------------------------ */

static void test_ddim_eta_bound(void **state)
{
    (void)state;
    da_schedule sched;
    assert_int_equal(da_schedule_init(&sched, DA_BETA_LINEAR, 1000, 1e-4, 0.02), DA_OK);
    da_ddim_config c = da_ddim_config_default();
    da_ddim d;
    c.eta = 1.0f;   /* DDPM's variance: always allowed */
    assert_int_equal(da_ddim_init(&d, &sched, &c, 20), DA_OK);
    da_ddim_free(&d);
    c.eta = 1e30f;
    assert_int_equal(da_ddim_init(&d, &sched, &c, 20), DA_ERR_RANGE);
    const char *msg = da_last_error(), *at = strstr(msg, "largest eta allowed for these steps is ");
    if (!at) fail_msg("no bound in: %s", msg);
    double bound = atof(at + strlen("largest eta allowed for these steps is "));
    assert_true(bound >= 1.0 && bound < 100.0);
    /* the bound it names works, and a little more does not */
    c.eta = (float)bound;
    assert_int_equal(da_ddim_init(&d, &sched, &c, 20), DA_OK);
    size_t n = 64;
    float *x = tu_alloc_fill(n, 1, -1.0f, 1.0f), *eps = tu_alloc_fill(n, 2, -1.0f, 1.0f);
    float *z = tu_alloc_fill(n, 3, -1.0f, 1.0f), *prev = malloc(n * sizeof *prev);
    for (int i = 0; i < d.n_steps; i++) {
        assert_int_equal(da_ddim_step(&d, prev, NULL, eps, d.timesteps[i], x, z, n), DA_OK);
        assert_int_equal(da_first_nonfinite(prev, n), (size_t)-1);
    }
    da_ddim_free(&d);
    c.eta = (float)(bound * 1.01 + 1e-3);
    assert_int_equal(da_ddim_init(&d, &sched, &c, 20), DA_ERR_RANGE);
    free(x);
    free(eps);
    free(z);
    free(prev);
    da_schedule_free(&sched);
}

/* ---- prompts in messages ------------------------------------------------- */

static void test_long_prompt_excerpt(void **state)
{
    (void)state;
    size_t n = 100 * 1024;
    char *prompt = malloc(n + 1);
    for (size_t i = 0; i < n; i++) prompt[i] = "red circle "[i % 11];
    prompt[n] = '\0';
    char buf[DA_EXCERPT_CAP];
    const char *e = da_excerpt(prompt, 80, buf, sizeof buf);
    assert_true(strlen(e) < 120);
    assert_memory_equal(e, prompt, 80);
    assert_non_null(strstr(e, "... (102400 bytes)"));
    assert_string_equal(da_excerpt("a red circle", 80, buf, sizeof buf), "a red circle");
    /* never half a UTF-8 character */
    char utf[100];
    memset(utf, 'a', 79);
    memcpy(utf + 79, "\xc3\xa9xyz", 6);
    e = da_excerpt(utf, 80, buf, sizeof buf);
    assert_int_equal(strncmp(e + 79, "...", 3), 0);
    /* the library's own prompt errors stay short too */
    int ids[DA_MAX_TOKENS];
    uint8_t keep[DA_MAX_TOKENS];
    assert_int_equal(da_prompt_tokens(prompt, ids, keep), DA_ERR_INVALID);
    assert_true(strlen(da_last_error()) < 600);
    free(prompt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unet_channels_int_max),
        cmocka_unit_test(test_vae_and_text_bounds),
        cmocka_unit_test(test_size_helpers),
        cmocka_unit_test(test_st_open_device),
        cmocka_unit_test(test_truncated_weights_named),
        cmocka_unit_test(test_ddim_eta_bound),
        cmocka_unit_test(test_long_prompt_excerpt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
