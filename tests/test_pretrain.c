/* Pretraining (`dalign train clip|vae|unet`): each trainer runs on tiny
 * configs in a temp dir; the CLIP and VAE losses fall, the outputs load back,
 * the UNet trainer resumes bit for bit and gives the same bits with 1 and 2
 * threads; bad arguments give clear errors; the CLI's exit codes (usage
 * errors, SIGINT -> checkpoint + 130).
 *
 * Losses are read back from the JSONL metrics log, the file a user reads. */
#include "test_util.h"

#include "core/fileio.h"
#include "train/pretrain.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmp_dir[64];

static const char *tmp_path(const char *name)
{
    static char buf[8][400];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_dir, name);
    return buf[k];
}

/* ------------------------------------------------------------------------ */
/* Tiny configs: the real code paths at a fraction of the cost              */
/* ------------------------------------------------------------------------ */

static da_text_config tiny_text(void)
{
    da_text_config c = {.vocab_size = da_vocab_size(), .context = DA_MAX_TOKENS, .d_model = 32, .n_layers = 2,
                        .n_heads = 4, .mlp_ratio = 2, .proj_dim = 32};
    return c;
}

static da_clip_config tiny_clip(void)
{
    da_clip_config c = da_clip_config_default();
    c.channels[0] = 8; c.channels[1] = 16; c.channels[2] = 16; c.channels[3] = 32;
    c.groups = 4;
    c.embed_dim = 32;
    return c;
}

static da_vae_config tiny_vae(void)
{
    da_vae_config c = da_vae_config_default();
    c.ch[0] = 8; c.ch[1] = 16; c.ch[2] = 16;
    c.groups = 4;
    return c;
}

static da_unet_config tiny_unet(void)
{
    da_unet_config c = da_unet_config_default();
    c.ch[0] = 8; c.ch[1] = 16;
    c.groups = 4;
    c.n_heads = 2;
    c.time_freq_dim = 16;
    c.time_dim = 32;
    return c;
}

/* defaults of `model` with the tiny architectures, quiet, into dir */
static void tiny_setup(const char *model, da_trainer_config *tc, da_pretrain_opts *o, const char *dir)
{
    assert_int_equal(da_pretrain_defaults(model, tc, o), DA_OK);
    o->text = tiny_text();
    o->clip = tiny_clip();
    o->vae = tiny_vae();
    o->unet = tiny_unet();
    o->out_dir = dir;
    o->weights_dir = tmp_path("frozen");
    o->cache_size = 40;
    o->scale_images = 20;
    o->eval_images = 10;
    tc->progress = 0;
    tc->log_every = 1;
    tc->warmup = 0;
    tc->schedule = DA_LR_CONSTANT;
}

/* losses of a JSONL metrics log, in order; returns how many */
static int read_losses(const char *path, double *loss, int cap)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[1024];
    int n = 0;
    while (n < cap && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"loss\":");
        if (p) loss[n++] = strtod(p + 7, NULL);
    }
    fclose(f);
    return n;
}

static double mean_of(const double *x, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) s += x[i];
    return s / n;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ------------------------------------------------------------------------ */
/* Trainers                                                                 */
/* ------------------------------------------------------------------------ */

