/* `dalign train reward` through the function it calls
 * (da_reward_net_train_to_dir, src/train/reward_run.c): a 3-step run on
 * the default network writes DIR/reward_net.{json,safetensors}; the files
 * load with the model API and through the `pref` reward, and hold exactly
 * the weights of the same training done in memory; bad arguments are
 * rejected before anything is written. On the shared trainer: a run stopped
 * early or killed outright (SIGKILL, no chance to save) and resumed from its
 * checkpoint ends with the bits of an uninterrupted one; the command line
 * turns SIGINT into a checkpoint and exit 130. */
#include "test_util.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fileio.h"
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

/* ------------------------------------------------------------------------ */
/* Checkpoints and resume                                                   */
/* ------------------------------------------------------------------------ */

#define WAIT_LIMIT_S 120.0   /* no wait below blocks longer (a hung child fails the test) */

/* 12 steps of 2 pairs, a checkpoint after every step */
static da_reward_train_config resume_config(const char *name)
{
    static char ckpt[8][512], log[8][512];
    static int k;
    k = (k + 1) % 8;
    da_reward_train_config c = tiny_config();
    c.steps = 12;
    c.batch = 2;
    c.warmup = 1;
    c.val_pairs = 8;
    c.seed = 7;
    char file[64];
    snprintf(file, sizeof file, "%s.ckpt", name);
    path_in(ckpt[k], sizeof ckpt[k], g_dir, file);
    snprintf(file, sizeof file, "%s.jsonl", name);
    path_in(log[k], sizeof log[k], g_dir, file);
    c.ckpt_path = ckpt[k];
    c.metrics_path = log[k];
    c.ckpt_every = 1;
    return c;
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

/* waitpid with a time limit: a child still running after WAIT_LIMIT_S is
 * killed and the test fails, instead of the suite hanging */
static int wait_status(pid_t pid)
{
    int st;
    double t0 = da_now_s();
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) return st;
        assert_int_equal(w, 0);
        if (da_now_s() - t0 > WAIT_LIMIT_S) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("child %ld still running after %.0f s", (long)pid, WAIT_LIMIT_S);
        }
        usleep(5000);
    }
}

/* the same tensors (names, bytes) and the same step and RNG states */
static void assert_same_checkpoint(const char *a, const char *b)
{
    da_safetensors *x, *y;
    if (da_st_open(a, &x) != DA_OK || da_st_open(b, &y) != DA_OK) fail_msg("%s", da_last_error());
    assert_int_equal(x->n_tensors, y->n_tensors);
    for (int i = 0; i < x->n_tensors; i++) {
        const da_st_tensor *t = &x->tensors[i], *u = da_st_find(y, t->name);
        if (!u) fail_msg("tensor %s missing in %s", t->name, b);
        assert_int_equal(t->nbytes, u->nbytes);
        if (memcmp(x->data + t->offset, y->data + u->offset, t->nbytes)) fail_msg("tensor %s differs", t->name);
    }
    static const char *keys[] = {"step", "rng.data", "rng.noise"};
    for (int k = 0; k < 3; k++) assert_string_equal(da_st_meta_get(x, keys[k]), da_st_meta_get(y, keys[k]));
    da_st_close(x);
    da_st_close(y);
}

/* the final weights files of two output directories, bit for bit */
static void assert_same_weights(const char *dir_a, const char *dir_b)
{
    da_reward_net_config cfg = da_reward_net_config_default();
    da_reward_net *a = da_reward_net_create(&cfg, 0), *b = da_reward_net_create(&cfg, 0);
    char p[512];
    path_in(p, sizeof p, dir_a, "reward_net.safetensors");
    if (da_reward_net_load(a, p) != DA_OK) fail_msg("%s", da_last_error());
    path_in(p, sizeof p, dir_b, "reward_net.safetensors");
    if (da_reward_net_load(b, p) != DA_OK) fail_msg("%s", da_last_error());
    tu_assert_bits("final weights", a->params.data, b->params.data, a->params.total);
    da_reward_net_free(a);
    da_reward_net_free(b);
}

