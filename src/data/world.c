/* The shapes world: palette, held-out splits, the seeded scene generator and
 * the renderer. docs/shapes-world.md documents every constant here. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "data/world.h"

/* ---- palette and names ---------------------------------------------------- */

/* Saturated, pairwise far apart in RGB (closest pair: orange/yellow, 107 of
 * 255 in Euclidean distance) so nearest-palette classification has room for
 * noise; none is near a background colour. */
static const uint8_t COLOUR_RGB[DA_N_COLOURS][3] = {
    {230, 25, 25},   /* red */
    {20, 180, 40},   /* green */
    {30, 50, 230},   /* blue */
    {245, 235, 20},  /* yellow */
    {150, 40, 200},  /* purple */
    {255, 130, 0},   /* orange */
    {255, 120, 200}, /* pink */
    {20, 220, 230},  /* cyan */
};
static const uint8_t BACKGROUND_RGB[DA_N_BACKGROUNDS][3] = {
    {255, 255, 255}, /* white */
    {0, 0, 0},       /* black */
    {128, 128, 128}, /* gray */
};
static const char *const COLOUR_NAME[DA_N_COLOURS] = {
    "red", "green", "blue", "yellow", "purple", "orange", "pink", "cyan"};
static const char *const BACKGROUND_NAME[DA_N_BACKGROUNDS] = {"white", "black", "gray"};
static const char *const SHAPE_NAME[DA_N_SHAPES] = {"circle", "square", "triangle"};
static const char *const SIZE_NAME[DA_N_SIZES] = {"small", "large"};
static const char *const RELATION_NAME[DA_N_RELATIONS] = {"left of", "right of", "above", "below"};

#define NAME_OR_NULL(table, n, i) ((i) >= 0 && (i) < (n) ? table[i] : NULL)
const char *da_colour_name(int c) { return NAME_OR_NULL(COLOUR_NAME, DA_N_COLOURS, c); }
const char *da_background_name(int b) { return NAME_OR_NULL(BACKGROUND_NAME, DA_N_BACKGROUNDS, b); }
const char *da_shape_name(int s) { return NAME_OR_NULL(SHAPE_NAME, DA_N_SHAPES, s); }
const char *da_size_name(int s) { return NAME_OR_NULL(SIZE_NAME, DA_N_SIZES, s); }
const char *da_relation_name(int r) { return NAME_OR_NULL(RELATION_NAME, DA_N_RELATIONS, r); }
const uint8_t *da_colour_rgb(int c) { return NAME_OR_NULL(COLOUR_RGB, DA_N_COLOURS, c); }
const uint8_t *da_background_rgb(int b) { return NAME_OR_NULL(BACKGROUND_RGB, DA_N_BACKGROUNDS, b); }

/* ---- splits --------------------------------------------------------------- */

/* 4 of the 24 colour-shape pairs: four different colours, every shape held
 * out at most twice, so each colour and each shape is still seen in training. */
static const int HELDOUT_PAIRS[][2] = {
    {DA_BLUE, DA_TRIANGLE}, {DA_YELLOW, DA_CIRCLE}, {DA_PINK, DA_SQUARE}, {DA_CYAN, DA_TRIANGLE}};

/* Two layouts, each with its converse wording, so the geometry itself is
 * unseen in training (not only one way of saying it): 4 of the 36 triples. */
static const int HELDOUT_TRIPLES[][3] = {
    {DA_CIRCLE, DA_ABOVE, DA_TRIANGLE}, {DA_TRIANGLE, DA_BELOW, DA_CIRCLE},
    {DA_SQUARE, DA_RIGHT_OF, DA_CIRCLE}, {DA_CIRCLE, DA_LEFT_OF, DA_SQUARE}};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

int da_world_pair_heldout(int colour, int shape)
{
    for (int i = 0; i < COUNT(HELDOUT_PAIRS); i++)
        if (HELDOUT_PAIRS[i][0] == colour && HELDOUT_PAIRS[i][1] == shape) return 1;
    return 0;
}