/* 40 steps of 16 pairs: InfoNCE falls from about log 16; the outputs load. */
static void test_clip_loss_falls(void **state)
{
    (void)state;
    da_trainer_config tc;
    da_pretrain_opts o;
    const char *dir = tmp_path("clip");
    tiny_setup("clip", &tc, &o, dir);
    tc.total_steps = 40;
    tc.batch = 16;
    tc.lr = 3e-3f;
    tc.metrics_path = tmp_path("clip.jsonl");
    tc.ckpt_path = tmp_path("clip.ckpt");
    da_pretrain_result r;
    if (da_pretrain_clip(&tc, &o, &r) != DA_OK) fail_msg("clip: %s", da_last_error());
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(r.steps, 40);
    double loss[64];
    assert_int_equal(read_losses(tc.metrics_path, loss, 64), 40);
    for (int i = 0; i < 40; i++) assert_true(isfinite(loss[i]));
    double first = mean_of(loss, 8), last = mean_of(loss + 32, 8);
    if (getenv("DA_TEST_VERBOSE")) printf("  clip InfoNCE: first 8 steps %.4f, last 8 %.4f\n", first, last);
    assert_true(fabs(first - log(16.0)) < 0.5);  /* random init: near chance, log B */
    if (!(last < first - 0.3)) fail_msg("clip loss did not fall: %.4f -> %.4f", first, last);
    /* the two towers load back from their own files */
    da_text_config tcfg;
    da_clip_config icfg;
    char p[512];
    snprintf(p, sizeof p, "%s/text_encoder.json", dir);
    assert_int_equal(da_text_config_load(&tcfg, p), DA_OK);
    assert_int_equal(tcfg.d_model, 32);
    snprintf(p, sizeof p, "%s/clip.json", dir);
    assert_int_equal(da_clip_config_load(&icfg, p), DA_OK);
    da_text_encoder *tx = da_text_encoder_create(&tcfg, 0);
    da_clip *im = da_clip_create(&icfg, 0);
    snprintf(p, sizeof p, "%s/text_encoder.safetensors", dir);
    assert_int_equal(da_text_encoder_load(tx, p), DA_OK);
    snprintf(p, sizeof p, "%s/clip.safetensors", dir);
    assert_int_equal(da_clip_load(im, p), DA_OK);
    da_text_encoder_free(tx);
    da_clip_free(im);
}

/* 30 steps of 4 images: the loss falls; the scale factor and PSNR are
 * finite and stored in vae.json / vae.safetensors. */
static void test_vae_loss_falls(void **state)
{
    (void)state;
    da_trainer_config tc;
    da_pretrain_opts o;
    const char *dir = tmp_path("vae");
    tiny_setup("vae", &tc, &o, dir);
    tc.total_steps = 30;
    tc.batch = 4;
    tc.lr = 3e-3f;
    tc.metrics_path = tmp_path("vae.jsonl");
    da_pretrain_result r;
    if (da_pretrain_vae(&tc, &o, &r) != DA_OK) fail_msg("vae: %s", da_last_error());
    assert_int_equal(r.exit_code, 0);
    double loss[64];
    /* 30 step lines and the final line with the PSNR (no loss field) */
    assert_int_equal(read_losses(tc.metrics_path, loss, 64), 30);
    for (int i = 0; i < 30; i++) assert_true(isfinite(loss[i]));
    double first = mean_of(loss, 5), last = mean_of(loss + 25, 5);
    if (getenv("DA_TEST_VERBOSE"))
        printf("  vae loss: first 5 %.4f, last 5 %.4f; PSNR %.2f dB, scale %.4f\n", first, last, (double)r.psnr,
               (double)r.scale_factor);
    if (!(last < 0.7 * first)) fail_msg("vae loss did not fall: %.4f -> %.4f", first, last);
    assert_true(isfinite(r.psnr) && r.psnr > 0.0f);
    assert_true(isfinite(r.scale_factor) && r.scale_factor > 0.0f);
    da_vae_config c = da_vae_config_default();
    char p[512];
    snprintf(p, sizeof p, "%s/vae.json", dir);
    assert_int_equal(da_vae_config_load(&c, p), DA_OK);
    assert_true(c.scale_factor == r.scale_factor);  /* written as %.9g: round-trips exactly */
    c.scale_factor = 1.0f;
    da_vae *m = da_vae_create(&c, 0);
    snprintf(p, sizeof p, "%s/vae.safetensors", dir);
    assert_int_equal(da_vae_load(m, p), DA_OK);
    assert_true(m->cfg.scale_factor == r.scale_factor);  /* from the metadata */
    da_vae_free(m);
}

