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

static void put_object(da_rng *r, text_buf *b, const da_object *o)
{
    const char *words[3];
    int n = 0;
    /* canonical: always the size; otherwise half of the time, "big" for a
     * third of the large ones */
    if (!r || pick(r, 2)) words[n++] = o->size == DA_SMALL ? "small" : (pick(r, 3) == 2 ? "big" : "large");
    words[n++] = da_colour_name(o->colour);
    words[n++] = da_shape_name(o->shape);
    put(b, strchr("aeiou", words[0][0]) ? "an" : "a");
    for (int i = 0; i < n; i++) put(b, words[i]);
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

static void put_background(da_rng *r, text_buf *b, int bg)
{
    /* canonical: "on a X background"; sampled: omitted half of the time */
    if (r && pick(r, 2) == 0) return;
    int form = pick(r, 3);
    const char *name = da_background_name(bg);
    if (bg == DA_BG_GRAY && pick(r, 2)) name = "grey";
    if (form == 0) { put(b, "on"); put(b, "a"); put(b, name); put(b, "background"); }
    if (form == 1) { put(b, "on"); put(b, name); }
    if (form == 2) { put(b, "with"); put(b, "a"); put(b, name); put(b, "background"); }
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
