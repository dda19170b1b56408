/* Detector (image -> objects) and faithfulness (image + prompt -> clauses).
 *
 * 1. every pixel takes the class of its nearest palette colour (8 object
 *    colours + 3 backgrounds, squared RGB distance);
 * 2. the background is the most common class on the image border; then
 *    blends of the background with an object colour (soft edges) go to the
 *    side they are nearer to (blend_class);
 * 3. 4-connected components of pixels of one object colour are candidates;
 *    tiny ones (noise) and thin ones (the mixed-colour rim a blurry edge
 *    leaves around an object) are dropped;
 * 4. shape from the fill ratio of the bounding box and the vertical offset of
 *    the centroid (an upright triangle's centroid sits below its box centre);
 *    size from the area turned into an extent with the shape's ideal fill.
 * Thresholds come from the rendered shapes (docs/shapes-world.md, table). */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/world.h"

#define N_CLASSES (DA_N_COLOURS + DA_N_BACKGROUNDS)  /* object colours first */
#define MIN_AREA 12       /* smallest rendered object: triangle d=7, 25 px */
#define MIN_CORE 3        /* pixels with all 4 neighbours in the component; that triangle has 8, a 1-2 px rim ~0 */
#define SQUARE_FILL 0.90f /* squares fill 1.0, circles 0.75-0.86 */
#define TRIANGLE_FILL 0.66f /* triangles fill 0.50-0.60 */
#define TRIANGLE_DROP 0.08f /* triangles' centroid sits 0.11-0.17 box heights below the centre, others 0 */
#define LARGE_EXTENT 10.5f  /* extents: small 6.9-9.4, large 11.9-14.1 px */
#define MAX_CANDIDATES 128

static const float IDEAL_FILL[DA_N_SHAPES] = {0.78539816f, 1.0f, 0.5f};  /* pi/4, 1, 1/2 */

static const uint8_t *class_rgb(int k)
{
    return k < DA_N_COLOURS ? da_colour_rgb(k) : da_background_rgb(k - DA_N_COLOURS);
}

typedef struct palette {
    float rgb[N_CLASSES][3];
} palette;

static void palette_init(palette *pal)
{
    for (int k = 0; k < N_CLASSES; k++)
        for (int c = 0; c < 3; c++) pal->rgb[k][c] = (float)class_rgb(k)[c] / 255.0f;
}

static void pixel_rgb(const float *img, int p, float rgb[3])
{
    for (int c = 0; c < 3; c++) rgb[c] = img[c * DA_IMG * DA_IMG + p];
}

static float dist2(const float *a, const float *b)
{
    float d = 0.0f;
    for (int c = 0; c < 3; c++) d += (a[c] - b[c]) * (a[c] - b[c]);
    return d;
}

/* Nearest palette class; the first class wins a tie and a NaN pixel stays class 0. */
static int nearest_class(const palette *pal, const float rgb[3], float *best_d)
{
    int best = 0;
    *best_d = INFINITY;
    for (int k = 0; k < N_CLASSES; k++) {
        float d = dist2(rgb, pal->rgb[k]);
        if (d < *best_d) { *best_d = d; best = k; }
    }
    return best;
}

/* Second pass, once the background class bg is known: a blurred edge is a
 * blend of the background and an object colour, and a blend can lie nearer
 * a third palette colour (pink half on black is nearly gray). A pixel that
 * lies nearer the segment bg -> k than any palette colour belongs to k when
 * it is at least half k, else to the background. Only colours k that the
 * first pass found in the 3x3 neighbourhood (`near`, a bit set) are tried:
 * segments to every colour would cut through the space between palette
 * colours and turn noisy object pixels into other colours. Exact palette
 * pixels keep their class (distance 0, and ties keep the palette class). */
static int blend_class(const palette *pal, const float rgb[3], int bg, unsigned near)
{
    float best_d;
    int best = nearest_class(pal, rgb, &best_d);
    const float *b = pal->rgb[bg];
    for (int k = 0; k < DA_N_COLOURS; k++) {
        if (k == bg || !(near >> k & 1u)) continue;
        const float *c = pal->rgb[k];
        float dot = 0.0f, len2 = 0.0f, q[3];
        for (int i = 0; i < 3; i++) {
            dot += (rgb[i] - b[i]) * (c[i] - b[i]);
            len2 += (c[i] - b[i]) * (c[i] - b[i]);
        }
        float a = dot / len2;
        a = a < 0.0f ? 0.0f : (a > 1.0f ? 1.0f : a);
        for (int i = 0; i < 3; i++) q[i] = b[i] + a * (c[i] - b[i]);
        float d = dist2(rgb, q);
        if (d < best_d) { best_d = d; best = a >= 0.5f ? k : bg; }
    }
    return best;
}