/* Every tensor of two checkpoints bit-identical (params, AdamW, EMA). */
static void assert_same_checkpoint(const char *a, const char *b)
{
    da_safetensors *x, *y;
    assert_int_equal(da_st_open(a, &x), DA_OK);
    assert_int_equal(da_st_open(b, &y), DA_OK);
    assert_int_equal(x->n_tensors, y->n_tensors);
    for (int i = 0; i < x->n_tensors; i++) {
        const da_st_tensor *t = &x->tensors[i], *u = da_st_find(y, t->name);
        assert_non_null(u);
        assert_int_equal(t->nbytes, u->nbytes);
        if (memcmp(x->data + t->offset, y->data + u->offset, t->nbytes))
            fail_msg("tensor %s differs between %s and %s", t->name, a, b);
    }
    assert_string_equal(da_st_meta_get(x, "step"), da_st_meta_get(y, "step"));
    assert_string_equal(da_st_meta_get(x, "rng.data"), da_st_meta_get(y, "rng.data"));
    assert_string_equal(da_st_meta_get(x, "rng.noise"), da_st_meta_get(y, "rng.noise"));
    da_st_close(x);
    da_st_close(y);
}

static void unet_setup(da_trainer_config *tc, da_pretrain_opts *o, const char *dir)
{
    tiny_setup("unet", tc, o, dir);
    tc->total_steps = 6;
    tc->batch = 4;
    tc->micro_batches = 2;   /* accumulation on the resume path too */
    tc->warmup = 2;
    tc->schedule = DA_LR_COSINE;
    tc->ema_decay = 0.9f;
}

/* 6 straight steps == 3 steps, stop, resume into fresh memory, 3 more. */
static void test_unet_resume_bit_identical(void **state)
{
    (void)state;
    da_trainer_config tc;
    da_pretrain_opts o;
    unet_setup(&tc, &o, tmp_path("unet_a"));
    tc.ckpt_path = tmp_path("unet_a.ckpt");
    tc.metrics_path = tmp_path("unet_a.jsonl");
    da_pretrain_result r;
    if (da_pretrain_unet(&tc, &o, &r) != DA_OK) fail_msg("unet: %s", da_last_error());
    assert_int_equal(r.exit_code, 0);
    assert_true(isfinite(r.loss));
    double loss[16];
    assert_int_equal(read_losses(tc.metrics_path, loss, 16), 6);

    unet_setup(&tc, &o, tmp_path("unet_b"));
    tc.ckpt_path = tmp_path("unet_b.ckpt");
    tc.stop_at = 3;
    assert_int_equal(da_pretrain_unet(&tc, &o, &r), DA_OK);
    assert_int_equal(r.steps, 3);
    assert_false(file_exists(tmp_path("unet_b/unet.safetensors")));  /* stopped early: checkpoint only */
    tc.stop_at = 0;
    o.resume = tc.ckpt_path;
    if (da_pretrain_unet(&tc, &o, &r) != DA_OK) fail_msg("unet resume: %s", da_last_error());
    assert_int_equal(r.steps, 6);
    assert_same_checkpoint(tmp_path("unet_a.ckpt"), tmp_path("unet_b.ckpt"));
    /* the written weights (EMA) agree too, and the scheduler config is there */
    assert_true(file_exists(tmp_path("unet_a/scheduler.json")));
    da_unet_config c = da_unet_config_default();
    assert_int_equal(da_unet_config_load(&c, tmp_path("unet_a/unet.json")), DA_OK);
    da_unet *ua = da_unet_create(&c, 0), *ub = da_unet_create(&c, 0);
    assert_int_equal(da_unet_load(ua, tmp_path("unet_a/unet.safetensors")), DA_OK);
    assert_int_equal(da_unet_load(ub, tmp_path("unet_b/unet.safetensors")), DA_OK);
    tu_assert_bits("unet weights", ua->params.data, ub->params.data, ua->params.total);
    da_unet_free(ua);
    da_unet_free(ub);
}

