/* A small strict JSON parser (RFC 8259) into a tree, used for safetensors
 * headers. Strict means: no comments, no trailing commas, no leading zeros,
 * no control characters or invalid UTF-8 in strings, no lone surrogates in
 * \u escapes, nothing but whitespace after the top-level value, and a nesting
 * limit so a "[[[[..." header cannot exhaust the stack. Also the one string
 * writer that the JSON outputs (metrics.json, pair metadata) share. */
#ifndef DA_JSON_H
#define DA_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define DA_JSON_MAX_DEPTH 64

typedef enum da_json_type {
    DA_JSON_NULL, DA_JSON_FALSE, DA_JSON_TRUE, DA_JSON_NUMBER, DA_JSON_STRING, DA_JSON_ARRAY, DA_JSON_OBJECT
} da_json_type;

typedef struct da_json_value da_json_value;
struct da_json_value {
    da_json_type type;
    int n;              /* ARRAY / OBJECT: number of items */
    da_json_value *items;  /* ARRAY / OBJECT: the items, in document order */
    char *key;          /* set when this value is an object member: decoded, NUL-terminated */
    size_t key_len;     /* bytes in key (may contain a \u0000, so compare with strlen) */
    char *str;          /* STRING: decoded UTF-8; NUMBER: the literal as written */
    size_t len;         /* bytes in str */
};

/* Parse text[0..len). On success returns 0 and fills *root (free with
 * da_json_free). On failure returns -1, *root is empty and err holds a message
 * naming the problem and its byte offset. Allocation failure is reported the
 * same way ("out of memory"). */
int da_json_parse(const char *text, size_t len, da_json_value *root, char *err, size_t errsz);
void da_json_free(da_json_value *v);

/* A NUMBER that is a plain non-negative integer (no sign, fraction or
 * exponent) fitting in uint64: returns 0 and sets *out. Otherwise returns
 * -1 (not a number), -2 (negative), -3 (not an integer), -4 (too large). */
int da_json_to_u64(const da_json_value *v, uint64_t *out);

/* 1 when s[0..n) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
int da_json_utf8_valid(const char *s, size_t n);

/* s as a JSON string literal, quotes included: '"' and '\\' get a backslash,
 * control characters become \u00xx, valid UTF-8 sequences are copied as
 * they are, and every byte >= 0x80 that does not start a valid sequence is
 * written as \u00xx (the Latin-1 reading of that byte). Prompts are plain
 * words, but paths and prompt files may hold anything: a quote, a newline or
 * a Latin-1 file name must not give a file the strict parser rejects. */
void da_json_write_str(FILE *f, const char *s);

#endif
