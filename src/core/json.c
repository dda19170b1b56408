/* Strict JSON parser: recursive descent into a da_json_value tree. The input is
 * untrusted (a file header), so every read is bounds-checked against `end`
 * and nesting is limited to DA_JSON_MAX_DEPTH. At the end, the string writer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

typedef struct parser {
    const unsigned char *start, *p, *end;
    char *err;
    size_t errsz;
    int failed;
} parser;

static int fail(parser *ps, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int fail(parser *ps, const char *fmt, ...)
{
    if (ps->failed) return -1;    /* keep the first (innermost) message */
    ps->failed = 1;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ps->errsz) snprintf(ps->err, ps->errsz, "%s at byte %zu", msg, (size_t)(ps->p - ps->start));
    return -1;
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

/* Length of the valid UTF-8 sequence at s (s < end), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; min = 0x80; c &= 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; min = 0x800; c &= 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; min = 0x10000; c &= 0x07; }
    else return 0;     /* continuation byte, overlong C0/C1 lead, or > F4 */
    if ((size_t)(end - s) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    return n;
}

int da_json_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        size_t k = utf8_seq(p, end);
        if (!k) return 0;
        p += k;
    }
    return 1;
}

static size_t utf8_put(char *out, unsigned cp)
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* 4 hex digits after "\u"; -1 when malformed */
static long hex4(parser *ps)
{
    if (ps->end - ps->p < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = ps->p[i];
        int d = (c >= '0' && c <= '9') ? (int)(c - '0')
              : (c >= 'a' && c <= 'f') ? (int)(c - 'a' + 10)
              : (c >= 'A' && c <= 'F') ? (int)(c - 'A' + 10) : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    ps->p += 4;
    return v;
}

/* One escape after the backslash; appends its UTF-8 bytes to out. */
static int parse_escape(parser *ps, char *out, size_t *n)
{
    if (ps->p >= ps->end) return fail(ps, "unterminated string");
    unsigned char c = *ps->p++;
    const char *simple = strchr("\"\\/bfnrt", c);
    if (c && simple) {
        static const char repl[] = "\"\\/\b\f\n\r\t";
        out[(*n)++] = repl[simple - "\"\\/bfnrt"];
        return 0;
    }
    if (c != 'u') { ps->p--; return fail(ps, "invalid escape '\\%c' in string", c >= 0x20 && c < 0x7F ? c : '?'); }
    long cp = hex4(ps);
    if (cp < 0) return fail(ps, "invalid \\u escape (need 4 hex digits)");
    if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(ps, "lone low surrogate \\u%04lX", cp);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        /* a high surrogate must be followed by \u + low surrogate */
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
            return fail(ps, "lone high surrogate \\u%04lX", cp);
        ps->p += 2;
        long lo = hex4(ps);
        if (lo < 0) return fail(ps, "invalid \\u escape (need 4 hex digits)");
        if (lo < 0xDC00 || lo > 0xDFFF) return fail(ps, "high surrogate not followed by a low surrogate");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    *n += utf8_put(out + *n, (unsigned)cp);
    return 0;
}

/* ps->p is at the opening quote. The decoded text is never longer than the
 * raw text (an escape of k bytes decodes to at most k bytes), so one
 * allocation of the raw length suffices. */
static int parse_string(parser *ps, char **out, size_t *out_len)
{
    const unsigned char *q = ++ps->p;
    while (q < ps->end && *q != '"') q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
    if (q >= ps->end) return fail(ps, "unterminated string");
    char *s = malloc((size_t)(q - ps->p) + 1);
    if (!s) return fail(ps, "out of memory");
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != '"') {
        unsigned char c = *ps->p;
        if (c < 0x20) { free(s); return fail(ps, "control character 0x%02X in string", c); }
        if (c == '\\') {
            ps->p++;
            if (parse_escape(ps, s, &n)) { free(s); return -1; }
            continue;
        }
        size_t k = utf8_seq(ps->p, ps->end);
        if (!k) { free(s); return fail(ps, "invalid UTF-8 in string"); }
        memcpy(s + n, ps->p, k);
        n += k;
        ps->p += k;
    }
    if (ps->p >= ps->end) { free(s); return fail(ps, "unterminated string"); }
    ps->p++;   /* closing quote */
    s[n] = '\0';
    *out = s;
    *out_len = n;
    return 0;
}

static int is_digit(parser *ps) { return ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9'; }

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?  kept as text so integers
 * up to 2^64-1 survive exactly (a double would round them). */
static int parse_number(parser *ps, da_json_value *v)
{
    const unsigned char *s = ps->p;
    if (*ps->p == '-') ps->p++;
    if (!is_digit(ps)) return fail(ps, "invalid number");
    if (*ps->p == '0') {
        ps->p++;
        if (is_digit(ps)) return fail(ps, "leading zero in number");
    } else {
        while (is_digit(ps)) ps->p++;
    }
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (!is_digit(ps)) return fail(ps, "digit expected after '.'");
        while (is_digit(ps)) ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (!is_digit(ps)) return fail(ps, "digit expected in exponent");
        while (is_digit(ps)) ps->p++;
    }
    size_t n = (size_t)(ps->p - s);
    v->str = malloc(n + 1);
    if (!v->str) return fail(ps, "out of memory");
    memcpy(v->str, s, n);
    v->str[n] = '\0';
    v->len = n;
    v->type = DA_JSON_NUMBER;
    return 0;
}