/* 1 and 2 threads: the same checkpoint bits (cache, steps, EMA), plain MSE loss. */
static void test_unet_threads(void **state)
{
    (void)state;
    int saved = da_get_threads();
    for (int th = 1; th <= 2; th++) {
        da_set_threads(th);
        da_trainer_config tc;
        da_pretrain_opts o;
        unet_setup(&tc, &o, tmp_path(th == 1 ? "unet_t1" : "unet_t2"));
        tc.total_steps = 3;
        o.min_snr_gamma = 0.0f;  /* the plain MSE path here (the default, Min-SNR 5, in the resume test) */
        tc.ckpt_path = tmp_path(th == 1 ? "unet_t1.ckpt" : "unet_t2.ckpt");
        if (da_pretrain_unet(&tc, &o, NULL) != DA_OK) fail_msg("unet (%d threads): %s", th, da_last_error());
    }
    da_set_threads(saved);
    assert_same_checkpoint(tmp_path("unet_t1.ckpt"), tmp_path("unet_t2.ckpt"));
}

static da_scene scene1(int colour, int shape, int size, int bg)
{
    da_scene s = {.n_objects = 1, .relation = DA_ANY, .background = bg};
    s.obj[0] = (da_object){.colour = colour, .shape = shape, .size = size};
    return s;
}

/* Known answers of the rule the dedupe uses. */
static void test_spec_fits(void **state)
{
    (void)state;
    da_scene spec;
    da_scene big_red_circle_white = scene1(DA_RED, DA_CIRCLE, DA_LARGE, DA_BG_WHITE);
    assert_int_equal(da_parse_prompt("a red circle", &spec), DA_OK);
    assert_true(dp_spec_fits(&spec, &big_red_circle_white));        /* size, background unstated */
    assert_int_equal(da_parse_prompt("a small red circle", &spec), DA_OK);
    assert_false(dp_spec_fits(&spec, &big_red_circle_white));
    assert_int_equal(da_parse_prompt("a red circle on black", &spec), DA_OK);
    assert_false(dp_spec_fits(&spec, &big_red_circle_white));
    da_scene two = {.n_objects = 2, .relation = DA_RIGHT_OF, .background = DA_BG_GRAY};
    two.obj[0] = (da_object){.colour = DA_BLUE, .shape = DA_SQUARE, .size = DA_SMALL};
    two.obj[1] = (da_object){.colour = DA_RED, .shape = DA_CIRCLE, .size = DA_LARGE};
    assert_int_equal(da_parse_prompt("a red circle to the left of a blue square", &spec), DA_OK);
    assert_true(dp_spec_fits(&spec, &two));                          /* the converse wording */
    assert_int_equal(da_parse_prompt("a red circle right of a blue square", &spec), DA_OK);
    assert_false(dp_spec_fits(&spec, &two));
    assert_int_equal(da_parse_prompt("a red circle", &spec), DA_OK);
    assert_false(dp_spec_fits(&spec, &two));                         /* object count differs */
}

/* clashing pairs (a caption that fits another example's scene) of a batch */
static int count_clashes(const int *ids, const da_scene *scenes, int B)
{
    int n = 0;
    for (int i = 0; i < B; i++) {
        char text[DA_CAPTION_MAX];
        da_scene spec;
        assert_int_equal(da_detokenize(ids + (size_t)i * DA_MAX_TOKENS, DA_MAX_TOKENS, text, sizeof text), DA_OK);
        assert_int_equal(da_parse_prompt(text, &spec), DA_OK);
        for (int j = 0; j < B; j++) n += j != i && dp_spec_fits(&spec, &scenes[j]);
    }
    return n;
}

/* Batches of 64: without dedupe some caption fits another image (so the
 * check can fail); with it none does. Images are in [-1, 1]. */
