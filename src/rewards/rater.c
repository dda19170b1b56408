/* The synthetic rater (docs/rater.md): the stand-in for human raters.
 *
 *   u = w_faith faith + w_size size + w_centre centre + w_contrast contrast
 *   P(A > B) = sigmoid((u_A - u_B) / temperature), a tie when |u_A - u_B| < tie_margin
 *
 * faith is the shapes-world faithfulness (what the prompt asks); the other
 * three are "visual taste" computed from the detector's objects (the two
 * largest) and the pixels, so a rater can prefer one faithful image to
 * another, and can be tempted by an unfaithful one, as people are. */
#include <math.h>
#include <string.h>

#include "dalign/rewards.h"

#define TASTE_OBJECTS 2       /* the largest detected objects that count for taste */
#define SIZE_REF 16.0         /* extent sqrt(area) in px at which size saturates */
#define CENTRE_REF 16.0       /* centroid distance in px at which centring reaches 0 */

da_rater_config da_rater_config_default(void)
{
    da_rater_config c = {.w_faith = 8.0f, .w_size = 1.0f, .w_centre = 1.0f, .w_contrast = 0.5f,
                         .temperature = 0.25f, .tie_margin = 0.05f};
    return c;
}

/* Rec. 601 luma of an RGB triple in [0, 1] */
static double luma(double r, double g, double b) { return 0.299 * r + 0.587 * g + 0.114 * b; }

static float clamp01(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; }

/* nearest of the 11 palette colours (object colours 0..7, then the
 * backgrounds as 8..10), squared distance in 0..255 units, first wins a tie */
static int nearest_palette(const float *img, size_t p, size_t HW)
{
    double px[3];
    for (int c = 0; c < 3; c++) px[c] = 255.0 * clamp01(img[(size_t)c * HW + p]);
    int best = 0;
    double best_d = 1e300;
    for (int k = 0; k < DA_N_COLOURS + DA_N_BACKGROUNDS; k++) {
        const uint8_t *rgb = k < DA_N_COLOURS ? da_colour_rgb(k) : da_background_rgb(k - DA_N_COLOURS);
        double d = 0.0;
        for (int c = 0; c < 3; c++) d += (px[c] - rgb[c]) * (px[c] - rgb[c]);
        if (d < best_d) { best_d = d; best = k; }
    }
    return best;
}

static double pixel_luma(const float *img, size_t p, size_t HW)
{
    return luma(clamp01(img[p]), clamp01(img[HW + p]), clamp01(img[2 * HW + p]));
}

/* |mean luma of the objects' own pixels - mean luma of the border|: object
 * pixels are those in a detection's box whose nearest palette colour is the
 * detection's colour (the background between a circle's box corners does
 * not count); the 124 border pixels are background in a well-placed image */
static float contrast_term(const float *img, const da_detect_result *det, int k)
{
    const size_t HW = (size_t)DA_IMG * DA_IMG;
    double bg = 0.0;
    int nb = 0;
    for (int i = 0; i < DA_IMG; i++)
        for (int j = 0; j < DA_IMG; j++)
            if (i == 0 || j == 0 || i == DA_IMG - 1 || j == DA_IMG - 1) {
                bg += pixel_luma(img, (size_t)i * DA_IMG + j, HW);
                nb++;
            }
    bg /= nb;
    double obj = 0.0;
    int no = 0;
    for (int o = 0; o < k; o++) {
        const da_detection *d = &det->obj[o];
        for (int i = d->y0; i <= d->y1; i++)
            for (int j = d->x0; j <= d->x1; j++) {
                size_t p = (size_t)i * DA_IMG + j;
                if (nearest_palette(img, p, HW) != d->colour) continue;
                obj += pixel_luma(img, p, HW);
                no++;
            }
    }
    if (no == 0) return 0.0f;
    return (float)fabs(obj / no - bg);
}

/* size, centre and contrast from the k largest detections */
static void taste_terms(const float *img, const da_detect_result *det, da_rater_terms *t)
{
    int k = det->n < TASTE_OBJECTS ? det->n : TASTE_OBJECTS;
    t->size = t->centre = t->contrast = 0.0f;
    if (k == 0) return;   /* nothing detected: no taste to speak of */
    double area = 0.0, cx = 0.0, cy = 0.0;
    for (int o = 0; o < k; o++) {
        area += det->obj[o].area;
        cx += det->obj[o].area * (double)det->obj[o].cx;
        cy += det->obj[o].area * (double)det->obj[o].cy;
    }
    cx /= area;
    cy /= area;
    t->size = (float)fmin(1.0, sqrt(area) / SIZE_REF);
    /* not hypot(): glibc's differs between x86-64 and aarch64 on ~13% of
     * inputs; sqrt is correctly rounded everywhere (docs/determinism.md) */
    double dx = cx - 0.5 * DA_IMG, dy = cy - 0.5 * DA_IMG;
    double dist = sqrt(dx * dx + dy * dy);
    t->centre = (float)fmax(0.0, 1.0 - dist / CENTRE_REF);
    t->contrast = contrast_term(img, det, k);
}

da_status da_rater_utility(const da_rater_config *c, const float *img, const char *prompt, da_rater_terms *out)
{
    if (!c || !img || !prompt || !out) return da_fail(DA_ERR_INVALID, "da_rater_utility: NULL argument");
    da_rater_terms t;
    memset(&t, 0, sizeof t);
    da_detect_result det;
    da_status st = da_detect(img, &det);
    if (st) return st;
    da_scene spec;
    t.parsed = da_parse_prompt(prompt, &spec) == DA_OK;
    if (t.parsed) {
        da_faith f;
        if ((st = da_faith_check(&det, &spec, &f)) != DA_OK) return st;
        t.faith = f.score;
    }
    taste_terms(img, &det, &t);
    t.utility = c->w_faith * t.faith + c->w_size * t.size + c->w_centre * t.centre + c->w_contrast * t.contrast;
    *out = t;
    return DA_OK;
}

float da_rater_prob(const da_rater_config *c, float u_a, float u_b)
{
    if (!(c->temperature > 0.0f)) return u_a > u_b ? 1.0f : (u_a < u_b ? 0.0f : 0.5f);
    return (float)(1.0 / (1.0 + exp(-((double)u_a - u_b) / c->temperature)));
}

int da_rater_label(const da_rater_config *c, float u_a, float u_b, da_rng *rng)
{
    float v = 0.0f;
    if (rng) da_rand(rng, &v, 1);   /* drawn for ties too: the stream never depends on outcomes */
    float du = u_a - u_b;
    if (fabsf(du) < c->tie_margin || du == 0.0f) return 0;
    if (!rng) return du > 0.0f ? 1 : -1;
    return v < da_rater_prob(c, u_a, u_b) ? 1 : -1;
}