/* the validation of two runs that end with the same weights */
static void assert_same_validation(const da_reward_train_report *a, const da_reward_train_report *b)
{
    assert_int_equal(a->n_val, b->n_val);
    float x[4] = {a->acc, a->rater_acc, a->heldout_acc, a->heldout_rater_acc};
    float y[4] = {b->acc, b->rater_acc, b->heldout_acc, b->heldout_rater_acc};
    tu_assert_bits("validation accuracies", x, y, 4);
}

/* 12 straight steps (the reference) == 5 steps, stop (stop_at), resume
 * into a fresh model, 7 more: checkpoint, weights and validation. */
static void test_stop_and_resume(void **state)
{
    (void)state;
    char dir_a[512], dir_b[512];
    path_in(dir_a, sizeof dir_a, g_dir, "ref");
    path_in(dir_b, sizeof dir_b, g_dir, "stopped");
    da_reward_train_config ref = resume_config("ref");
    da_reward_train_report ra, rb;
    if (da_reward_net_train_to_dir(NULL, &ref, dir_a, &ra) != DA_OK) fail_msg("reference: %s", da_last_error());
    assert_int_equal(ra.steps_done, 12);
    assert_int_equal(count_lines(ref.metrics_path), 12);

    da_reward_train_config c = resume_config("stopped");
    c.stop_at = 5;
    if (da_reward_net_train_to_dir(NULL, &c, dir_b, &rb) != DA_OK) fail_msg("stop_at: %s", da_last_error());
    assert_int_equal(rb.steps_done, 5);
    assert_int_equal(rb.n_val, 0);   /* not finished: not validated */
    assert_false(exists(dir_b, "reward_net.safetensors") || exists(dir_b, "reward_net.json"));
    c.stop_at = 0;
    c.resume = c.ckpt_path;
    if (da_reward_net_train_to_dir(NULL, &c, dir_b, &rb) != DA_OK) fail_msg("resume: %s", da_last_error());
    assert_int_equal(rb.steps_done, 12);
    assert_same_checkpoint(ref.ckpt_path, c.ckpt_path);
    assert_same_weights(dir_a, dir_b);
    assert_same_validation(&ra, &rb);
    /* the first step ran before the resume: its loss mean is unknown here */
    assert_true(isnan(rb.loss_first));
    float last[2] = {ra.loss_last, rb.loss_last};
    tu_assert_bits("loss over the last steps", &last[0], &last[1], 1);
    assert_int_equal(count_lines(c.metrics_path), 12);   /* the log continued */

    /* another learning rate is another run: refused, the message names it */
    c.lr *= 2.0f;
    assert_int_equal(da_reward_net_train_to_dir(NULL, &c, dir_b, NULL), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "config.lr"));
    tu_rm_tree(dir_a);
    tu_rm_tree(dir_b);
}

/* SIGINT and SIGTERM as a fresh process has them: default action, not
 * blocked. exec keeps an ignored disposition and the mask, and a suite run
 * with SIGINT ignored (nohup, `make check &`) would hand that on: a SIGINT
 * sent to the child would be lost. */
static void default_signals(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    sigset_t both;
    sigemptyset(&both);
    sigaddset(&both, SIGINT);
    sigaddset(&both, SIGTERM);
    sigprocmask(SIG_UNBLOCK, &both, NULL);
}

/* `dalign ARGS` in a child process, stdout and stderr into out_file.
 * fork + exec: libgomp's threads do not survive a plain fork. */
