/* A user's program against the public API: compiled with the installed
 * headers only (-Iinclude, no src/; pedantic C99) and linked against
 * libdalign.so, not the static library (Makefile: $(B)/tests/test_public_api).
 * It links only if every function it calls is exported (DA_API), and runs
 * only if the SONAME link resolves. Not a cmocka suite: it prints one line
 * per check and exits with the number of failures, as the suites do. */
#include <stdio.h>
#include <string.h>

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

int main(void)
{
    printf("dalign %s (headers %s), gemm %s\n", da_version(), DA_VERSION, da_gemm_backend());
    check_version();
    check_tokenizer();
    check_schedule();
    check_errors();
    printf("%s: %d failed\n", failures ? "FAILED" : "passed", failures);
    return failures;
}