int da_world_triple_heldout(int shape0, int relation, int shape1)
{
    for (int i = 0; i < COUNT(HELDOUT_TRIPLES); i++)
        if (HELDOUT_TRIPLES[i][0] == shape0 && HELDOUT_TRIPLES[i][1] == relation &&
            HELDOUT_TRIPLES[i][2] == shape1)
            return 1;
    return 0;
}

unsigned da_scene_heldout(const da_scene *s)
{
    unsigned bits = 0;
    for (int i = 0; i < s->n_objects && i < DA_MAX_OBJECTS; i++)
        if (da_world_pair_heldout(s->obj[i].colour, s->obj[i].shape)) bits |= DA_HELDOUT_PAIR;
    if (s->n_objects == 2 && da_world_triple_heldout(s->obj[0].shape, s->relation, s->obj[1].shape))
        bits |= DA_HELDOUT_RELATION;
    return bits;
}

/* ---- generator ------------------------------------------------------------ */

#define MARGIN 1   /* free pixels between an object and the image border */
#define GAP 2      /* free pixels between two objects along the relation axis */
static const int EXTENT[DA_N_SIZES][3] = {{7, 8, 9}, {12, 13, 14}};  /* d in pixels */

/* uniform in [0, n): the same draw as torch.randint(0, n) */
static int rnd(da_rng *r, int n) { return (int)(da_rng_u32(r) % (uint32_t)n); }

static void sample_attributes(da_rng *r, int n_objects, da_scene *s)
{
    memset(s, 0, sizeof *s);
    s->n_objects = n_objects;
    for (int i = 0; i < s->n_objects; i++) {
        da_object *o = &s->obj[i];
        o->colour = rnd(r, DA_N_COLOURS);
        o->shape = rnd(r, DA_N_SHAPES);
        o->size = rnd(r, DA_N_SIZES);
    }
    /* two identical objects would make the caption ambiguous to check */
    while (s->n_objects == 2 && s->obj[1].colour == s->obj[0].colour &&
           s->obj[1].shape == s->obj[0].shape) {
        s->obj[1].colour = rnd(r, DA_N_COLOURS);
        s->obj[1].shape = rnd(r, DA_N_SHAPES);
    }
    s->relation = s->n_objects == 2 ? rnd(r, DA_N_RELATIONS) : DA_ANY;
    s->background = rnd(r, DA_N_BACKGROUNDS);
}

/* Along the relation axis: the low (left/top) object first, a gap of at
 * least GAP, both inside the margins; the free slack is split uniformly.
 * Across it: centres closer than half the along-axis centre distance, so the
 * relation holds with a 2:1 dominance and a detector cannot read it as the
 * other axis. Positions in "twice the centre" units stay integers. */
static void place_pair(da_rng *r, da_scene *s)
{
    int rel = s->relation;
    int horizontal = rel == DA_LEFT_OF || rel == DA_RIGHT_OF;
    int lo_first = rel == DA_LEFT_OF || rel == DA_ABOVE;
    da_object *lo = &s->obj[lo_first ? 0 : 1], *hi = &s->obj[lo_first ? 1 : 0];
    int slack = DA_IMG - 2 * MARGIN - lo->d - hi->d - GAP;
    assert(slack >= 0);  /* EXTENT <= 14: 32 - 2*1 - 14 - 14 - 2 = 0 */
    int u = rnd(r, slack + 1), v = rnd(r, slack + 1);
    int a = u < v ? u : v, b = u < v ? v : u;
    int lo_along = MARGIN + a;
    int hi_along = lo_along + lo->d + GAP + (b - a);
    int along2 = (2 * hi_along + hi->d) - (2 * lo_along + lo->d);
    int lo_cross = 0, hi_cross = 0, ok = 0;
    for (int tries = 0; tries < 100 && !ok; tries++) {
        lo_cross = MARGIN + rnd(r, DA_IMG - 2 * MARGIN - lo->d + 1);
        hi_cross = MARGIN + rnd(r, DA_IMG - 2 * MARGIN - hi->d + 1);
        ok = 2 * abs((2 * lo_cross + lo->d) - (2 * hi_cross + hi->d)) <= along2;
    }
    if (!ok) {  /* centre both across the image: always valid */
        lo_cross = (DA_IMG - lo->d) / 2;
        hi_cross = (DA_IMG - hi->d) / 2;
    }
    if (horizontal) {
        lo->x = lo_along; hi->x = hi_along; lo->y = lo_cross; hi->y = hi_cross;
    } else {
        lo->y = lo_along; hi->y = hi_along; lo->x = lo_cross; hi->x = hi_cross;
    }
}