static int parse_value(parser *ps, da_json_value *v, int depth);

/* Append a zeroed slot to v->items, growing by doubling. */
static da_json_value *push_item(parser *ps, da_json_value *v, int *cap)
{
    if (v->n == *cap) {
        if (*cap > (1 << 28)) { fail(ps, "too many items"); return NULL; }
        int nc = *cap ? *cap * 2 : 4;
        da_json_value *it = realloc(v->items, (size_t)nc * sizeof *it);
        if (!it) { fail(ps, "out of memory"); return NULL; }
        v->items = it;
        *cap = nc;
    }
    da_json_value *it = &v->items[v->n++];
    memset(it, 0, sizeof *it);
    return it;
}

/* Arrays and objects share the loop: ps->p is at '[' or '{'. */
static int parse_container(parser *ps, da_json_value *v, int depth)
{
    int is_obj = *ps->p == '{';
    char close = is_obj ? '}' : ']';
    v->type = is_obj ? DA_JSON_OBJECT : DA_JSON_ARRAY;
    if (depth >= DA_JSON_MAX_DEPTH) return fail(ps, "nesting deeper than %d levels", DA_JSON_MAX_DEPTH);
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) { ps->p++; return 0; }
    int cap = 0;
    for (;;) {
        da_json_value *it = push_item(ps, v, &cap);
        if (!it) return -1;
        skip_ws(ps);
        if (is_obj) {
            if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "object key (string) expected");
            if (parse_string(ps, &it->key, &it->key_len)) return -1;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "':' expected after object key");
            ps->p++;
            skip_ws(ps);
        }
        if (parse_value(ps, it, depth + 1)) return -1;
        skip_ws(ps);
        if (ps->p >= ps->end) return fail(ps, "unexpected end of input, '%c' or ',' expected", close);
        if (*ps->p == ',') { ps->p++; continue; }
        if (*ps->p == close) { ps->p++; return 0; }
        return fail(ps, "'%c' or ',' expected", close);
    }
}

static int parse_literal(parser *ps, da_json_value *v, const char *word, da_json_type type)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return fail(ps, "invalid literal");
    ps->p += n;
    v->type = type;
    return 0;
}

/* Leaves partially parsed children in v on failure; da_json_free cleans up. */
static int parse_value(parser *ps, da_json_value *v, int depth)
{
    if (ps->p >= ps->end) return fail(ps, "unexpected end of input, value expected");
    switch (*ps->p) {
    case '{': case '[': return parse_container(ps, v, depth);
    case '"':
        v->type = DA_JSON_STRING;
        return parse_string(ps, &v->str, &v->len);
    case 't': return parse_literal(ps, v, "true", DA_JSON_TRUE);
    case 'f': return parse_literal(ps, v, "false", DA_JSON_FALSE);
    case 'n': return parse_literal(ps, v, "null", DA_JSON_NULL);
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return parse_number(ps, v);
        return fail(ps, "unexpected character 0x%02X, value expected", *ps->p);
    }
}

int da_json_parse(const char *text, size_t len, da_json_value *root, char *err, size_t errsz)
{
    parser ps = {(const unsigned char *)text, (const unsigned char *)text, (const unsigned char *)text + len,
                 err, errsz, 0};
    memset(root, 0, sizeof *root);
    if (errsz) err[0] = '\0';
    skip_ws(&ps);
    int rc = parse_value(&ps, root, 0);
    if (!rc) {
        skip_ws(&ps);
        if (ps.p != ps.end) rc = fail(&ps, "trailing characters after the JSON value");
    }
    if (rc) {
        da_json_free(root);
        return -1;
    }
    return 0;
}

void da_json_free(da_json_value *v)
{
    if (!v) return;
    for (int i = 0; i < v->n; i++) da_json_free(&v->items[i]);
    free(v->items);
    free(v->key);
    free(v->str);
    memset(v, 0, sizeof *v);
}

int da_json_to_u64(const da_json_value *v, uint64_t *out)
{
    if (v->type != DA_JSON_NUMBER) return -1;
    const char *s = v->str;
    if (s[0] == '-') return -2;
    if (strpbrk(s, ".eE")) return -3;
    uint64_t x = 0;
    for (; *s; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10) return -4;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

/* The other direction: escape, and let no byte through that the parser
 * above would reject (a path or prompt file may not be UTF-8). */
void da_json_write_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    fputc('"', f);
    while (p < end) {
        unsigned char c = *p;
        size_t k = c < 0x80 ? 1 : utf8_seq(p, end);
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || !k) fprintf(f, "\\u%04x", c);   /* !k: a stray byte, kept as U+00XX */
        else fwrite(p, 1, k, f);
        p += k ? k : 1;
    }
    fputc('"', f);
}