/* Bit set of the first-pass classes in the 3x3 neighbourhood of p. */
static unsigned neighbour_classes(const uint8_t *cls, int p)
{
    int x = p % DA_IMG, y = p / DA_IMG;
    unsigned near = 0;
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
            int xx = x + dx, yy = y + dy;
            if (xx >= 0 && xx < DA_IMG && yy >= 0 && yy < DA_IMG) near |= 1u << cls[yy * DA_IMG + xx];
        }
    return near;
}

/* Single-pixel specks and holes (noise): a pixel whose 4 neighbours all
 * agree on another class takes that class. Reads `in`, writes `out`. Rendered
 * shapes have no such pixel (a triangle's apex has background on 3 sides
 * only), so ground truth is unchanged. */
static void despeckle(uint8_t *out, const uint8_t *in)
{
    for (int p = 0; p < DA_IMG * DA_IMG; p++) {
        int x = p % DA_IMG, y = p / DA_IMG;
        out[p] = in[p];
        if (x == 0 || y == 0 || x == DA_IMG - 1 || y == DA_IMG - 1) continue;
        uint8_t c = in[p - 1];
        if (c != in[p] && in[p + 1] == c && in[p - DA_IMG] == c && in[p + DA_IMG] == c) out[p] = c;
    }
}

static int border_majority(const uint8_t *cls)
{
    int count[N_CLASSES] = {0};
    for (int i = 0; i < DA_IMG; i++) {
        count[cls[i]]++;                                   /* top row */
        count[cls[(DA_IMG - 1) * DA_IMG + i]]++;           /* bottom row */
        if (i > 0 && i < DA_IMG - 1) {
            count[cls[i * DA_IMG]]++;                      /* left column */
            count[cls[i * DA_IMG + DA_IMG - 1]]++;         /* right column */
        }
    }
    int best = 0;
    for (int k = 1; k < N_CLASSES; k++)
        if (count[k] > count[best]) best = k;
    return best;
}

typedef struct component {
    int id;          /* its label in the label map */
    int cls, area, core, x0, y0, x1, y1;
    double sx, sy;   /* sums of pixel centres */
} component;

/* Flood-fill the 4-connected component of `seed` (label it `id`). */
static component flood(const uint8_t *cls, int *label, int *stack, int seed, int id)
{
    component c = {id, cls[seed], 0, 0, DA_IMG, DA_IMG, -1, -1, 0.0, 0.0};
    int top = 0;
    stack[top++] = seed;
    label[seed] = id;
    while (top > 0) {
        int p = stack[--top], x = p % DA_IMG, y = p / DA_IMG;
        c.area++;
        c.sx += x + 0.5;
        c.sy += y + 0.5;
        if (x < c.x0) c.x0 = x;
        if (x > c.x1) c.x1 = x;
        if (y < c.y0) c.y0 = y;
        if (y > c.y1) c.y1 = y;
        const int nb[4] = {x > 0 ? p - 1 : -1, x < DA_IMG - 1 ? p + 1 : -1,
                           y > 0 ? p - DA_IMG : -1, y < DA_IMG - 1 ? p + DA_IMG : -1};
        int same = 0;
        for (int i = 0; i < 4; i++) {
            if (nb[i] < 0 || cls[nb[i]] != c.cls) continue;
            same++;
            if (label[nb[i]] < 0) { label[nb[i]] = id; stack[top++] = nb[i]; }
        }
        if (same == 4) c.core++;
    }
    return c;
}

static da_detection describe(const component *c)
{
    da_detection d;
    memset(&d, 0, sizeof d);
    int w = c->x1 - c->x0 + 1, h = c->y1 - c->y0 + 1;
    d.colour = c->cls;
    d.area = c->area;
    d.x0 = c->x0; d.y0 = c->y0; d.x1 = c->x1; d.y1 = c->y1;
    d.cx = (float)(c->sx / c->area);
    d.cy = (float)(c->sy / c->area);
    d.fill = (float)c->area / (float)(w * h);
    float drop = (d.cy - 0.5f * (float)(c->y0 + c->y1 + 1)) / (float)h;
    if (d.fill >= SQUARE_FILL) d.shape = DA_SQUARE;
    else if (d.fill < TRIANGLE_FILL || drop >= TRIANGLE_DROP) d.shape = DA_TRIANGLE;
    else d.shape = DA_CIRCLE;
    float extent = sqrtf((float)c->area / IDEAL_FILL[d.shape]);
    d.size = extent >= LARGE_EXTENT ? DA_LARGE : DA_SMALL;
    return d;
}

