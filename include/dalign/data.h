/* dalign/data.h: the data layer (src/data): the shapes world, a procedural
 * world with known ground truth: scene generator and renderer, captions,
 * the tokenizer, the prompt parser, the detector and the faithfulness
 * check. Uses only the core (the RNG); includes dalign/diffusion.h for the
 * layer order only. */
#ifndef DALIGN_DATA_H
#define DALIGN_DATA_H

#include "dalign/diffusion.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Shapes world (src/data): generator, captions, tokenizer, parser, detector */
/* ------------------------------------------------------------------------ */

/* (section: shapes world) */

/* A procedural world with known ground truth (docs/shapes-world.md has the
 * palette, the grammar, the splits and the detector's thresholds).
 * Images are (3, DA_IMG, DA_IMG) float planar CHW in [0, 1], PyTorch order. */
#define DA_IMG 32
#define DA_IMG_FLOATS (3 * DA_IMG * DA_IMG)
#define DA_ANY (-1)           /* attribute a prompt leaves unconstrained */
#define DA_MAX_OBJECTS 2      /* objects in a scene or a prompt */
#define DA_CAPTION_MAX 160    /* bytes that always hold a generated caption */

enum { DA_RED, DA_GREEN, DA_BLUE, DA_YELLOW, DA_PURPLE, DA_ORANGE, DA_PINK, DA_CYAN, DA_N_COLOURS };
enum { DA_BG_WHITE, DA_BG_BLACK, DA_BG_GRAY, DA_N_BACKGROUNDS };
enum { DA_CIRCLE, DA_SQUARE, DA_TRIANGLE, DA_N_SHAPES };
enum { DA_SMALL, DA_LARGE, DA_N_SIZES };
/* obj[0] RELATION obj[1]; image y grows downwards */
enum { DA_LEFT_OF, DA_RIGHT_OF, DA_ABOVE, DA_BELOW, DA_N_RELATIONS };

DA_API const char *da_colour_name(int colour);          /* "red"; NULL when out of range */
DA_API const char *da_background_name(int background);  /* "white" */
DA_API const char *da_shape_name(int shape);            /* "circle" */
DA_API const char *da_size_name(int size);              /* "small" */
DA_API const char *da_relation_name(int relation);      /* "left of" */
DA_API const uint8_t *da_colour_rgb(int colour);        /* 3 bytes; NULL when out of range */
DA_API const uint8_t *da_background_rgb(int background);

/* One object: attributes, and for a scene its placement: top-left pixel
 * (x, y) and extent d (the object fits in [x, x+d) x [y, y+d)). Parsed
 * prompts leave any attribute DA_ANY and the placement 0. */
typedef struct da_object {
    int colour, shape, size;
    int x, y, d;
} da_object;

/* A scene (generator, renderer) or a prompt's spec (parser, faithfulness). */
typedef struct da_scene {
    int n_objects;                 /* 1 or 2 */
    da_object obj[DA_MAX_OBJECTS];
    int relation;                  /* obj[0] REL obj[1] when 2 objects, else DA_ANY */
    int background;                /* DA_ANY: not stated (prompts only) */
} da_scene;

/* Splits: TRAIN scenes never contain a held-out element; HELDOUT scenes
 * contain at least one (half a held-out colour-shape pair, half a held-out
 * shape-relation-shape layout). */
typedef enum { DA_SPLIT_TRAIN = 0, DA_SPLIT_HELDOUT = 1 } da_split;
#define DA_HELDOUT_PAIR 1u        /* a held-out (colour, shape) object */
#define DA_HELDOUT_RELATION 2u    /* a held-out (shape, relation, shape) layout */
DA_API int da_world_pair_heldout(int colour, int shape);
DA_API int da_world_triple_heldout(int shape0, int relation, int shape1);
DA_API unsigned da_scene_heldout(const da_scene *s);   /* DA_HELDOUT_* bits; 0: a train scene */

