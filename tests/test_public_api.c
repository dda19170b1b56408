/* A user's program against the public API: compiled with the installed
 * headers only (-Iinclude, no src/; pedantic C99) and linked against
 * libdalign.so, not the static library (Makefile: $(B)/tests/test_public_api).
 * It links only if every function it calls is exported (DA_API), and runs
 * only if the SONAME link resolves. Not a cmocka suite: it prints one line
 * per check and exits with the number of failures, as the suites do. */
#define _POSIX_C_SOURCE 200809L   /* setenv, dup, dup2, mkstemp: C99 alone has none */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dalign.h>

static int failures;

static void check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}

/* the library's run-time version is the one the headers name */
static void check_version(void)
{
    check(strcmp(da_version(), DA_VERSION) == 0, "da_version() == DA_VERSION");
    check(da_version_number() == DA_VERSION_NUMBER, "da_version_number() == DA_VERSION_NUMBER");
    check(DA_VERSION_NUMBER == DA_VERSION_MAJOR * 10000 + DA_VERSION_MINOR * 100 + DA_VERSION_PATCH,
          "DA_VERSION_NUMBER = MAJOR * 10000 + MINOR * 100 + PATCH");
}

/* "a red circle" -> BOS red circle EOS PAD ..., and back */
static void check_tokenizer(void)
{
    int ids[DA_MAX_TOKENS];
    uint8_t keep[DA_MAX_TOKENS];
    da_tok_report rep;
    char text[64];
    da_status s = da_tokenize("a red circle", ids, keep, &rep);
    check(s == DA_OK && rep.n_tokens == 5 && rep.n_unknown == 0, "da_tokenize: 5 tokens, none unknown");
    check(ids[0] == DA_TOK_BOS && ids[4] == DA_TOK_EOS && ids[5] == DA_TOK_PAD && keep[4] == 1 && keep[5] == 0,
          "da_tokenize: BOS .. EOS then PAD");
    s = da_detokenize(ids, DA_MAX_TOKENS, text, sizeof text);
    check(s == DA_OK && strcmp(text, "a red circle") == 0, "da_detokenize gives the text back");
}

/* DDPM's linear schedule and DDIM's leading spacing, 1000 -> 10 steps */
static void check_schedule(void)
{
    da_schedule sched;
    int t[10];
    da_status s = da_schedule_init(&sched, DA_BETA_LINEAR, 1000, 1e-4, 0.02);
    check(s == DA_OK && sched.n_train == 1000, "da_schedule_init: linear, T = 1000");
    if (s != DA_OK) return;
    check(sched.alphas_cumprod[0] > sched.alphas_cumprod[999] && sched.alphas_cumprod[999] > 0.0f,
          "alphas_cumprod decreases and stays positive");
    s = da_timesteps(t, 10, sched.n_train, DA_SPACING_LEADING, 0);
    check(s == DA_OK && t[0] == 900 && t[9] == 0, "da_timesteps: leading spacing 900 .. 0");
    da_schedule_free(&sched);
}

/* errors come back as a status and a message, never an abort */
static void check_errors(void)
{
    da_prediction pred;
    da_status s = da_prediction_parse("nonsense", &pred);
    check(s == DA_ERR_INVALID && strstr(da_last_error(), "nonsense") != NULL,
          "da_prediction_parse: DA_ERR_INVALID naming the word");
    check(strlen(da_strerror(DA_ERR_IO)) > 0, "da_strerror has a text for every code");
}

/* ---- the log callback ------------------------------------------------------ */

typedef struct captured {
    int n[DA_LOG_DEBUG + 1];   /* lines per level */
    char last_warn[256], last_progress[256];
    int newline_seen;          /* a message must be one line without its newline */
} captured;

static void capture(da_log_level level, const char *msg, void *user)
{
    captured *c = user;
    if ((int)level < 0 || level > DA_LOG_DEBUG) return;
    c->n[level]++;
    if (strchr(msg, '\n')) c->newline_seen = 1;
    if (level == DA_LOG_WARN) snprintf(c->last_warn, sizeof c->last_warn, "%s", msg);
    if (level == DA_LOG_PROGRESS) snprintf(c->last_progress, sizeof c->last_progress, "%s", msg);
}