/* Pixel classes into cls (HW); returns the background class. */
static int classify(const float *img, uint8_t *cls)
{
    enum { HW = DA_IMG * DA_IMG };
    uint8_t first[HW], blended[HW];
    palette pal;
    palette_init(&pal);
    float rgb[3], unused;
    for (int p = 0; p < HW; p++) {
        pixel_rgb(img, p, rgb);
        first[p] = (uint8_t)nearest_class(&pal, rgb, &unused);
    }
    int bg = border_majority(first);
    for (int p = 0; p < HW; p++) {
        pixel_rgb(img, p, rgb);
        blended[p] = (uint8_t)blend_class(&pal, rgb, bg, neighbour_classes(first, p));
    }
    despeckle(cls, blended);
    return bg;
}

/* Components of object colours that pass the noise filters, largest first
 * (insertion sort: scan order among equal areas). Returns how many; label
 * (HW) gets each object-colour pixel's component id (-1: not one). */
static int find_components(const uint8_t *cls, int bg, component *cand, int *label)
{
    enum { HW = DA_IMG * DA_IMG };
    int stack[HW];
    for (int p = 0; p < HW; p++) label[p] = -1;
    int n = 0, id = 0;
    for (int p = 0; p < HW; p++) {
        if (label[p] >= 0 || cls[p] == bg || cls[p] >= DA_N_COLOURS) continue;
        component c = flood(cls, label, stack, p, id++);
        if (c.area < MIN_AREA || c.core < MIN_CORE) continue;
        assert(n < MAX_CANDIDATES);  /* disjoint, >= MIN_AREA each: at most 1024 / 12 */
        cand[n++] = c;
    }
    for (int i = 1; i < n; i++) {
        component c = cand[i];
        int j = i - 1;
        for (; j >= 0 && cand[j].area < c.area; j--) cand[j + 1] = cand[j];
        cand[j + 1] = c;
    }
    return n;
}

da_status da_detect(const float *img, da_detect_result *out)
{
    if (!img || !out) return da_fail(DA_ERR_INVALID, "da_detect: NULL argument");
    uint8_t cls[DA_IMG * DA_IMG];
    int label[DA_IMG * DA_IMG];
    int bg = classify(img, cls);
    component cand[MAX_CANDIDATES];
    int n = find_components(cls, bg, cand, label);
    memset(out, 0, sizeof *out);
    out->background = bg >= DA_N_COLOURS ? bg - DA_N_COLOURS : DA_ANY;
    out->n = n < DA_MAX_DETECTIONS ? n : DA_MAX_DETECTIONS;
    for (int i = 0; i < out->n; i++) out->obj[i] = describe(&cand[i]);
    return DA_OK;
}

/* ---- outline style -------------------------------------------------------- */

/* A pixel next to an object is, in any image, a mix of three colours: the
 * background b, the object's colour o (a blurred edge) and, in the outline
 * style, the outline colour O. Unmixing it by least squares,
 *   p - O = a (b - O) + c (o - O),   outline share g = 1 - a - c,
 * gives 1 on an outline pixel and 0 on a plain one, whatever b and o are;
 * a blend of object and background (a soft plain edge) stays at 0. The
 * unmixing is affine, so a blur (any convex mix of neighbours) keeps the sum
 * of g over the pixels it mixes: an object's outline mass, the sum of g over
 * a band of its rim, its ring and the ring outside that, divided by the
 * ring's size, is 1 for a rendered outline however much it was blurred
 * within the band, and 0 for a plain render.
 *
 * The unmixing needs the three colours apart. An object of the outline's
 * own colour (a near-black object on white) cannot show an outline and is
 * not judged. A black object on a black background is not an object for the
 * detector at all (black is a background class, objects are the 8 palette
 * colours), so it is not judged either; an image with no judged object
 * scores 0, no evidence of the style. */
#define OUTLINE_MIN_SEP2 0.04f  /* squared RGB distance in [0, 1] units: colours closer than 0.2 are one */
#define OUTLINE_MIN_SIN2 0.05f  /* sin^2 of the angle at O between b and o: below, the three are in a line */