/* Sample a placed scene of the split (spec only; render it separately). */
DA_API da_status da_world_sample(da_rng *rng, da_split split, da_scene *s);
/* Draw the scene into img (DA_IMG_FLOATS): hard edges, exact palette values. */
DA_API da_status da_world_render(const da_scene *s, float *img);
/* A caption for the scene with a phrasing drawn from rng (NULL: the
 * canonical phrasing, every attribute stated). DA_ERR_RANGE if cap is short. */
DA_API da_status da_world_caption(da_rng *rng, const da_scene *s, char *buf, size_t cap);
/* Another phrasing of a prompt's spec with exactly its meaning: the clauses
 * it states (DA_ANY: left unstated), the grammar's synonyms, optional words
 * and a relation stated from either object ("A left of B" = "B right of A"),
 * drawn from rng (NULL: the canonical phrasing). The targets of the PromptLoop
 * reference refiner. DA_ERR_INVALID for a spec the parser cannot produce. */
DA_API da_status da_world_paraphrase(da_rng *rng, const da_scene *spec, char *buf, size_t cap);
/* 1 when two specs mean the same: equal attributes (placement ignored),
 * background and relation, "A REL B" being "B converse(REL) A" */
DA_API int da_spec_same_meaning(const da_scene *a, const da_scene *b);
/* sample + render + caption: one training example. img and caption may be NULL. */
DA_API da_status da_world_example(da_rng *rng, da_split split, da_scene *s, float *img,
                                  char *caption, size_t cap);
/* n evaluation prompts of a split whose scenes are pairwise different in
 * meaning (colours, shapes, sizes, relation, background); texts is n rows of
 * `stride` bytes (stride >= DA_CAPTION_MAX), scenes may be NULL.
 * DA_ERR_RANGE when the split cannot supply n distinct scenes in reasonable time. */
DA_API da_status da_world_prompts(da_rng *rng, da_split split, int n, da_scene *scenes,
                                  char *texts, size_t stride);
/* (3, H, W) floats in [0, 1] -> H*W*3 interleaved bytes (clamped, rounded) */
DA_API void da_image_to_rgb8(const float *img, int H, int W, uint8_t *rgb);
/* Rendering styles of one scene (docs/shapes-world.md, "Styles"). OUTLINE
 * adds a 1 px line of da_outline_rgb(background) on every background pixel
 * 4-adjacent to an object; object pixels are those of PLAIN. */
typedef enum { DA_STYLE_PLAIN = 0, DA_STYLE_OUTLINE = 1, DA_N_STYLES } da_style;
DA_API const char *da_style_name(int style);                     /* "plain", "outline"; NULL out of range */
DA_API da_status da_style_parse(const char *name, da_style *out); /* DA_ERR_INVALID naming the word */
DA_API const uint8_t *da_outline_rgb(int background);            /* 3 bytes; NULL out of range */
/* da_world_render in a style (PLAIN: the same bits as da_world_render) */
DA_API da_status da_world_render_style(const da_scene *s, da_style style, float *img);

/* Parse a prompt into its spec. Unknown or misplaced words give
 * DA_ERR_INVALID with a message naming the word and its position. */
DA_API da_status da_parse_prompt(const char *text, da_scene *out);
/* da_parse_prompt of a token row (DA_MAX_TOKENS ids, BOS .. EOS PAD..: what
 * a prompt refiner writes): DA_OK and its spec, or the error of
 * da_detokenize or da_parse_prompt */
DA_API da_status da_parse_prompt_ids(const int *ids, da_scene *out);

/* Word-level tokenizer over the grammar's vocabulary. Lower-cases; commas and
 * periods separate words and are dropped. ids are padded to DA_MAX_TOKENS:
 * BOS w1 .. wn EOS PAD...; keep[i] = 1 for real tokens, 0 for padding (the
 * key mask of da_attention). */
#define DA_MAX_TOKENS 24
#define DA_TOK_PAD 0
#define DA_TOK_BOS 1
#define DA_TOK_EOS 2
#define DA_TOK_UNK 3
typedef struct da_tok_report {
    int n_tokens;       /* real tokens, BOS and EOS included */
    int n_unknown;      /* words mapped to UNK */
    int n_truncated;    /* words dropped past DA_MAX_TOKENS - 2 */
    char unknown[128];  /* the unknown words, space-separated (cut when long) */
} da_tok_report;
DA_API int da_vocab_size(void);
DA_API const char *da_vocab_word(int id);       /* "<pad>", "<bos>", ...; NULL when out of range */
DA_API int da_vocab_id(const char *word);       /* exact lower-case word; DA_TOK_UNK when absent */
/* Never fails on text content: unknown words become UNK and are reported in
 * rep (may be NULL). DA_ERR_INVALID only for NULL text/ids. */
