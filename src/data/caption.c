/* Captions: the grammar's generator (scene -> text, phrasing drawn from the
 * rng) and its recursive-descent parser (text -> spec).
 *
 *   prompt     := object [relation object] [background]
 *   object     := [a | an] [size] [colour] shape
 *   size       := small | large | big
 *   relation   := [to the] left of | [to the] right of | above | below
 *   background := on [a] bg [background] | with [a] bg background
 *   bg         := white | black | gray | grey
 *
 * The generator always states colour and shape and emits a subset of what
 * the parser accepts (the parser also takes a missing article or colour). */
#include <stdio.h>
#include <string.h>

#include "data/world.h"

/* ---- word classes --------------------------------------------------------- */

static int index_of(const char *const *names, int n, const char *w)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], w) == 0) return i;
    return -1;
}

static int colour_of(const char *w)
{
    for (int i = 0; i < DA_N_COLOURS; i++)
        if (strcmp(da_colour_name(i), w) == 0) return i;
    return -1;
}

static int background_of(const char *w)
{
    if (strcmp(w, "grey") == 0) return DA_BG_GRAY;
    for (int i = 0; i < DA_N_BACKGROUNDS; i++)
        if (strcmp(da_background_name(i), w) == 0) return i;
    return -1;
}

static int shape_of(const char *w)
{
    for (int i = 0; i < DA_N_SHAPES; i++)
        if (strcmp(da_shape_name(i), w) == 0) return i;
    return -1;
}

static int size_of(const char *w)
{
    static const char *const SIZE_WORD[] = {"small", "large", "big"};
    static const int SIZE_OF[] = {DA_SMALL, DA_LARGE, DA_LARGE};
    int i = index_of(SIZE_WORD, 3, w);
    return i < 0 ? -1 : SIZE_OF[i];
}

/* ---- generator ------------------------------------------------------------ */

typedef struct text_buf {
    char *buf;
    size_t cap, len;
    int overflow;
} text_buf;

static void put(text_buf *b, const char *w)
{
    if (b->overflow) return;
    int n = snprintf(b->buf + b->len, b->cap - b->len, "%s%s", b->len ? " " : "", w);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    b->len += (size_t)n;
}

/* uniform in [0, n); NULL rng (canonical phrasing) always picks 0 */
static int pick(da_rng *r, int n) { return r ? (int)(da_rng_u32(r) % (uint32_t)n) : 0; }

/* "a [size] [colour] shape": the size when say_size ("big" for a third of
 * the large ones), the colour unless DA_ANY (a parsed prompt's) */
static void put_object_words(da_rng *r, text_buf *b, const da_object *o, int say_size)
{
    const char *words[3];
    int n = 0;
    if (say_size) words[n++] = o->size == DA_SMALL ? "small" : (pick(r, 3) == 2 ? "big" : "large");
    if (o->colour != DA_ANY) words[n++] = da_colour_name(o->colour);
    words[n++] = da_shape_name(o->shape);
    put(b, strchr("aeiou", words[0][0]) ? "an" : "a");
    for (int i = 0; i < n; i++) put(b, words[i]);
}

/* canonical: always the size; otherwise half of the time */
static void put_object(da_rng *r, text_buf *b, const da_object *o)
{
    put_object_words(r, b, o, !r || pick(r, 2));
}

static void put_relation(da_rng *r, text_buf *b, int rel)
{
    if (rel == DA_ABOVE || rel == DA_BELOW) {
        put(b, rel == DA_ABOVE ? "above" : "below");
        return;
    }
    if (pick(r, 2) == 0) { put(b, "to"); put(b, "the"); }
    put(b, rel == DA_LEFT_OF ? "left" : "right");
    put(b, "of");
}

/* "on a X background" | "on X" | "with a X background" (canonical: the first) */
static void put_background_words(da_rng *r, text_buf *b, int bg)
{
    int form = pick(r, 3);
    const char *name = da_background_name(bg);
    if (bg == DA_BG_GRAY && pick(r, 2)) name = "grey";
    if (form == 0) { put(b, "on"); put(b, "a"); put(b, name); put(b, "background"); }
    if (form == 1) { put(b, "on"); put(b, name); }
    if (form == 2) { put(b, "with"); put(b, "a"); put(b, name); put(b, "background"); }
}

/* canonical: stated; sampled: omitted half of the time */
static void put_background(da_rng *r, text_buf *b, int bg)
{
    if (r && pick(r, 2) == 0) return;
    put_background_words(r, b, bg);
}

static int converse(int rel)
{
    static const int CONVERSE[DA_N_RELATIONS] = {DA_RIGHT_OF, DA_LEFT_OF, DA_BELOW, DA_ABOVE};
    return CONVERSE[rel];
}