enum { BAND_NONE, BAND_RIM, BAND_RING, BAND_RING2 };

typedef struct unmixer {
    float O[3], u[3], v[3];     /* outline colour; u = b - O, v = o - O */
    float uu, uv, vv, det;
} unmixer;

static float dot3(const float *a, const float *b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

/* 0 when the three colours cannot be told apart */
static int unmixer_init(unmixer *m, const float O[3], const float b[3], const float o[3])
{
    for (int c = 0; c < 3; c++) {
        m->O[c] = O[c];
        m->u[c] = b[c] - O[c];
        m->v[c] = o[c] - O[c];
    }
    m->uu = dot3(m->u, m->u);
    m->uv = dot3(m->u, m->v);
    m->vv = dot3(m->v, m->v);
    m->det = m->uu * m->vv - m->uv * m->uv;
    return m->uu >= OUTLINE_MIN_SEP2 && m->vv >= OUTLINE_MIN_SEP2 && m->det >= OUTLINE_MIN_SIN2 * m->uu * m->vv;
}

/* the outline's share g of pixel p (2x2 normal equations, Cramer's rule);
 * not clamped, so noise averages out over a band */
static float outline_share(const unmixer *m, const float p[3])
{
    float w[3] = {p[0] - m->O[0], p[1] - m->O[1], p[2] - m->O[2]};
    float uw = dot3(m->u, w), vw = dot3(m->v, w);
    float a = (uw * m->vv - vw * m->uv) / m->det;
    float c = (vw * m->uu - uw * m->uv) / m->det;
    return 1.0f - a - c;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The background as the image shows it: the per-channel median of the 124
 * border pixels (an outline takes at most 56 of them). */
static void border_colour(const float *img, float b[3])
{
    enum { N = 4 * DA_IMG - 4 };
    for (int c = 0; c < 3; c++) {
        const float *ch = img + c * DA_IMG * DA_IMG;
        float v[N];
        int n = 0;
        for (int i = 0; i < DA_IMG; i++) {
            v[n++] = ch[i];
            v[n++] = ch[(DA_IMG - 1) * DA_IMG + i];
            if (i > 0 && i < DA_IMG - 1) {
                v[n++] = ch[i * DA_IMG];
                v[n++] = ch[i * DA_IMG + DA_IMG - 1];
            }
        }
        qsort(v, N, sizeof v[0], cmp_float);
        b[c] = 0.5f * (v[N / 2 - 1] + v[N / 2]);
    }
}

/* 1 when pixel p has a 4-neighbour q with map[q] == want */
static int touches(const int *map, int p, int want)
{
    int x = p % DA_IMG, y = p / DA_IMG;
    return (x > 0 && map[p - 1] == want) || (x < DA_IMG - 1 && map[p + 1] == want) ||
           (y > 0 && map[p - DA_IMG] == want) || (y < DA_IMG - 1 && map[p + DA_IMG] == want);
}

/* 1 when all 4 neighbours of p are in the image and owned by object i */
static int interior(const int *owner, int p, int i)
{
    int x = p % DA_IMG, y = p / DA_IMG;
    if (x == 0 || y == 0 || x == DA_IMG - 1 || y == DA_IMG - 1) return 0;
    return owner[p - 1] == i && owner[p + 1] == i && owner[p - DA_IMG] == i && owner[p + DA_IMG] == i;
}

/* The object's own colour away from its edge (where a blur mixes in the
 * background): the mean of its interior pixels (kept objects have >= 3). */
static void object_colour(const float *img, const int *owner, int i, float o[3])
{
    double sum[3] = {0.0, 0.0, 0.0};
    int n = 0;
    for (int p = 0; p < DA_IMG * DA_IMG; p++) {
        if (owner[p] != i || !interior(owner, p, i)) continue;
        for (int c = 0; c < 3; c++) sum[c] += img[c * DA_IMG * DA_IMG + p];
        n++;
    }
    for (int c = 0; c < 3; c++) o[c] = n ? (float)(sum[c] / n) : 0.0f;
}

/* band (HW) around object i: its rim (pixels with a neighbour not its
 * own), its ring (pixels of no kept object 4-adjacent to it) and the ring
 * outside that (pixels of no kept object 4-adjacent to the ring). Returns
 * the ring's size. */
static int object_band(const int *owner, int i, int *band)
{
    enum { HW = DA_IMG * DA_IMG };
    int n_ring = 0;
    for (int p = 0; p < HW; p++) {
        band[p] = BAND_NONE;
        if (owner[p] == i && !interior(owner, p, i)) band[p] = BAND_RIM;
        if (owner[p] < 0 && touches(owner, p, i)) band[p] = BAND_RING, n_ring++;
    }
    for (int p = 0; p < HW; p++)
        if (owner[p] < 0 && band[p] == BAND_NONE && touches(band, p, BAND_RING)) band[p] = BAND_RING2;
    return n_ring;
}

/* Object i's outline mass over its ring size, clamped to [0, 1]. */
static float outline_mass(const float *img, const int *owner, int i, const unmixer *m)
{
    int band[DA_IMG * DA_IMG];
    int n_ring = object_band(owner, i, band);
    float mass = 0.0f;
    for (int p = 0; p < DA_IMG * DA_IMG; p++) {
        if (band[p] == BAND_NONE) continue;
        float rgb[3];
        pixel_rgb(img, p, rgb);
        mass += outline_share(m, rgb);
    }
    float r = n_ring ? mass / (float)n_ring : 0.0f;
    return r > 0.0f ? (r < 1.0f ? r : 1.0f) : 0.0f;   /* NaN -> 0 */
}

da_status da_outline_score(const float *img, float *score, int *n_judged)
{
    if (!img || !score) return da_fail(DA_ERR_INVALID, "da_outline_score: NULL argument");
    enum { HW = DA_IMG * DA_IMG };
    uint8_t cls[HW];
    int label[HW], owner[HW];
    int bg = classify(img, cls);
    component cand[MAX_CANDIDATES];
    int n = find_components(cls, bg, cand, label);
    n = n < DA_MAX_DETECTIONS ? n : DA_MAX_DETECTIONS;   /* the objects da_detect reports */
    *score = 0.0f;
    if (n_judged) *n_judged = 0;
    if (bg < DA_N_COLOURS) return DA_OK;   /* no background, so no outline colour to look for */
    for (int p = 0; p < HW; p++) {         /* owner[p]: the kept object pixel p belongs to, -1 none */
        owner[p] = -1;
        for (int i = 0; i < n && owner[p] < 0; i++)
            if (label[p] == cand[i].id) owner[p] = i;
    }
    float O[3], b[3], sum = 0.0f;
    const uint8_t *rgb = da_outline_rgb(bg - DA_N_COLOURS);
    for (int c = 0; c < 3; c++) O[c] = (float)rgb[c] / 255.0f;
    border_colour(img, b);
    int judged = 0;
    for (int i = 0; i < n; i++) {
        float o[3];
        unmixer m;
        object_colour(img, owner, i, o);
        if (!unmixer_init(&m, O, b, o)) continue;
        sum += outline_mass(img, owner, i, &m);
        judged++;
    }
    if (judged) *score = sum / (float)judged;
    if (n_judged) *n_judged = judged;
    return DA_OK;
}

/* ---- faithfulness --------------------------------------------------------- */

/* Does detection a stand in relation rel to b? The centroid displacement
 * must point the right way along the dominant axis (y grows downwards). */
static int relation_holds(const da_detection *a, const da_detection *b, int rel)
{
    float dx = b->cx - a->cx, dy = b->cy - a->cy;
    int horizontal = fabsf(dx) > fabsf(dy), vertical = fabsf(dy) > fabsf(dx);
    switch (rel) {
    case DA_LEFT_OF: return horizontal && dx > 0;
    case DA_RIGHT_OF: return horizontal && dx < 0;
    case DA_ABOVE: return vertical && dy > 0;
    case DA_BELOW: return vertical && dy < 0;
    }
    return 0;
}

/* Fill the object clauses of prompt object i matched to detection d (NULL:
 * no detection, every clause fails); returns how many hold. */
static int object_clauses(const da_object *o, const da_detection *d, int i, da_clause *cl, int *n)
{
    const int attr[3] = {o->colour, o->shape, o->size};
    const int type[3] = {DA_CLAUSE_COLOUR, DA_CLAUSE_SHAPE, DA_CLAUSE_SIZE};
    int sat = 0;
    for (int k = 0; k < 3; k++) {
        if (attr[k] == DA_ANY) continue;
        const int got = !d ? DA_ANY : k == 0 ? d->colour : k == 1 ? d->shape : d->size;
        int ok = d && got == attr[k];
        cl[(*n)++] = (da_clause){type[k], i, ok};
        sat += ok;
    }
    return sat;
}

/* Clauses of one assignment (m[i] = detection of prompt object i, -1 none). */
static int assignment_clauses(const da_detect_result *det, const da_scene *pr, const int *m,
                              da_clause *cl, int *n)
{
    int sat = 0;
    *n = 0;
    for (int i = 0; i < pr->n_objects; i++)
        sat += object_clauses(&pr->obj[i], m[i] >= 0 ? &det->obj[m[i]] : NULL, i, cl, n);
    if (pr->n_objects == 2) {
        int ok = m[0] >= 0 && m[1] >= 0 && relation_holds(&det->obj[m[0]], &det->obj[m[1]], pr->relation);
        cl[(*n)++] = (da_clause){DA_CLAUSE_RELATION, -1, ok};
        sat += ok;
    }
    if (pr->background != DA_ANY) {
        int ok = det->background == pr->background;
        cl[(*n)++] = (da_clause){DA_CLAUSE_BACKGROUND, -1, ok};
        sat += ok;
    }
    return sat;
}

static int prompt_valid(const da_scene *pr)
{
    if (pr->n_objects < 1 || pr->n_objects > DA_MAX_OBJECTS) return 0;
    if (pr->n_objects == 2 && (pr->relation < 0 || pr->relation >= DA_N_RELATIONS)) return 0;
    if (pr->background != DA_ANY && (pr->background < 0 || pr->background >= DA_N_BACKGROUNDS)) return 0;
    for (int i = 0; i < pr->n_objects; i++) {
        const da_object *o = &pr->obj[i];
        if (o->colour < DA_ANY || o->colour >= DA_N_COLOURS || o->shape < DA_ANY ||
            o->shape >= DA_N_SHAPES || o->size < DA_ANY || o->size >= DA_N_SIZES)
            return 0;
    }
    return 1;
}

/* Exhaustive over assignments (each prompt object gets a distinct detection
 * or none): at most 9 x 8 of them. The first best in scan order wins, so the
 * result is deterministic. */
da_status da_faith_check(const da_detect_result *det, const da_scene *pr, da_faith *out)
{
    if (!det || !pr || !out) return da_fail(DA_ERR_INVALID, "da_faith_check: NULL argument");
    if (!prompt_valid(pr)) return da_fail(DA_ERR_INVALID, "da_faith_check: invalid prompt spec");
    if (det->n < 0 || det->n > DA_MAX_DETECTIONS)
        return da_fail(DA_ERR_INVALID, "da_faith_check: %d detections", det->n);
    memset(out, 0, sizeof *out);
    int best = -1;
    int m[DA_MAX_OBJECTS] = {-1, -1};
    int n1 = pr->n_objects == 2 ? det->n + 1 : 1;
    for (int a = 0; a <= det->n; a++)
        for (int b = 0; b < n1; b++) {
            /* index det->n stands for "no detection" */
            m[0] = a < det->n ? a : -1;
            m[1] = pr->n_objects == 2 && b < det->n ? b : -1;
            if (m[0] >= 0 && m[0] == m[1]) continue;
            da_clause cl[DA_MAX_CLAUSES] = {{0}};
            int n;
            int sat = assignment_clauses(det, pr, m, cl, &n);
            if (sat <= best) continue;
            best = sat;
            out->n_clauses = n;
            out->n_satisfied = sat;
            memcpy(out->clause, cl, sizeof cl);
            memcpy(out->match, m, sizeof m);
        }
    if (pr->n_objects == 1) out->match[1] = -1;
    for (int i = 0; i < out->n_clauses; i++) {
        out->n_type[out->clause[i].type]++;
        out->sat_type[out->clause[i].type] += out->clause[i].satisfied;
    }
    out->score = out->n_clauses ? (float)out->n_satisfied / (float)out->n_clauses : 1.0f;
    out->n_detected = det->n;
    return DA_OK;
}

da_status da_faithfulness(const float *img, const char *prompt, da_faith *out, float *score)
{
    if (!img || !prompt) return da_fail(DA_ERR_INVALID, "da_faithfulness: NULL argument");
    da_scene spec;
    da_status st = da_parse_prompt(prompt, &spec);
    if (st != DA_OK) return st;
    da_detect_result det;
    if ((st = da_detect(img, &det)) != DA_OK) return st;
    da_faith f;
    if ((st = da_faith_check(&det, &spec, &f)) != DA_OK) return st;
    if (out) *out = f;
    if (score) *score = f.score;
    return DA_OK;
}