static void test_batch_dedupe(void **state)
{
    (void)state;
    enum { B = 64 };
    float *img = malloc((size_t)B * DA_IMG_FLOATS * sizeof(float));
    int ids[B * DA_MAX_TOKENS];
    uint8_t keep[B * DA_MAX_TOKENS];
    da_scene scenes[B];
    da_rng rng;
    int without = 0, with = 0, redrawn_total = 0;
    for (int trial = 0; trial < 4; trial++) {
        int redrawn;
        da_rng_seed(&rng, 100 + trial);
        assert_int_equal(dp_world_batch(&rng, B, 0, img, ids, keep, scenes, &redrawn), DA_OK);
        assert_int_equal(redrawn, 0);
        without += count_clashes(ids, scenes, B);
        da_rng_seed(&rng, 100 + trial);
        assert_int_equal(dp_world_batch(&rng, B, 1, img, ids, keep, scenes, &redrawn), DA_OK);
        with += count_clashes(ids, scenes, B);
        redrawn_total += redrawn;
    }
    if (getenv("DA_TEST_VERBOSE"))
        printf("  4 batches of %d: %d clashing pairs without dedupe, %d with (%d re-draws)\n", B, without, with,
               redrawn_total);
    assert_true(without > 0);
    assert_int_equal(with, 0);
    float lo = 1.0f, hi = -1.0f;
    for (size_t k = 0; k < (size_t)B * DA_IMG_FLOATS; k++) {
        lo = img[k] < lo ? img[k] : lo;
        hi = img[k] > hi ? img[k] : hi;
    }
    assert_true(lo >= -1.0f && hi <= 1.0f && lo < 0.0f && hi > 0.0f);
    free(img);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static void test_bad_args(void **state)
{
    (void)state;
    da_trainer_config tc;
    da_pretrain_opts o;
    assert_int_equal(da_pretrain_defaults("gan", &tc, &o), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "'gan'"));

    /* unet without trained text encoder / VAE: says which file and what to run */
    tiny_setup("unet", &tc, &o, tmp_path("bad"));
    o.weights_dir = tmp_path("nowhere");
    assert_int_not_equal(da_pretrain_unet(&tc, &o, NULL), DA_OK);
    assert_non_null(strstr(da_last_error(), "text encoder"));
    assert_non_null(strstr(da_last_error(), "dalign train clip"));

    tiny_setup("unet", &tc, &o, tmp_path("bad"));
    o.cond_dropout = 1.5f;
    assert_int_equal(da_pretrain_unet(&tc, &o, NULL), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "dropout"));

    tiny_setup("clip", &tc, &o, tmp_path("bad"));
    o.clip.embed_dim = 16;  /* text proj_dim is 32 */
    da_pretrain_result r;
    assert_int_equal(da_pretrain_clip(&tc, &o, &r), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "proj_dim"));
    assert_int_equal(r.exit_code, 1);

    tiny_setup("vae", &tc, &o, tmp_path("bad"));
    o.eval_images = 0;
    assert_int_equal(da_pretrain_vae(&tc, &o, NULL), DA_ERR_INVALID);

    tiny_setup("vae", &tc, &o, tmp_path("bad"));
    tc.batch = 0;
    assert_int_equal(da_pretrain_vae(&tc, &o, NULL), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "batch"));

    /* resuming a checkpoint of another run (other lr) is refused by name */
    unet_setup(&tc, &o, tmp_path("bad"));
    tc.lr *= 2.0f;
    o.resume = tmp_path("unet_a.ckpt");
    assert_int_not_equal(da_pretrain_unet(&tc, &o, NULL), DA_OK);
    assert_non_null(strstr(da_last_error(), "config.lr"));
}

/* ------------------------------------------------------------------------ */
/* The command line                                                         */
/* ------------------------------------------------------------------------ */

static char dalign_bin[512];

#define WAIT_LIMIT_S 300.0   /* no child runs longer (a tiny config takes seconds) */

