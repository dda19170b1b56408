/* Generate a stream of images in fixed chunks, score each chunk, report
 * progress (chunks.h). */
#include "eval/chunks.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/log.h"
#include "dalign/eval.h"

static void chunk_free(da_chunk *ch)
{
    free(ch->text);
    free(ch->prompts);
    free(ch->seeds);
    free(ch->refine_seeds);
    free(ch->images);
    free(ch->latents);
}

/* buffers for B images; latents of `per` floats each when per > 0 */
static da_status chunk_alloc(da_chunk *ch, int B, size_t per)
{
    ch->text = calloc((size_t)B, DA_CAPTION_MAX);
    ch->prompts = malloc((size_t)B * sizeof *ch->prompts);
    ch->seeds = malloc((size_t)B * sizeof *ch->seeds);
    ch->refine_seeds = malloc((size_t)B * sizeof *ch->refine_seeds);
    ch->images = malloc((size_t)B * DA_IMG_FLOATS * sizeof(float));
    ch->latents = per ? malloc((size_t)B * per * sizeof(float)) : NULL;
    if (!ch->text || !ch->prompts || !ch->seeds || !ch->refine_seeds || !ch->images || (per && !ch->latents))
        return da_fail(DA_ERR_NOMEM, "out of memory for a chunk of %d images", B);
    for (int b = 0; b < B; b++) ch->prompts[b] = ch->text + (size_t)b * DA_CAPTION_MAX;
    return DA_OK;
}

/* one chunk: plan, generate, score */
static da_status run_chunk(const da_chunks *d, da_chunk *ch, int *stop)
{
    da_status s = d->plan(d->plan_user, ch);
    for (int b = 0; b < ch->n; b++) ch->refine_seeds[b] = da_loop_refine_seed(ch->seeds[b]);
    if (s == DA_OK && d->refiner)
        s = da_loop_generate(d->pipe, d->refiner, d->opts, d->loop, ch->prompts, ch->seeds, ch->refine_seeds, ch->n,
                             NULL, ch->images, ch->latents);
    else if (s == DA_OK)
        s = da_pipeline_generate(d->pipe, d->opts, ch->prompts, NULL, ch->seeds, ch->n, d->step_cb, d->step_user,
                                 ch->images, ch->latents);
    if (s == DA_OK) s = d->score(d->user, ch, stop);
    return s;
}

da_status da_chunks_run(const da_chunks *d)
{
    const da_pipeline *p = d->pipe;
    size_t per = d->keep_latents ? (size_t)p->vae->cfg.latent_channels * p->latent_h * p->latent_w : 0;
    da_chunk ch = {0};
    da_ticker t = {.tty = isatty(2), .next = 0, .t0 = da_now_s()};
    da_status s = chunk_alloc(&ch, d->batch, per);
    int stop = 0;
    for (long first = 0; s == DA_OK && !stop && (d->total == 0 || first < d->total); first += d->batch) {
        ch.first = first;
        ch.n = d->total && d->total - first < d->batch ? (int)(d->total - first) : d->batch;
        s = run_chunk(d, &ch, &stop);
        if (s == DA_OK && d->progress) d->progress(d->user, &t);
    }
    chunk_free(&ch);
    return s;
}

da_status da_chunks_plan_grid(void *grid, da_chunk *ch)
{
    const da_chunk_grid *g = grid;
    for (int b = 0; b < ch->n; b++) {
        long j = ch->first + b;
        int p = (int)(j / g->n_seeds), k = (int)(j % g->n_seeds);
        ch->prompts[b] = g->prompts + (size_t)p * DA_CAPTION_MAX;
        ch->seeds[b] = da_eval_image_seed(g->image_seed, g->split, p, k);
    }
    return DA_OK;
}

/* ---- progress -------------------------------------------------------------------- */

int da_ticker_due(da_ticker *t, long done, long total)
{
    if (!t->tty && done != total && done < t->next) return 0;
    t->next = done + (total / 10 > 0 ? total / 10 : 1);
    return 1;
}

void da_ticker_print(const da_ticker *t, int last, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (da_log_is_custom()) da_log(DA_LOG_PROGRESS, "%s", line);   /* the host program's log */
    else fprintf(stderr, "%s%s%s", t->tty ? "\r" : "", line, t->tty && !last ? "" : "\n");
}

void da_ticker_faith(da_ticker *t, const char *tag, long done, long total, double faith_sum)
{
    if (!da_ticker_due(t, done, total)) return;
    double el = da_now_s() - t->t0, eta = done ? el * (total - done) / done : 0.0;
    da_ticker_print(t, done == total, "%s images %ld/%ld  faithfulness %.3f  %.0f s  ETA %d:%02d", tag, done, total,
                    done ? faith_sum / done : 0.0, el, (int)eta / 60, (int)eta % 60);
}