static void place(da_rng *r, da_scene *s)
{
    for (int i = 0; i < s->n_objects; i++)
        s->obj[i].d = EXTENT[s->obj[i].size][rnd(r, 3)];
    if (s->n_objects == 1) {
        da_object *o = &s->obj[0];
        o->x = MARGIN + rnd(r, DA_IMG - 2 * MARGIN - o->d + 1);
        o->y = MARGIN + rnd(r, DA_IMG - 2 * MARGIN - o->d + 1);
    } else {
        place_pair(r, s);
    }
}

/* Rejection on the attributes alone (cheap, placement comes after): a train
 * scene must hold no held-out element; a held-out scene must hold the kind
 * drawn first, so pairs and layouts are equally represented. The object
 * count is drawn before the loop so rejection does not skew it: train scenes
 * have one or two objects with probability 1/2 each. */
da_status da_world_sample(da_rng *rng, da_split split, da_scene *s)
{
    if (!rng || !s) return da_fail(DA_ERR_INVALID, "da_world_sample: NULL argument");
    if (split != DA_SPLIT_TRAIN && split != DA_SPLIT_HELDOUT)
        return da_fail(DA_ERR_INVALID, "da_world_sample: unknown split %d", (int)split);
    unsigned need = 0;
    if (split == DA_SPLIT_HELDOUT) need = rnd(rng, 2) ? DA_HELDOUT_RELATION : DA_HELDOUT_PAIR;
    int n_objects = need == DA_HELDOUT_RELATION ? 2 : 1 + rnd(rng, 2);
    for (;;) {
        sample_attributes(rng, n_objects, s);
        unsigned bits = da_scene_heldout(s);
        if (split == DA_SPLIT_TRAIN ? bits == 0 : (bits & need) != 0) break;
    }
    place(rng, s);
    return DA_OK;
}

/* ---- renderer ------------------------------------------------------------- */

int dw_scene_valid(const da_scene *s)
{
    if (s->n_objects < 1 || s->n_objects > DA_MAX_OBJECTS) return 0;
    if (s->background < 0 || s->background >= DA_N_BACKGROUNDS) return 0;
    if (s->n_objects == 2 && (s->relation < 0 || s->relation >= DA_N_RELATIONS)) return 0;
    for (int i = 0; i < s->n_objects; i++) {
        const da_object *o = &s->obj[i];
        if (o->colour < 0 || o->colour >= DA_N_COLOURS || o->shape < 0 || o->shape >= DA_N_SHAPES ||
            o->size < 0 || o->size >= DA_N_SIZES)
            return 0;
        if (o->d < 1 || o->x < 0 || o->y < 0 || o->x + o->d > DA_IMG || o->y + o->d > DA_IMG) return 0;
    }
    return 1;
}

/* Is the pixel centre (px, py) inside the object? All quantities are
 * multiples of 1/2, so every comparison is exact in float: hard edges that
 * are identical on every machine. Triangles are upright isosceles: apex at
 * the top centre, base = height = d along the bottom edge. */
static int covers(const da_object *o, float px, float py)
{
    float r = 0.5f * (float)o->d;
    float cx = (float)o->x + r, cy = (float)o->y + r;
    switch (o->shape) {
    case DA_CIRCLE: return (px - cx) * (px - cx) + (py - cy) * (py - cy) <= r * r;
    case DA_SQUARE: return 1;
    default: {
        float depth = py - (float)o->y;          /* 0 at the apex, d at the base */
        float dx = px - cx;
        return (dx < 0 ? -dx : dx) <= 0.5f * depth;
    }
    }
}

/* The plain style: background, then every object's pixels in its colour.
 * img (3, DA_IMG, DA_IMG); s is valid. */
