/* The one loop of the evaluations (eval.c, report.c) and the pairs
 * generator (pairs.c): a stream of images generated in pipeline calls of a
 * FIXED size, each chunk handed to a scorer, progress after each chunk.
 *
 *   for chunk c = 0, 1, ...:           images [c*batch, c*batch + n)
 *     plan(chunk)                      the prompt and seed of every image
 *     da_pipeline_generate(chunk)      n images (and their final latents)
 *     score(chunk)                     the caller's; may stop the stream
 *     progress()                       the caller's line, when one is due
 *
 * With OpenBLAS an image's bits can depend on how many rows its GEMMs had,
 * so the chunks depend only on batch and total (never on how much work is
 * left): that makes every number repeat bit for bit. */
#ifndef DA_EVAL_CHUNKS_H
#define DA_EVAL_CHUNKS_H

#include <stdint.h>

#include "dalign/eval.h"

/* One pipeline call's images. */
typedef struct da_chunk {
    long first;               /* stream index of the chunk's image 0 */
    int n;                    /* images in the chunk */
    char *text;               /* (batch, DA_CAPTION_MAX) rows a planner may write prompts into */
    const char **prompts;     /* (batch) each image's prompt: rows of text, or the caller's */
    uint64_t *seeds;          /* (batch) */
    uint64_t *refine_seeds;   /* (batch) scratch: the writer seeds of a refiner */
    float *images;            /* (batch, 3, 32, 32) in [0, 1] */
    float *latents;           /* (batch, C, h, w) final latents; NULL unless keep_latents */
} da_chunk;

/* Progress lines on stderr: on a terminal one line redrawn in place, else
 * about ten lines a run and always the last. */
typedef struct da_ticker {
    int tty;
    long next;                /* the count that prints the next line off a terminal */
    double t0;                /* da_now_s() when the stream started */
} da_ticker;

typedef struct da_chunks {
    da_pipeline *pipe;
    const da_sample_opts *opts;
    da_step_cb step_cb;       /* NULL, or called after every sampler step */
    void *step_user;
    const da_refiner *refiner;   /* NULL, or generation through da_loop_generate (not with step_cb) */
    const da_loop_opts *loop;    /* with refiner; writer seeds da_loop_refine_seed(seed) */
    int batch;                /* images per pipeline call */
    long total;               /* images in the stream, the last chunk takes what is left;
                               * 0: no end, every chunk has batch images until score stops it */
    int keep_latents;         /* 1: chunk latents are kept (da_pipeline_generate's out_latents) */
    /* prompts[b] and seeds[b] of images first .. first + n - 1 */
    da_status (*plan)(void *plan_user, da_chunk *ch);
    void *plan_user;
    /* the generated chunk; *stop = 1 ends the stream after it */
    da_status (*score)(void *user, const da_chunk *ch, int *stop);
    /* after each scored chunk; NULL: no progress */
    void (*progress)(void *user, da_ticker *t);
    void *user;
} da_chunks;

da_status da_chunks_run(const da_chunks *d);

/* The evaluations' plan: image j is prompt j / K with seed
 * da_eval_image_seed(image_seed, split, j / K, j % K). */
typedef struct da_chunk_grid {
    const char *prompts;      /* (P, DA_CAPTION_MAX) */
    int n_seeds;              /* K */
    uint64_t image_seed;
    da_split split;
} da_chunk_grid;

da_status da_chunks_plan_grid(void *grid, da_chunk *ch);

/* 1 when a line is due after `done` of `total` (and the next one is then
 * set); the caller prints it with da_ticker_print. */
int da_ticker_due(da_ticker *t, long done, long total);
/* The line: "\r" in front on a terminal, "\n" at the end off a terminal
 * and after the last line. */
void da_ticker_print(const da_ticker *t, int last, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "TAG images done/total  faithfulness F  S s  ETA m:ss" of the evaluations */
void da_ticker_faith(da_ticker *t, const char *tag, long done, long total, double faith_sum);

#endif