/* SIGINT and SIGTERM as a fresh process has them: default action, not
 * blocked. exec keeps an ignored disposition and the mask, and a suite run
 * with SIGINT ignored (nohup, `make check &`, a script's background job)
 * would hand that on: the SIGINT below would be lost and the run go on. */
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

/* Start `dalign ARGS` with stdout/stderr into tmp files; returns the pid. */
static pid_t spawn(const char *const *args)
{
    fflush(NULL);   /* the child must not write the parent's buffered output again */
    pid_t pid = fork();
    if (pid == 0) {
        default_signals();
        FILE *o = freopen(tmp_path("cli.out"), "w", stdout), *e = freopen(tmp_path("cli.err"), "w", stderr);
        (void)o; (void)e;
        char *argv[40];   /* $DA_TEST_RUNNER's words, dalign_bin, args */
        tu_cli_argv(argv, 40, args);
        execvp(argv[0], argv);
        _exit(127);
    }
    assert_true(pid > 0);
    return pid;
}

/* waitpid with a time limit: a child still running after WAIT_LIMIT_S is
 * killed and the test fails, rather than the suite hanging */
static int wait_exit(pid_t pid)
{
    int st;
    double t0 = da_now_s();
    pid_t w;
    while ((w = waitpid(pid, &st, WNOHANG)) == 0 && da_now_s() - t0 < WAIT_LIMIT_S) usleep(10000);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        fail_msg("dalign still running after %.0f s: killed", WAIT_LIMIT_S);
    }
    assert_int_equal(w, pid);
    if (!WIFEXITED(st)) fail_msg("dalign died from signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    return WEXITSTATUS(st);
}

static int run_cli(const char *const *args) { return wait_exit(spawn(args)); }

static int err_contains(const char *what)
{
    FILE *f = fopen(tmp_path("cli.err"), "r");
    if (!f) return 0;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, what) != NULL;
}

static void test_cli_usage_errors(void **state)
{
    (void)state;
    if (!dalign_bin[0]) skip();
    assert_int_equal(run_cli((const char *[]){"train", "gan", NULL}), 2);
    assert_true(err_contains("unknown model 'gan'"));
    assert_int_equal(run_cli((const char *[]){"train", "clip", "--width", "8,16", NULL}), 2);
    assert_true(err_contains("--width does not apply to clip"));
    assert_int_equal(run_cli((const char *[]){"train", "vae", "--lr", "fast", NULL}), 2);
    assert_true(err_contains("--lr needs a number > 0, got 'fast'"));
    assert_int_equal(run_cli((const char *[]){"train", "unet", "--steps", NULL}), 2);
    assert_true(err_contains("--steps needs a value"));
    assert_int_equal(run_cli((const char *[]){"train", "unet", "--bogus", NULL}), 2);
    assert_true(err_contains("unknown option '--bogus'"));
    assert_int_equal(run_cli((const char *[]){"train", "unet", "--help", NULL}), 0);
    const char *out = tmp_path("cli_out");
    assert_int_equal(run_cli((const char *[]){"train", "unet", "--out", out, "--weights", tmp_path("nowhere"),
                                              "--quiet", NULL}),
                     1);
    assert_true(err_contains("dalign train clip"));
}

