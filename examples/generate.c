/* examples/generate.c: dalign as a library, the way a program uses it.
 *
 *   generate [PROMPT [OUT.png [WEIGHTS_DIR]]]
 *
 * Loads the shipped models (WEIGHTS_DIR, else da_weights_dir(NULL):
 * $DALIGN_WEIGHTS, ./weights, or the installed copy), generates one image
 * from PROMPT (default "a red circle") with a fixed seed, and writes it as a
 * PNG (default generate.png), upscaled 8x to be seen. Everything the library
 * says goes through this program's log function, each line tagged with its
 * level; the per-step callback reports progress through the same log.
 *
 * Public headers only (<dalign.h>); build it against the installed library:
 *   cc -o generate examples/generate.c $(pkg-config --cflags --libs dalign)
 * `make examples` builds it in the build directory, and `make check` runs it.
 * Set GOMP_SPINCOUNT=1000 (or OMP_WAIT_POLICY=passive) in the environment
 * when other work shares the cores (README, "Threads"). */
#include <stdio.h>
#include <stdlib.h>

#include <dalign.h>

/* the host's log: here stdout, with the level in front */
static void on_log(da_log_level level, const char *msg, void *user)
{
    int *n_lines = user;
    (*n_lines)++;
    printf("[%s] %s\n", da_log_level_name(level), msg);
}

/* called after every sampler step; returning 0 goes on */
static int on_step(da_step_info *info, void *user)
{
    (void)user;
    if (info->step + 1 == info->n_steps || (info->step + 1) % 5 == 0)
        da_log(DA_LOG_PROGRESS, "generate: step %d/%d (t = %g)", info->step + 1, info->n_steps,
               (double)info->timestep);
    return 0;
}

int main(int argc, char **argv)
{
    const char *prompt = argc > 1 ? argv[1] : "a red circle";
    const char *out_png = argc > 2 ? argv[2] : "generate.png";
    const char *dir = da_weights_dir(argc > 3 ? argv[3] : NULL);
    int n_lines = 0;
    da_set_log(on_log, &n_lines);
    da_threads_init();   /* DA_THREADS, DA_GEMM */

    da_pipeline *pipe = NULL;
    if (da_weights_load_pipeline(&pipe, dir, NULL) != DA_OK) {
        fprintf(stderr, "generate: %s\n", da_last_error());
        return 1;
    }
    da_sample_opts opts = da_sample_opts_default();   /* DDIM, guidance 3 */
    opts.steps = 10;                                  /* fewer than the default 20: quick */
    const char *prompts[1] = {prompt};
    uint64_t seed = 42;
    float *image = malloc(DA_IMG_FLOATS * sizeof *image);
    da_status s = image ? da_pipeline_generate(pipe, &opts, prompts, NULL, &seed, 1, on_step, NULL, image, NULL)
                        : DA_ERR_NOMEM;
    if (s == DA_OK) s = da_png_save_images(out_png, image, 1, 1, 8);
    if (s != DA_OK) fprintf(stderr, "generate: %s\n", image ? da_last_error() : "out of memory");
    else printf("generate: \"%s\" (seed %llu, %d DDIM steps) -> %s; %d log lines\n", prompt,
                (unsigned long long)seed, opts.steps, out_png, n_lines);
    free(image);
    da_pipeline_free(pipe);
    da_set_log(NULL, NULL);
    return s == DA_OK ? 0 : 1;
}