da_status da_world_caption(da_rng *rng, const da_scene *s, char *buf, size_t cap)
{
    if (!s || !buf || cap == 0) return da_fail(DA_ERR_INVALID, "da_world_caption: bad argument");
    if (!dw_scene_valid(s)) return da_fail(DA_ERR_INVALID, "da_world_caption: invalid scene");
    text_buf b = {buf, cap, 0, 0};
    buf[0] = '\0';
    /* "A left of B" or, half of the time, the same scene as "B right of A" */
    int swap = s->n_objects == 2 && pick(rng, 2);
    put_object(rng, &b, &s->obj[swap ? 1 : 0]);
    if (s->n_objects == 2) {
        put_relation(rng, &b, swap ? converse(s->relation) : s->relation);
        put_object(rng, &b, &s->obj[swap ? 0 : 1]);
    }
    put_background(rng, &b, s->background);
    if (b.overflow) return da_fail(DA_ERR_RANGE, "da_world_caption: buffer of %zu bytes is too small", cap);
    return DA_OK;
}

/* ---- paraphrases ---------------------------------------------------------- */

static int attr_ok(int v, int n) { return v == DA_ANY || (v >= 0 && v < n); }

/* a spec the parser could have produced: shapes stated, the rest in range or DA_ANY */
static int spec_valid(const da_scene *s)
{
    if (s->n_objects < 1 || s->n_objects > DA_MAX_OBJECTS) return 0;
    for (int i = 0; i < s->n_objects; i++) {
        const da_object *o = &s->obj[i];
        if (o->shape < 0 || o->shape >= DA_N_SHAPES) return 0;
        if (!attr_ok(o->colour, DA_N_COLOURS) || !attr_ok(o->size, DA_N_SIZES)) return 0;
    }
    if (s->n_objects == 2 && (s->relation < 0 || s->relation >= DA_N_RELATIONS)) return 0;
    return attr_ok(s->background, DA_N_BACKGROUNDS);
}

/* The PromptLoop reference refiner's targets (docs/promptloop.md): the
 * caption generator's free choices (big/large, grey/gray, "to the", the
 * background's form, which object comes first) over exactly the clauses the
 * spec states. Draw order: swap, then per object the size word, then the
 * relation's form, then the background's. */
da_status da_world_paraphrase(da_rng *rng, const da_scene *spec, char *buf, size_t cap)
{
    if (!spec || !buf || cap == 0) return da_fail(DA_ERR_INVALID, "da_world_paraphrase: bad argument");
    if (!spec_valid(spec)) return da_fail(DA_ERR_INVALID, "da_world_paraphrase: invalid spec");
    text_buf b = {buf, cap, 0, 0};
    buf[0] = '\0';
    int swap = spec->n_objects == 2 && pick(rng, 2);
    const da_object *first = &spec->obj[swap ? 1 : 0];
    put_object_words(rng, &b, first, first->size != DA_ANY);
    if (spec->n_objects == 2) {
        const da_object *second = &spec->obj[swap ? 0 : 1];
        put_relation(rng, &b, swap ? converse(spec->relation) : spec->relation);
        put_object_words(rng, &b, second, second->size != DA_ANY);
    }
    if (spec->background != DA_ANY) put_background_words(rng, &b, spec->background);
    if (b.overflow) return da_fail(DA_ERR_RANGE, "da_world_paraphrase: buffer of %zu bytes is too small", cap);
    return DA_OK;
}

static int same_object(const da_object *a, const da_object *b)
{
    return a->colour == b->colour && a->shape == b->shape && a->size == b->size;
}

int da_spec_same_meaning(const da_scene *a, const da_scene *b)
{
    if (!a || !b || a->n_objects != b->n_objects || a->background != b->background) return 0;
    if (a->n_objects == 1) return same_object(&a->obj[0], &b->obj[0]);
    int as_said = a->relation == b->relation && same_object(&a->obj[0], &b->obj[0]) &&
                  same_object(&a->obj[1], &b->obj[1]);
    int converse_said = a->relation >= 0 && a->relation < DA_N_RELATIONS && b->relation == converse(a->relation) &&
                        same_object(&a->obj[0], &b->obj[1]) && same_object(&a->obj[1], &b->obj[0]);
    return as_said || converse_said;
}

/* ---- parser --------------------------------------------------------------- */

typedef struct parser {
    const dw_words *w;
    int pos;                /* next word */
} parser;

static const char *peek(const parser *p) { return p->pos < p->w->n ? p->w->w[p->pos] : NULL; }

static int accept(parser *p, const char *word)
{
    const char *w = peek(p);
    if (w && strcmp(w, word) == 0) { p->pos++; return 1; }
    return 0;
}