static void draw_plain(const da_scene *s, float *img)
{
    const int HW = DA_IMG * DA_IMG;
    const uint8_t *bg = BACKGROUND_RGB[s->background];
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < HW; p++) img[c * HW + p] = (float)bg[c] / 255.0f;
    for (int i = 0; i < s->n_objects; i++) {
        const da_object *o = &s->obj[i];
        const uint8_t *rgb = COLOUR_RGB[o->colour];
        for (int y = o->y; y < o->y + o->d; y++)
            for (int x = o->x; x < o->x + o->d; x++) {
                if (!covers(o, (float)x + 0.5f, (float)y + 0.5f)) continue;
                for (int c = 0; c < 3; c++) img[c * HW + y * DA_IMG + x] = (float)rgb[c] / 255.0f;
            }
    }
}

/* img (3, DA_IMG, DA_IMG) */
da_status da_world_render(const da_scene *s, float *img)
{
    if (!s || !img) return da_fail(DA_ERR_INVALID, "da_world_render: NULL argument");
    if (!dw_scene_valid(s)) return da_fail(DA_ERR_INVALID, "da_world_render: invalid scene");
    draw_plain(s, img);
    return DA_OK;
}

/* ---- styles --------------------------------------------------------------- */

static const char *const STYLE_NAME[DA_N_STYLES] = {"plain", "outline"};

/* The outline's colour on each background: near-black on white and gray;
 * on black a dark line could not be seen, so there it is near-white. Each
 * is at least 120 (Euclidean, 0-255 units) from its background and from
 * every object colour (closest: near-white and pink, 122), so the detector
 * never takes an outline pixel for either, and the nearest palette class
 * of an outline pixel is a background class: the objects' components, and
 * with them every detection, are those of the plain render. */
static const uint8_t OUTLINE_RGB[DA_N_BACKGROUNDS][3] = {
    {20, 20, 20},    /* on white */
    {235, 235, 235}, /* on black */
    {20, 20, 20},    /* on gray */
};

const char *da_style_name(int style) { return NAME_OR_NULL(STYLE_NAME, DA_N_STYLES, style); }
const uint8_t *da_outline_rgb(int background) { return NAME_OR_NULL(OUTLINE_RGB, DA_N_BACKGROUNDS, background); }

da_status da_style_parse(const char *name, da_style *out)
{
    for (int k = 0; name && k < DA_N_STYLES; k++)
        if (!strcmp(name, STYLE_NAME[k])) {
            *out = (da_style)k;
            return DA_OK;
        }
    return da_fail(DA_ERR_INVALID, "unknown style '%s' (expected plain or outline)", name ? name : "(null)");
}

/* mask (DA_IMG * DA_IMG): 1 where an object covers the pixel */
static void object_mask(const da_scene *s, uint8_t *mask)
{
    memset(mask, 0, DA_IMG * DA_IMG);
    for (int i = 0; i < s->n_objects; i++) {
        const da_object *o = &s->obj[i];
        for (int y = o->y; y < o->y + o->d; y++)
            for (int x = o->x; x < o->x + o->d; x++)
                if (covers(o, (float)x + 0.5f, (float)y + 0.5f)) mask[y * DA_IMG + x] = 1;
    }
}

/* The outline: every background pixel with an object pixel among its 4
 * neighbours. It lies outside the objects, so every object pixel keeps its
 * colour (the detector sees the same objects), and objects never touch
 * (2 px apart at least), so one object's outline never covers another.
 * 4-neighbours, not 8: a diagonal ring would add corner pixels on the image
 * border, and two large objects at the margin could then outvote the
 * background on the border the detector reads it from (56 of 124 at most
 * with 4-neighbours). */
static void draw_outline(const da_scene *s, float *img)
{
    enum { HW = DA_IMG * DA_IMG };
    uint8_t mask[HW];
    object_mask(s, mask);
    const uint8_t *rgb = OUTLINE_RGB[s->background];
    for (int p = 0; p < HW; p++) {
        int x = p % DA_IMG, y = p / DA_IMG;
        if (mask[p]) continue;
        int ring = (x > 0 && mask[p - 1]) || (x < DA_IMG - 1 && mask[p + 1]) ||
                   (y > 0 && mask[p - DA_IMG]) || (y < DA_IMG - 1 && mask[p + DA_IMG]);
        if (ring)
            for (int c = 0; c < 3; c++) img[c * HW + p] = (float)rgb[c] / 255.0f;
    }
}