/* SIGINT mid-run: a checkpoint, exit 130, and --resume continues. */
static void test_cli_sigint(void **state)
{
    (void)state;
    if (!dalign_bin[0]) skip();
    const char *out = tmp_path("cli_sig"), *log = tmp_path("cli_sig.jsonl");
    const char *args[] = {"train", "clip", "--steps", "100000", "--batch", "2", "--out", out, "--metrics", log,
                          "--log-every", "1", "--quiet", "--threads", "1", NULL};
    pid_t pid = spawn(args);
    /* wait for the first logged step: the handlers are installed by then */
    double loss[4];
    for (int i = 0; i < 600 && read_losses(log, loss, 4) < 2; i++) usleep(50000);
    assert_true(read_losses(log, loss, 4) >= 2);
    kill(pid, SIGINT);
    assert_int_equal(wait_exit(pid), 130);
    char ckpt[512];
    snprintf(ckpt, sizeof ckpt, "%s/clip.ckpt", out);
    da_safetensors *st;
    assert_int_equal(da_st_open(ckpt, &st), DA_OK);
    long step = strtol(da_st_meta_get(st, "step"), NULL, 10);
    da_st_close(st);
    assert_true(step >= 2);
    assert_false(file_exists(tmp_path("cli_sig/clip.safetensors")));  /* stopped: no weights */
    /* --steps is part of the stored config (the LR schedule): another value is refused */
    const char *other[] = {"train", "clip", "--steps", "99999", "--batch", "2", "--out", out, "--quiet", "--resume",
                           ckpt, NULL};
    assert_int_equal(run_cli(other), 1);
    assert_true(err_contains("config.total_steps"));
    /* the same options with --resume continue from the checkpoint (SIGTERM this time: 143) */
    const char *again[] = {"train", "clip", "--steps", "100000", "--batch", "2", "--out", out, "--metrics", log,
                           "--log-every", "1", "--quiet", "--threads", "1", "--resume", ckpt, NULL};
    pid = spawn(again);
    /* a step logged past the checkpoint: the resumed run is up, handlers installed */
    static double seen[4096];
    for (int i = 0; i < 600 && read_losses(log, seen, 4096) < step + 2; i++) usleep(50000);
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid), 143);
    assert_int_equal(da_st_open(ckpt, &st), DA_OK);
    long step2 = strtol(da_st_meta_get(st, "step"), NULL, 10);
    da_st_close(st);
    assert_true(step2 > step);
    /* the log kept the first session's lines and continued them: steps 1, 2, 3, ... */
    double all[4096];
    int n = read_losses(log, all, 4096);
    assert_int_equal(n, step2);
}

/* ------------------------------------------------------------------------ */

/* frozen tiny text encoder and VAE (random weights) for the UNet tests */
static int write_frozen(void)
{
    const char *dir = tmp_path("frozen");
    if (mkdir(dir, 0755)) return -1;
    da_text_config tc = tiny_text();
    da_vae_config vc = tiny_vae();
    vc.scale_factor = 0.5f;
    da_text_encoder *t = da_text_encoder_create(&tc, 0);
    da_vae *v = da_vae_create(&vc, 0);
    if (!t || !v) return -1;
    da_rng rng;
    da_rng_seed(&rng, 11);
    da_text_encoder_init(t, &rng);
    da_vae_init(v, &rng);
    int bad = da_text_encoder_save(t, tmp_path("frozen/text_encoder.safetensors")) != DA_OK ||
              da_text_config_save(&tc, tmp_path("frozen/text_encoder.json")) != DA_OK ||
              da_vae_save(v, tmp_path("frozen/vae.safetensors")) != DA_OK ||
              da_vae_config_save(&vc, tmp_path("frozen/vae.json")) != DA_OK;
    da_text_encoder_free(t);
    da_vae_free(v);
    return bad ? -1 : 0;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/dalign_pretrain_XXXXXX");
    if (!mkdtemp(tmp_dir)) return -1;
    /* the CLI next to this suite: build/<variant>/dalign */
    snprintf(dalign_bin, sizeof dalign_bin, "%s", tu_cli_path());
    return write_frozen();
}