DA_API da_status da_tokenize(const char *text, int *ids, uint8_t *keep, da_tok_report *rep);
/* ids[0..n): BOS skipped, stops at EOS or PAD, UNK written "<unk>", words
 * joined by one space. DA_ERR_INVALID for an id outside the vocabulary,
 * DA_ERR_RANGE when buf is too small. */
DA_API da_status da_detokenize(const int *ids, int n, char *buf, size_t cap);

/* Detector: nearest-palette classes, 4-connected components, fill ratio and
 * centroid offset for the shape, area for the size. */
#define DA_MAX_DETECTIONS 8
typedef struct da_detection {
    int colour, shape, size;
    float cx, cy;          /* centroid in pixels; pixel (i, j) has centre (j + .5, i + .5) */
    int area;
    int x0, y0, x1, y1;    /* bounding box, inclusive */
    float fill;            /* area / bounding-box area */
} da_detection;
typedef struct da_detect_result {
    int background;        /* DA_BG_* or DA_ANY when the border is mostly an object colour */
    int n;                 /* objects kept, largest first */
    da_detection obj[DA_MAX_DETECTIONS];
} da_detect_result;
DA_API da_status da_detect(const float *img, da_detect_result *out);
/* Outline-style detector (docs/shapes-world.md): around each detected
 * object, pixels are unmixed into background, object colour and the
 * detected background's outline colour; the outline's mass over the
 * object's rim, ring and next ring, per ring pixel, clamped to [0, 1], is
 * 1 for an outline (also blurred) and 0 for a plain render. *score: the
 * mean over the objects judged (0 when none: no object, or an object the
 * colour of the outline). >= DA_OUTLINE_THRESHOLD: in the style. n_judged
 * (may be NULL) gets the number of objects judged. */
#define DA_OUTLINE_THRESHOLD 0.5f
DA_API da_status da_outline_score(const float *img, float *score, int *n_judged);

/* faithfulness: the fraction of a prompt's clauses an image satisfies.
 * Clauses: per prompt object its colour, shape and size (each when stated),
 * the relation (two objects), the background (when stated). Prompt objects
 * are matched to detections by the assignment satisfying most clauses. */
typedef enum { DA_CLAUSE_COLOUR, DA_CLAUSE_SHAPE, DA_CLAUSE_SIZE, DA_CLAUSE_RELATION,
               DA_CLAUSE_BACKGROUND, DA_N_CLAUSE_TYPES } da_clause_type;
#define DA_MAX_CLAUSES (3 * DA_MAX_OBJECTS + 2)
typedef struct da_clause {
    int type;          /* da_clause_type */
    int object;        /* prompt object (0, 1), or -1 for relation / background */
    int satisfied;
} da_clause;
typedef struct da_faith {
    float score;                    /* n_satisfied / n_clauses */
    int n_clauses, n_satisfied;
    da_clause clause[DA_MAX_CLAUSES];
    int n_type[DA_N_CLAUSE_TYPES], sat_type[DA_N_CLAUSE_TYPES];
    int match[DA_MAX_OBJECTS];      /* detection matched to each prompt object, -1: none */
    int n_detected;                 /* objects in the image (extra ones cost nothing) */
} da_faith;
/* Check a prompt spec against detections (pure; no image needed). */
DA_API da_status da_faith_check(const da_detect_result *det, const da_scene *prompt, da_faith *out);
/* parse + detect + check. out may be NULL; *score gets the fraction.
 * Parse errors return DA_ERR_INVALID (message names the word). */
DA_API da_status da_faithfulness(const float *img, const char *prompt, da_faith *out, float *score);

#ifdef __cplusplus
}
#endif

#endif /* DALIGN_DATA_H */