static pid_t spawn_cli(const char *const *args, const char *out_file)
{
    fflush(NULL);   /* the child must not write the parent's buffered output again */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        default_signals();
        if (!freopen(out_file, "w", stdout) || !freopen(out_file, "a", stderr)) _exit(127);
        char *argv[40];
        tu_cli_argv(argv, 40, args);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* wait until path has `lines` lines or the child has ended */
static void wait_for_lines(const char *path, int lines, pid_t pid)
{
    double t0 = da_now_s();
    while (count_lines(path) < lines && da_now_s() - t0 < WAIT_LIMIT_S && waitpid(pid, NULL, WNOHANG) == 0)
        usleep(2000);
}

/* A run killed outright (SIGKILL: no handler, no final checkpoint) after a
 * few steps resumes from its last periodic checkpoint; the metrics lines
 * past it are dropped and written again, and the end is the bits of an
 * uninterrupted run. The killed run is the command line's, the reference
 * and the resume the library's: the same options give the same bits. */
static void test_killed_and_resumed(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    char dir_a[512], dir_k[512], out_file[512];
    path_in(dir_a, sizeof dir_a, g_dir, "ref2");
    path_in(dir_k, sizeof dir_k, g_dir, "killed");
    path_in(out_file, sizeof out_file, g_dir, "killed.out");
    da_reward_train_config ref = resume_config("ref2");
    da_reward_train_report ra, rk;
    if (da_reward_net_train_to_dir(NULL, &ref, dir_a, &ra) != DA_OK) fail_msg("reference: %s", da_last_error());

    da_reward_train_config c = resume_config("killed");
    /* resume_config's settings; the CLI cuts --warmup to steps / 10 = 1 */
    const char *args[] = {"train", "reward", "--steps", "12", "--batch", "2", "--val-pairs", "8", "--seed", "7",
                          "--out", dir_k, "--ckpt", c.ckpt_path, "--ckpt-every", "1", "--metrics", c.metrics_path,
                          "--quiet", NULL};
    pid_t pid = spawn_cli(args, out_file);
    /* two logged steps: a checkpoint is on disk, ten steps are still to run */
    wait_for_lines(c.metrics_path, 2, pid);
    kill(pid, SIGKILL);
    int st = wait_status(pid);
    if (!WIFSIGNALED(st)) fail_msg("the run ended (status %d) before it could be killed", st);
    assert_int_equal(WTERMSIG(st), SIGKILL);
    assert_false(exists(dir_k, "reward_net.safetensors"));
    da_safetensors *ck;
    if (da_st_open(c.ckpt_path, &ck) != DA_OK) fail_msg("checkpoint of the killed run: %s", da_last_error());
    long step = strtol(da_st_meta_get(ck, "step"), NULL, 10);
    da_st_close(ck);
    assert_true(step >= 1 && step < 12);

    c.resume = c.ckpt_path;
    if (da_reward_net_train_to_dir(NULL, &c, dir_k, &rk) != DA_OK) fail_msg("resume: %s", da_last_error());
    assert_int_equal(rk.steps_done, 12);
    assert_same_checkpoint(ref.ckpt_path, c.ckpt_path);
    assert_same_weights(dir_a, dir_k);
    assert_same_validation(&ra, &rk);
    assert_int_equal(count_lines(c.metrics_path), 12);   /* one line per step, none twice */
    tu_rm_tree(dir_a);
    tu_rm_tree(dir_k);
}

/* `dalign train reward`: SIGINT mid-run saves a checkpoint, exits 130 and
 * writes no weights; the message says how to continue. */
static void test_cli_sigint(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    char out[512], log[512], ckpt[512], out_file[512];
    path_in(out, sizeof out, g_dir, "cli");
    path_in(log, sizeof log, g_dir, "cli.jsonl");
    path_in(ckpt, sizeof ckpt, out, "reward_net.ckpt");
    path_in(out_file, sizeof out_file, g_dir, "cli.out");
    const char *args[] = {"train", "reward", "--steps", "100000", "--batch", "2", "--val-pairs", "4", "--out", out,
                          "--metrics", log, "--quiet", "--threads", "1", NULL};
    pid_t pid = spawn_cli(args, out_file);
    wait_for_lines(log, 1, pid);   /* a logged step: the handlers are installed by then */
    kill(pid, SIGINT);
    int st = wait_status(pid);
    if (!WIFEXITED(st)) fail_msg("dalign died from signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    assert_int_equal(WEXITSTATUS(st), 130);
    da_safetensors *ck;
    if (da_st_open(ckpt, &ck) != DA_OK) fail_msg("checkpoint: %s", da_last_error());
    assert_true(strtol(da_st_meta_get(ck, "step"), NULL, 10) >= 1);
    da_st_close(ck);
    assert_false(exists(out, "reward_net.safetensors"));
    FILE *f = fopen(out_file, "r");
    assert_non_null(f);
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    if (!strstr(text, "continue with: dalign train reward --resume")) fail_msg("output: %s", text);
    tu_rm_tree(out);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_to_dir_files),
        cmocka_unit_test(test_train_to_dir_bad_args),
        cmocka_unit_test(test_stop_and_resume),
        cmocka_unit_test(test_killed_and_resumed),
        cmocka_unit_test(test_cli_sigint),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
