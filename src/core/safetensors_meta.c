/* Typed reads of safetensors metadata (safetensors_meta.h). */
#include "core/safetensors_meta.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"

/* "file: " in front of a message, or nothing when the caller adds it */
#define FILE_FMT "%s%s"
#define FILE_ARGS(file) (file) ? (file) : "", (file) ? ": " : ""

const char *da_st_meta_need(const da_safetensors *st, const char *file, const char *key)
{
    const char *v = da_st_meta_get(st, key);
    if (!v) da_fail(DA_ERR_FORMAT, FILE_FMT "metadata '%s' is missing", FILE_ARGS(file), key);
    return v;
}

da_status da_st_meta_long(const da_safetensors *st, const char *file, const char *key, long lo, long hi,
                          long *out)
{
    const char *v = da_st_meta_need(st, file, key);
    if (!v) return DA_ERR_FORMAT;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return da_fail(DA_ERR_FORMAT, FILE_FMT "metadata '%s' = '%s' is not an integer in [%ld, %ld]",
                       FILE_ARGS(file), key, v, lo, hi);
    *out = x;
    return DA_OK;
}

da_status da_st_meta_u64(const da_safetensors *st, const char *file, const char *key, uint64_t *out)
{
    const char *v = da_st_meta_need(st, file, key);
    if (!v) return DA_ERR_FORMAT;
    if (da_parse_u64(v, out))
        return da_fail(DA_ERR_FORMAT, FILE_FMT "metadata '%s' = '%s' is not an integer in [0, 2^64)",
                       FILE_ARGS(file), key, v);
    return DA_OK;
}

/* the whole of s as a finite float: strtof turns an overflow into inf,
 * which isfinite refuses */
static int parse_finite_float(const char *s, float *out)
{
    char *end;
    float x = strtof(s, &end);
    if (end == s || *end || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

da_status da_st_meta_float(const da_safetensors *st, const char *file, const char *key, float *out)
{
    const char *v = da_st_meta_need(st, file, key);
    if (!v) return DA_ERR_FORMAT;
    if (parse_finite_float(v, out))
        return da_fail(DA_ERR_FORMAT, FILE_FMT "metadata '%s' = '%s' is not a finite number", FILE_ARGS(file),
                       key, v);
    return DA_OK;
}

static const char *json_type_name(da_json_type t)
{
    switch (t) {
    case DA_JSON_ARRAY: return "array";
    case DA_JSON_OBJECT: return "object";
    case DA_JSON_STRING: return "string";
    case DA_JSON_NUMBER: return "number";
    default: return "literal";
    }
}

da_status da_st_meta_json(const da_safetensors *st, const char *file, const char *key, da_json_type type, int n,
                          da_json_value *v)
{
    memset(v, 0, sizeof *v);
    const char *s = da_st_meta_need(st, file, key);
    if (!s) return DA_ERR_FORMAT;
    char err[160];
    if (da_json_parse(s, strlen(s), v, err, sizeof err))
        return da_fail(DA_ERR_FORMAT, FILE_FMT "metadata '%s': %s", FILE_ARGS(file), key, err);
    int container = v->type == DA_JSON_ARRAY || v->type == DA_JSON_OBJECT;
    if (v->type == type && (n < 0 || !container || v->n == n)) return DA_OK;
    int items = container ? v->n : 0;
    da_json_free(v);
    memset(v, 0, sizeof *v);
    const char *what = json_type_name(type);
    if (n >= 0 && (type == DA_JSON_ARRAY || type == DA_JSON_OBJECT))
        return da_fail(DA_ERR_FORMAT, FILE_FMT "metadata '%s' must be a JSON %s of %d items (n), has %d",
                       FILE_ARGS(file), key, what, n, items);
    return da_fail(DA_ERR_FORMAT, FILE_FMT "metadata '%s' must be a JSON %s", FILE_ARGS(file), key, what);
}
