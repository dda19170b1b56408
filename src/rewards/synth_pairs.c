/* Synthetic preference pairs (docs/rater.md): what the preference model
 * trains on before a diffusion model exists. A scene and its caption come
 * from the shapes-world generator; each image of the pair is, with
 * probability
 *   1/4  the ground-truth render,
 *   1/4  a faithful variant: extents redrawn within their size class and the
 *        objects re-placed so the relation still holds (taste differs:
 *        size, centring),
 *   1/2  a perturbed render: one object's colour, shape or size class, a
 *        random re-placement (the relation may break), or the background;
 * and then, with probability 1/4, Gaussian noise (sigma 0.02 .. 0.12) or a
 * 3x3 box blur. The two images always differ. */
#include <stdlib.h>
#include <string.h>

#include "dalign/rewards.h"

#define MARGIN 1   /* free pixels to the border, as the generator keeps */
#define GAP 2      /* free pixels between two objects */
#define PLACE_TRIES 200

/* the generator's extents per size class (docs/shapes-world.md) */
static const int EXTENT[DA_N_SIZES][3] = {{7, 8, 9}, {12, 13, 14}};

static int rnd(da_rng *r, int n) { return (int)(da_rng_u32(r) % (uint32_t)n); }

static float uniform(da_rng *r)
{
    float v;
    da_rand(r, &v, 1);
    return v;
}

/* boxes of a and b are at least GAP apart along x or y */
static int apart(const da_object *a, const da_object *b)
{
    return a->x + a->d + GAP <= b->x || b->x + b->d + GAP <= a->x ||
           a->y + a->d + GAP <= b->y || b->y + b->d + GAP <= a->y;
}

/* obj[0] REL obj[1] holds with the generator's 2:1 dominance of the axis
 * (box centres, in doubled units to stay integer) */
static int relation_holds(const da_scene *s)
{
    const da_object *a = &s->obj[0], *b = &s->obj[1];
    int dx = (2 * b->x + b->d) - (2 * a->x + a->d), dy = (2 * b->y + b->d) - (2 * a->y + a->d);
    switch (s->relation) {
    case DA_LEFT_OF: return dx > 0 && abs(dy) * 2 <= dx;
    case DA_RIGHT_OF: return dx < 0 && abs(dy) * 2 <= -dx;
    case DA_ABOVE: return dy > 0 && abs(dx) * 2 <= dy;
    default: return dy < 0 && abs(dx) * 2 <= -dy;
    }
}

static void place_one(da_rng *r, da_object *o)
{
    o->x = MARGIN + rnd(r, DA_IMG - 2 * MARGIN - o->d + 1);
    o->y = MARGIN + rnd(r, DA_IMG - 2 * MARGIN - o->d + 1);
}

/* new uniform positions, objects apart; keep_relation: also the stated
 * relation. Returns 0 and restores the old placement when no try succeeds. */
static int replace_objects(da_rng *r, da_scene *s, int keep_relation)
{
    da_scene old = *s;
    for (int tries = 0; tries < PLACE_TRIES; tries++) {
        for (int i = 0; i < s->n_objects; i++) place_one(r, &s->obj[i]);
        if (s->n_objects == 1) return 1;
        if (apart(&s->obj[0], &s->obj[1]) && (!keep_relation || relation_holds(s))) return 1;
    }
    *s = old;
    return 0;
}

/* a value in [0, n) other than `old` */
static int other(da_rng *r, int n, int old) { return (old + 1 + rnd(r, n - 1)) % n; }

/* two objects never share both colour and shape (the caption would be ambiguous) */
static int twins(const da_scene *s)
{
    return s->n_objects == 2 && s->obj[0].colour == s->obj[1].colour && s->obj[0].shape == s->obj[1].shape;
}

static void clamp_inside(da_object *o)
{
    if (o->x + o->d > DA_IMG - MARGIN) o->x = DA_IMG - MARGIN - o->d;
    if (o->y + o->d > DA_IMG - MARGIN) o->y = DA_IMG - MARGIN - o->d;
}

/* one attribute of the scene goes wrong */
static void perturb_scene(da_rng *r, da_scene *s)
{
    da_object *o = &s->obj[rnd(r, s->n_objects)];
    switch (rnd(r, 5)) {
    case 0: do o->colour = other(r, DA_N_COLOURS, o->colour); while (twins(s)); break;
    case 1: do o->shape = other(r, DA_N_SHAPES, o->shape); while (twins(s)); break;
    case 2:
        o->size = 1 - o->size;
        o->d = EXTENT[o->size][rnd(r, 3)];
        clamp_inside(o);
        break;
    case 3: replace_objects(r, s, 0); break;
    default: s->background = other(r, DA_N_BACKGROUNDS, s->background); break;
    }
}

/* 3x3 box blur; border pixels average the neighbours that exist */
static void box_blur(float *img)
{
    float tmp[DA_IMG_FLOATS];
    memcpy(tmp, img, sizeof tmp);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < DA_IMG; i++)
            for (int j = 0; j < DA_IMG; j++) {
                float s = 0.0f;
                int n = 0;
                for (int di = -1; di <= 1; di++)
                    for (int dj = -1; dj <= 1; dj++) {
                        int y = i + di, x = j + dj;
                        if (y < 0 || x < 0 || y >= DA_IMG || x >= DA_IMG) continue;
                        s += tmp[(c * DA_IMG + y) * DA_IMG + x];
                        n++;
                    }
                img[(c * DA_IMG + i) * DA_IMG + j] = s / (float)n;
            }
}

static void add_noise(da_rng *r, float *img, float sigma)
{
    float eps[DA_IMG_FLOATS];
    da_randn(r, eps, DA_IMG_FLOATS);
    for (int p = 0; p < DA_IMG_FLOATS; p++) {
        float v = img[p] + sigma * eps[p];
        img[p] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    }
}

/* one image of a pair for the ground-truth scene gt */
static da_status variant(da_rng *r, const da_scene *gt, float *img)
{
    da_scene s = *gt;
    int kind = rnd(r, 4);
    if (kind == 1) {
        for (int i = 0; i < s.n_objects; i++) s.obj[i].d = EXTENT[s.obj[i].size][rnd(r, 3)];
        if (!replace_objects(r, &s, 1)) s = *gt;   /* the new extents may not fit the old places */
    } else if (kind >= 2) {
        perturb_scene(r, &s);
    }
    da_status st = da_world_render(&s, img);
    if (st) return st;
    if (rnd(r, 4) == 0) {
        if (rnd(r, 2)) add_noise(r, img, 0.02f + 0.10f * uniform(r));
        else box_blur(img);
    }
    return DA_OK;
}

da_status da_synth_pair(da_rng *rng, da_split split, float *img_a, float *img_b, char *prompt, size_t cap)
{
    if (!rng || !img_a || !img_b || !prompt) return da_fail(DA_ERR_INVALID, "da_synth_pair: NULL argument");
    da_scene s;
    da_status st = da_world_example(rng, split, &s, NULL, prompt, cap);
    if (st) return st;
    if ((st = variant(rng, &s, img_a))) return st;
    for (int tries = 0; tries < 16; tries++) {
        if ((st = variant(rng, &s, img_b))) return st;
        if (memcmp(img_a, img_b, DA_IMG_FLOATS * sizeof(float))) return DA_OK;
    }
    add_noise(rng, img_b, 0.05f);  /* 16 identical draws in a row: make them differ */
    return DA_OK;
}