/* stderr into a temp file while the library works, to see what reached it */
static int stderr_to_file(char *path, int *saved)
{
    strcpy(path, "/tmp/dalign-public-api-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    fflush(stderr);
    *saved = dup(2);
    dup2(fd, 2);
    close(fd);
    return 0;
}

static long stderr_restore(const char *path, int saved)
{
    struct stat sb;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long n = stat(path, &sb) == 0 ? (long)sb.st_size : -1;
    unlink(path);
    return n;
}

/* da_set_log: warnings, progress lines and load notes go to the host's
 * function and nothing to stderr; da_set_log(NULL) brings stderr back */
static void check_log(void)
{
    char path[64];
    int saved;
    captured c;
    memset(&c, 0, sizeof c);
    if (stderr_to_file(path, &saved) != 0) {
        check(0, "a temp file for stderr");
        return;
    }
    da_set_log(capture, &c);
    const char *gemm = getenv("DA_GEMM");
    char *gemm_saved = gemm ? strdup(gemm) : NULL;
    setenv("DA_GEMM", "no-such-backend", 1);
    da_threads_init();   /* warns: an unknown DA_GEMM is ignored */
    if (gemm_saved) setenv("DA_GEMM", gemm_saved, 1);
    else unsetenv("DA_GEMM");
    free(gemm_saved);
    da_threads_init();
    const char *threads = getenv("DA_THREADS");
    char *threads_saved = threads ? strdup(threads) : NULL;
    setenv("DA_THREADS", "0", 1);
    da_threads_init();   /* warns: 0 is no thread count (not "all cores" in silence) */
    if (threads_saved) setenv("DA_THREADS", threads_saved, 1);
    else unsetenv("DA_THREADS");
    free(threads_saved);
    da_threads_init();

    da_progress bar;
    da_progress_init(&bar, 2, "steps", 0, 4, 1);   /* fd 2: the log, now that one is installed */
    for (long i = 1; i <= 4; i++) da_progress_update(&bar, i, 0.5f);
    da_progress_finish(&bar);
    da_log(DA_LOG_INFO, "host: %d\n", 42);

    int have_weights = access("weights/unet.safetensors", R_OK) == 0;
    if (have_weights) {
        da_pipeline *pipe = NULL;
        check(da_weights_load_pipeline(&pipe, "weights", NULL) == DA_OK, "da_weights_load_pipeline(weights)");
        da_pipeline_free(pipe);
    }
    da_set_log(NULL, NULL);
    long n_stderr = stderr_restore(path, saved);

    check(c.n[DA_LOG_WARN] == 2 && strstr(c.last_warn, "DA_THREADS='0'") != NULL,
          "log: the DA_GEMM and DA_THREADS warnings captured");
    check(c.n[DA_LOG_PROGRESS] >= 4 && strstr(c.last_progress, "steps  4/4") != NULL,
          "log: progress lines captured, the last one 4/4");
    check(c.n[DA_LOG_INFO] == 1, "log: da_log(DA_LOG_INFO) captured");
    check(!have_weights || c.n[DA_LOG_DEBUG] == 3, "log: one DEBUG line per model loaded");
    check(!c.newline_seen, "log: messages come without their newline");
    check(n_stderr == 0, "log: nothing on stderr while a log function is installed");

    /* the default again: warnings on stderr, DEBUG dropped */
    if (stderr_to_file(path, &saved) != 0) return;
    da_log(DA_LOG_WARN, "dalign: a warning");
    da_log(DA_LOG_DEBUG, "dalign: a debug note");
    long n_default = stderr_restore(path, saved);
    check(n_default == (long)strlen("dalign: a warning\n"), "log: default is stderr, one line, DEBUG dropped");
    check(strcmp(da_log_level_name(DA_LOG_PROGRESS), "PROGRESS") == 0, "da_log_level_name");
}

/* da_weights_dir: --weights, else $DALIGN_WEIGHTS, else ./weights when
 * there is one, else where `make install` put them (compiled in) */
static void check_weights_dir(void)
{
    char cwd[4096], tmp[] = "/tmp/dalign-public-api-XXXXXX";
    const char *env = getenv("DALIGN_WEIGHTS");
    char *env_saved = env ? strdup(env) : NULL;
    if (!getcwd(cwd, sizeof cwd) || !mkdtemp(tmp)) {
        check(0, "a temp directory");
        free(env_saved);
        return;
    }
    unsetenv("DALIGN_WEIGHTS");
    check(strcmp(da_weights_dir("mine"), "mine") == 0, "da_weights_dir: the override first");
    int ok = chdir(tmp) == 0;
    const char *installed = da_weights_dir(NULL);
    size_t n = strlen(installed), suffix = strlen("/share/dalign/weights");
    check(ok && n > suffix && strcmp(installed + n - suffix, "/share/dalign/weights") == 0,
          "da_weights_dir: no ./weights -> $(PREFIX)/share/dalign/weights");
    ok = ok && mkdir("weights", 0755) == 0;
    check(ok && strcmp(da_weights_dir(NULL), "weights") == 0, "da_weights_dir: ./weights when it exists");
    setenv("DALIGN_WEIGHTS", "/x/w", 1);
    check(strcmp(da_weights_dir(NULL), "/x/w") == 0, "da_weights_dir: $DALIGN_WEIGHTS before ./weights");
    rmdir("weights");
    if (chdir(cwd) != 0) check(0, "back to the first directory");
    rmdir(tmp);
    if (env_saved) setenv("DALIGN_WEIGHTS", env_saved, 1);
    else unsetenv("DALIGN_WEIGHTS");
    free(env_saved);
}

int main(void)
{
    printf("dalign %s (headers %s), gemm %s\n", da_version(), DA_VERSION, da_gemm_backend());
    check_version();
    check_tokenizer();
    check_schedule();
    check_errors();
    check_log();
    check_weights_dir();
    printf("%s: %d failed\n", failures ? "FAILED" : "passed", failures);
    return failures;
}