da_status da_world_render_style(const da_scene *s, da_style style, float *img)
{
    if (!s || !img) return da_fail(DA_ERR_INVALID, "da_world_render_style: NULL argument");
    if (!dw_scene_valid(s)) return da_fail(DA_ERR_INVALID, "da_world_render_style: invalid scene");
    if (style != DA_STYLE_PLAIN && style != DA_STYLE_OUTLINE)
        return da_fail(DA_ERR_INVALID, "da_world_render_style: unknown style %d", (int)style);
    draw_plain(s, img);
    if (style == DA_STYLE_OUTLINE) draw_outline(s, img);
    return DA_OK;
}

/* (3, H, W) floats -> H*W*3 bytes; NaN maps to 0 */
void da_image_to_rgb8(const float *img, int H, int W, uint8_t *rgb)
{
    size_t HW = (size_t)H * (size_t)W;
    for (size_t p = 0; p < HW; p++)
        for (int c = 0; c < 3; c++) {
            float v = img[(size_t)c * HW + p];
            v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;
            rgb[p * 3 + c] = (uint8_t)(v * 255.0f + 0.5f);
        }
}

/* ---- examples and evaluation prompts ------------------------------------- */

da_status da_world_example(da_rng *rng, da_split split, da_scene *s, float *img,
                           char *caption, size_t cap)
{
    if (!s) return da_fail(DA_ERR_INVALID, "da_world_example: NULL scene");
    da_status st = da_world_sample(rng, split, s);
    if (st == DA_OK && img) st = da_world_render(s, img);
    if (st == DA_OK && caption) st = da_world_caption(rng, s, caption, cap);
    return st;
}

/* Meaning of a scene as a small integer tuple; two-object scenes are turned
 * so the relation is left-of or above ("A right of B" means "B left of A"). */
static void scene_key(const da_scene *s, int key[9])
{
    int swap = s->n_objects == 2 && (s->relation == DA_RIGHT_OF || s->relation == DA_BELOW);
    int rel = s->relation;
    if (swap) rel = rel == DA_RIGHT_OF ? DA_LEFT_OF : DA_ABOVE;
    memset(key, 0xff, 9 * sizeof(int));
    key[0] = s->n_objects;
    key[1] = rel;
    key[2] = s->background;
    for (int i = 0; i < s->n_objects; i++) {
        const da_object *o = &s->obj[swap ? 1 - i : i];
        key[3 + 3 * i] = o->colour;
        key[4 + 3 * i] = o->shape;
        key[5 + 3 * i] = o->size;
    }
}

da_status da_world_prompts(da_rng *rng, da_split split, int n, da_scene *scenes,
                           char *texts, size_t stride)
{
    if (!rng || !texts || n < 0) return da_fail(DA_ERR_INVALID, "da_world_prompts: bad argument");
    if (stride < DA_CAPTION_MAX)
        return da_fail(DA_ERR_INVALID, "da_world_prompts: stride %zu < DA_CAPTION_MAX", stride);
    int (*keys)[9] = malloc((size_t)(n ? n : 1) * sizeof *keys);
    if (!keys) return da_fail(DA_ERR_NOMEM, "da_world_prompts: out of memory");
    da_status st = DA_OK;
    long budget = 1000L + 200L * n;  /* generous: only near-exhausted splits run out */
    int have = 0;
    while (have < n && st == DA_OK) {
        if (budget-- <= 0) {
            st = da_fail(DA_ERR_RANGE, "da_world_prompts: found only %d distinct scenes of %d", have, n);
            break;
        }
        da_scene s;
        st = da_world_sample(rng, split, &s);
        if (st != DA_OK) break;
        int key[9], dup = 0;
        scene_key(&s, key);
        for (int j = 0; j < have && !dup; j++) dup = memcmp(keys[j], key, sizeof key) == 0;
        if (dup) continue;
        memcpy(keys[have], key, sizeof key);
        if (scenes) scenes[have] = s;
        st = da_world_caption(rng, &s, texts + (size_t)have * stride, stride);
        have++;
    }
    free(keys);
    return st;
}