static int group_teardown(void **state)
{
    (void)state;
    tu_rm_tree(tmp_dir);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Shipping a model's files as a set (dp_ship)                              */
/* ------------------------------------------------------------------------ */

static void put_text(const char *path, const char *text)
{
    assert_int_equal(da_write_atomic(path, text, strlen(text)), DA_OK);
}

static void assert_text(const char *path, const char *want)
{
    char *got = tu_slurp(path, NULL);
    if (strcmp(got, want)) fail_msg("%s holds '%s', want '%s'", path, got, want);
    free(got);
}

/* entries of dir whose name has ".tmp." in it: staged or backup files left over */
static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

/* The pair is replaced whole or not at all: a writer that fails leaves the
 * old pair (abort), a rename that fails puts back the files already renamed
 * (commit), and nothing staged is left behind either way. */
static void test_ship_all_or_nothing(void **state)
{
    (void)state;
    char dir[400];
    snprintf(dir, sizeof dir, "%s", tmp_path("ship"));
    assert_int_equal(mkdir(dir, 0755), 0);
    char st[512], js[512], bst[512], bjs[512], inside[600];
    snprintf(st, sizeof st, "%s/a.safetensors", dir);
    snprintf(js, sizeof js, "%s/a.json", dir);
    put_text(st, "old weights");
    put_text(js, "old config");
    const char *path;

    /* the second writer fails (a full disk): abort, nothing replaced */
    dp_ship sh;
    dp_ship_init(&sh);
    assert_int_equal(dp_ship_add(&sh, dir, "a", ".safetensors", &path), DA_OK);
    assert_non_null(strstr(path, ".tmp."));
    put_text(path, "new weights");
    assert_int_equal(dp_ship_add(&sh, dir, "a", ".json", &path), DA_OK);
    dp_ship_abort(&sh);
    assert_text(st, "old weights");
    assert_text(js, "old config");
    assert_int_equal(count_tmp(dir), 0);

    /* the second rename fails (a directory is in the way): the first file is put back */
    snprintf(bst, sizeof bst, "%s/b.safetensors", dir);
    snprintf(bjs, sizeof bjs, "%s/b.json", dir);
    snprintf(inside, sizeof inside, "%s/keep", bjs);
    put_text(bst, "old b weights");
    assert_int_equal(mkdir(bjs, 0755), 0);
    put_text(inside, "in the way");
    dp_ship_init(&sh);
    assert_int_equal(dp_ship_add(&sh, dir, "b", ".safetensors", &path), DA_OK);
    put_text(path, "new b weights");
    assert_int_equal(dp_ship_add(&sh, dir, "b", ".json", &path), DA_OK);
    put_text(path, "new b config");
    assert_int_equal(dp_ship_commit(&sh), DA_ERR_IO);
    if (!strstr(da_last_error(), "b.json")) fail_msg("the error does not name the file: %s", da_last_error());
    assert_text(bst, "old b weights");
    assert_int_equal(count_tmp(dir), 0);
    unlink(inside);
    rmdir(bjs);

    /* all well: both replaced, a file that did not exist created, nothing left over */
    dp_ship_init(&sh);
    assert_int_equal(dp_ship_add(&sh, dir, "a", ".safetensors", &path), DA_OK);
    put_text(path, "new weights");
    assert_int_equal(dp_ship_add(&sh, dir, "a", ".json", &path), DA_OK);
    put_text(path, "new config");
    assert_int_equal(dp_ship_add(&sh, dir, "c", ".json", &path), DA_OK);
    put_text(path, "fresh");
    assert_int_equal(dp_ship_commit(&sh), DA_OK);
    assert_text(st, "new weights");
    assert_text(js, "new config");
    snprintf(inside, sizeof inside, "%s/c.json", dir);
    assert_text(inside, "fresh");
    assert_int_equal(count_tmp(dir), 0);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_loss_falls),
        cmocka_unit_test(test_vae_loss_falls),
        cmocka_unit_test(test_unet_resume_bit_identical),
        cmocka_unit_test(test_unet_threads),
        cmocka_unit_test(test_spec_fits),
        cmocka_unit_test(test_batch_dedupe),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_cli_usage_errors),
        cmocka_unit_test(test_cli_sigint),
        cmocka_unit_test(test_ship_all_or_nothing),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
