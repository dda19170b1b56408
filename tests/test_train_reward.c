/* `dalign train reward` through the function it calls
 * (da_reward_net_train_to_dir, src/train/reward_run.c): a 3-step run on
 * the default network writes DIR/reward_net.{json,safetensors}; the files
 * load with the model API and through the `pref` reward, and hold exactly
 * the weights of the same training done in memory; bad arguments are
 * rejected before anything is written. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/reward_run.h"

static char g_dir[] = "/tmp/dalign_train_reward_XXXXXX";

static da_reward_train_config tiny_config(void)
{
    da_reward_train_config c = da_reward_train_defaults();
    c.steps = 3;
    c.batch = 4;
    c.warmup = 1;
    c.val_pairs = 16;
    c.seed = 5;
    return c;
}

static void path_in(char *buf, size_t cap, const char *dir, const char *file)
{
    int n = snprintf(buf, cap, "%s/%s", dir, file);
    assert_true(n > 0 && (size_t)n < cap);
}

static int exists(const char *dir, const char *file)
{
    char p[512];
    path_in(p, sizeof p, dir, file);
    return access(p, F_OK) == 0;
}

static void remove_outputs(const char *dir)
{
    char p[512];
    path_in(p, sizeof p, dir, "reward_net.json");
    remove(p);
    path_in(p, sizeof p, dir, "reward_net.safetensors");
    remove(p);
}

/* The files load back, equal bit for bit to the same training in memory
 * (same seed for init and data), and the `pref` reward reads them. */
static void test_train_to_dir_files(void **state)
{
    (void)state;
    char out[256];
    path_in(out, sizeof out, g_dir, "w");   /* a new directory: created by the call */
    da_reward_train_config tc = tiny_config();
    da_reward_train_report rep;
    if (da_reward_net_train_to_dir(NULL, &tc, out, &rep) != DA_OK) fail_msg("train_to_dir: %s", da_last_error());
    assert_true(exists(out, "reward_net.json") && exists(out, "reward_net.safetensors"));
    assert_int_equal(rep.n_val, 16);
    assert_true(isfinite(rep.loss_first) && isfinite(rep.loss_last));
    assert_true(rep.rater_acc > 0.5f && rep.heldout_rater_acc > 0.5f);   /* labels carry signal */

    char p[512];
    da_reward_net_config cfg, def = da_reward_net_config_default();
    path_in(p, sizeof p, out, "reward_net.json");
    assert_int_equal(da_reward_net_config_load(&cfg, p), DA_OK);
    assert_memory_equal(&cfg, &def, sizeof cfg);
    da_reward_net *loaded = da_reward_net_create(&cfg, 0);
    assert_non_null(loaded);
    path_in(p, sizeof p, out, "reward_net.safetensors");
    if (da_reward_net_load(loaded, p) != DA_OK) fail_msg("load: %s", da_last_error());

    /* the same run in memory: init and training both from tc.seed */
    da_reward_net *ref = da_reward_net_create(&def, 1);
    da_rng rng;
    da_rng_seed(&rng, tc.seed);
    da_reward_net_init(ref, &rng);
    da_reward_train_report rep2;
    assert_int_equal(da_reward_net_train(ref, &tc, &rep2), DA_OK);
    assert_int_equal(loaded->params.total, ref->params.total);
    tu_assert_bits("saved weights vs in-memory training", loaded->params.data, ref->params.data,
                   ref->params.total);
    assert_memory_equal(&rep, &rep2, sizeof rep);

    /* ... and the initial weights are not what was saved: training moved them */
    da_reward_net *init = da_reward_net_create(&def, 0);
    da_rng_seed(&rng, tc.seed);
    da_reward_net_init(init, &rng);
    assert_memory_not_equal(init->params.data, loaded->params.data, init->params.total * sizeof(float));

    da_reward *r;
    if (da_reward_create(&r, "pref", out) != DA_OK) fail_msg("pref reward: %s", da_last_error());
    float img[DA_IMG_FLOATS], score = NAN;
    tu_fill(img, DA_IMG_FLOATS, 3, 0.0f, 1.0f);
    const char *prompt = "a red circle";
    assert_int_equal(da_reward_score(r, img, &prompt, 1, &score), DA_OK);
    assert_true(isfinite(score));
    da_reward_free(r);
    da_reward_net_free(init);
    da_reward_net_free(ref);
    da_reward_net_free(loaded);
    remove_outputs(out);
    rmdir(out);
}

/* Every rejection writes nothing. */
static void test_train_to_dir_bad_args(void **state)
{
    (void)state;
    da_reward_train_config tc = tiny_config();
    assert_int_equal(da_reward_net_train_to_dir(NULL, NULL, g_dir, NULL), DA_ERR_INVALID);
    assert_int_equal(da_reward_net_train_to_dir(NULL, &tc, NULL, NULL), DA_ERR_INVALID);
    assert_int_equal(da_reward_net_train_to_dir(NULL, &tc, "", NULL), DA_ERR_INVALID);

    da_reward_train_config bad = tc;
    bad.batch = 0;
    assert_int_equal(da_reward_net_train_to_dir(NULL, &bad, g_dir, NULL), DA_ERR_INVALID);
    bad = tc;
    bad.lr = 0.0f;
    assert_int_equal(da_reward_net_train_to_dir(NULL, &bad, g_dir, NULL), DA_ERR_INVALID);
    bad = tc;
    bad.steps = -1;
    assert_int_equal(da_reward_net_train_to_dir(NULL, &bad, g_dir, NULL), DA_ERR_INVALID);

    da_reward_net_config cfg = da_reward_net_config_default();
    cfg.groups = 7;   /* does not divide the channels */
    assert_int_equal(da_reward_net_train_to_dir(&cfg, &tc, g_dir, NULL), DA_ERR_INVALID);
    assert_false(exists(g_dir, "reward_net.json") || exists(g_dir, "reward_net.safetensors"));

    /* a regular file where the directory should be */
    char file[256];
    path_in(file, sizeof file, g_dir, "not_a_dir");
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(da_reward_net_train_to_dir(NULL, &tc, file, NULL), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "not_a_dir"));
    remove(file);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    remove_outputs(g_dir);
    return rmdir(g_dir);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_to_dir_files),
        cmocka_unit_test(test_train_to_dir_bad_args),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