/* "expected X after 'prev', got 'w' at position k" (positions count words from 1) */
static da_status expected(const parser *p, const char *what)
{
    const char *w = peek(p);
    if (p->pos == 0)
        return da_fail(DA_ERR_INVALID, "expected %s at the start of the prompt, got '%s'", what, w);
    const char *prev = p->w->w[p->pos - 1];
    if (!w) return da_fail(DA_ERR_INVALID, "expected %s after '%s', but the prompt ends", what, prev);
    return da_fail(DA_ERR_INVALID, "expected %s after '%s', got '%s' at position %d",
                   what, prev, w, p->pos + 1);
}

static da_status parse_object(parser *p, da_object *o)
{
    memset(o, 0, sizeof *o);
    o->colour = o->shape = o->size = DA_ANY;
    if (!accept(p, "a")) accept(p, "an");
    const char *w = peek(p);
    if (w && size_of(w) >= 0) { o->size = size_of(w); p->pos++; }
    w = peek(p);
    if (w && colour_of(w) >= 0) { o->colour = colour_of(w); p->pos++; }
    w = peek(p);
    if (w && shape_of(w) >= 0) { o->shape = shape_of(w); p->pos++; return DA_OK; }
    if (w && background_of(w) >= 0 && o->colour == DA_ANY)
        return expected(p, "an object colour (white, black and gray are background colours) or a shape");
    return expected(p, o->colour == DA_ANY ? "a colour or a shape" : "a shape");
}

/* Returns 1 and sets *rel when a relation starts here, 0 when none does. */
static int parse_relation(parser *p, int *rel, da_status *st)
{
    *st = DA_OK;
    if (accept(p, "above")) { *rel = DA_ABOVE; return 1; }
    if (accept(p, "below")) { *rel = DA_BELOW; return 1; }
    int to = accept(p, "to");
    if (to && !accept(p, "the")) { *st = expected(p, "'the'"); return 1; }
    if (accept(p, "left")) *rel = DA_LEFT_OF;
    else if (accept(p, "right")) *rel = DA_RIGHT_OF;
    else if (to) { *st = expected(p, "'left' or 'right'"); return 1; }
    else return 0;
    if (!accept(p, "of")) *st = expected(p, "'of'");
    return 1;
}

static da_status parse_background(parser *p, int *bg)
{
    int with = accept(p, "with");
    if (!with && !accept(p, "on")) return expected(p, "a relation or a background ('on ...', 'with ...')");
    int article = accept(p, "a");
    const char *w = peek(p);
    if (!w || background_of(w) < 0) return expected(p, "a background colour (white, black, gray)");
    *bg = background_of(w);
    p->pos++;
    if (!accept(p, "background") && (with || article)) return expected(p, "'background'");
    return DA_OK;
}

da_status da_parse_prompt(const char *text, da_scene *out)
{
    if (!text || !out) return da_fail(DA_ERR_INVALID, "da_parse_prompt: NULL argument");
    dw_words words;
    dw_split(text, &words);
    if (words.total == 0) return da_fail(DA_ERR_INVALID, "empty prompt");
    if (words.total > DW_MAX_WORDS)
        return da_fail(DA_ERR_INVALID, "prompt too long: %d words (at most %d)", words.total, DW_MAX_WORDS);
    for (int i = 0; i < words.n; i++)
        if (da_vocab_id(words.w[i]) == DA_TOK_UNK)
            return da_fail(DA_ERR_INVALID, "unknown word '%s' at position %d", words.w[i], i + 1);

    da_scene s;
    memset(&s, 0, sizeof s);
    s.relation = s.background = DA_ANY;
    parser p = {&words, 0};
    da_status st = parse_object(&p, &s.obj[0]);
    s.n_objects = 1;
    if (st == DA_OK && peek(&p) && parse_relation(&p, &s.relation, &st) && st == DA_OK) {
        st = parse_object(&p, &s.obj[1]);
        s.n_objects = 2;
    }
    if (st == DA_OK && peek(&p)) st = parse_background(&p, &s.background);
    if (st == DA_OK && peek(&p))
        st = da_fail(DA_ERR_INVALID, "unexpected word '%s' at position %d after the end of the prompt",
                     peek(&p), p.pos + 1);
    if (st == DA_OK) *out = s;
    return st;
}

da_status da_parse_prompt_ids(const int *ids, da_scene *out)
{
    char text[DA_MAX_TOKENS * 16];   /* the vocabulary's longest word is far under 15 letters */
    da_status s = da_detokenize(ids, DA_MAX_TOKENS, text, sizeof text);
    return s != DA_OK ? s : da_parse_prompt(text, out);
}
