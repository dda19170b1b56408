/* Table-driven reader and writer for the models' JSON configs (config.h). */
#include "core/config.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"

#define CONFIG_MAX_BYTES ((size_t)64 << 20)   /* a config is tiny: refuse huge files */

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */
/* ------------------------------------------------------------------------ */

/* a JSON number literal as an int in [lo, hi]: no fraction or exponent, and
 * no minus sign at all when lo >= 0 (so "-0" is refused too) */
static int json_int(const da_json_value *v, int lo, int hi, int *out)
{
    if (v->type != DA_JSON_NUMBER || strpbrk(v->str, ".eE") || (lo >= 0 && v->str[0] == '-')) return -1;
    errno = 0;
    char *end;
    long long x = strtoll(v->str, &end, 10);
    if (errno || *end || x < lo || x > hi) return -1;
    *out = (int)x;
    return 0;
}

static int json_float(const da_json_value *v, float *out)
{
    if (v->type != DA_JSON_NUMBER) return -1;
    char *end;
    double x = strtod(v->str, &end);
    if (*end || !isfinite((float)x)) return -1;
    *out = (float)x;
    return 0;
}

/* one field from its JSON value; ints must lie in [lo, hi] */
static da_status cfg_set(const char *path, const da_cfg_field *f, const da_json_value *v, int lo, int hi)
{
    int n = f->count;
    const da_json_value *items = v;
    void *dst = f->ptr;
    if (f->kind == DA_CFG_INT_LIST) {
        if (v->type != DA_JSON_ARRAY || v->n < 1 || v->n > n)
            return da_fail(DA_ERR_FORMAT, "%s: \"%s\" must be an array of 1 to %d integers", path, f->key, n);
        n = v->n;
        items = v->items;
        dst = ((const da_cfg_list *)f->ptr)->values;
    } else if (n > 1) {
        if (v->type != DA_JSON_ARRAY || v->n != n)
            return da_fail(DA_ERR_FORMAT, "%s: \"%s\" must be an array of %d numbers", path, f->key, n);
        items = v->items;
    }
    for (int i = 0; i < n; i++) {
        int bad = f->kind == DA_CFG_FLOAT ? json_float(&items[i], (float *)dst + i)
                                          : json_int(&items[i], lo, hi, (int *)dst + i);
        if (bad && f->kind == DA_CFG_FLOAT)
            return da_fail(DA_ERR_FORMAT, "%s: \"%s\" must be a finite number", path, f->key);
        if (bad) return da_fail(DA_ERR_FORMAT, "%s: \"%s\" must hold integers in [%d, %d]", path, f->key, lo, hi);
    }
    if (f->kind == DA_CFG_INT_LIST) {
        const da_cfg_list *list = f->ptr;
        *list->len = n - list->len_bias;
    }
    return DA_OK;
}

/* the fields from the members of root; strict: every field exactly once */
static da_status cfg_set_all(const char *path, const da_json_value *root, const da_cfg_field *f, int n,
                             int strict, int lo, int hi)
{
    if (root->type != DA_JSON_OBJECT) return da_fail(DA_ERR_FORMAT, "%s: expected a JSON object", path);
    uint64_t seen = 0;  /* a bit per field (strict configs have < 64 fields) */
    for (int i = 0; i < root->n; i++) {
        const da_json_value *v = &root->items[i];
        int k = 0;
        while (k < n && (strlen(f[k].key) != v->key_len || strcmp(f[k].key, v->key) != 0)) k++;
        if (k == n) return da_fail(DA_ERR_FORMAT, "%s: unknown key \"%s\"", path, v->key);
        if (strict && (seen >> k & 1)) return da_fail(DA_ERR_FORMAT, "%s: duplicate key \"%s\"", path, v->key);
        da_status s = cfg_set(path, &f[k], v, lo, hi);
        if (s != DA_OK) return s;
        if (strict) seen |= (uint64_t)1 << k;
    }
    for (int k = 0; strict && k < n; k++)
        if (!(seen >> k & 1)) return da_fail(DA_ERR_FORMAT, "%s: missing key \"%s\"", path, f[k].key);
    return DA_OK;
}

static da_status cfg_read(const char *path, const da_cfg_field *f, int n, int strict, int lo, int hi)
{
    char *text = NULL;
    size_t len = 0;
    if (da_read_file(path, CONFIG_MAX_BYTES, &text, &len) != DA_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", da_last_error());
        return da_fail(DA_ERR_IO, "cannot read config: %s", why);
    }
    da_json_value root;
    char err[256];
    int bad = da_json_parse(text, len, &root, err, sizeof err);
    free(text);
    if (bad) return da_fail(DA_ERR_FORMAT, "%s: %s", path, err);
    da_status s = cfg_set_all(path, &root, f, n, strict, lo, hi);
    da_json_free(&root);
    return s;
}

da_status da_cfg_read(const char *path, const da_cfg_field *f, int n)
{
    return cfg_read(path, f, n, 0, -2147483647, 2147483647);
}

da_status da_cfg_read_strict(const char *path, const da_cfg_field *f, int n, int int_max)
{
    assert(n < 64);   /* cfg_set_all keeps a bit per field */
    return cfg_read(path, f, n, 1, 0, int_max);
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct cfg_table {
    const da_cfg_field *f;
    int n;
} cfg_table;

static void write_value(FILE *fp, const da_cfg_field *f, int i)
{
    if (f->kind == DA_CFG_INT_LIST) fprintf(fp, "%d", ((const da_cfg_list *)f->ptr)->values[i]);
    else if (f->kind == DA_CFG_INT) fprintf(fp, "%d", ((const int *)f->ptr)[i]);
    else fprintf(fp, "%.9g", (double)((const float *)f->ptr)[i]);  /* 9 digits: f32 round-trips */
}

/* da_writer_fn: one "key": value line per field, arrays and lists in [] */
static void write_fields(FILE *fp, const void *ctx)
{
    const cfg_table *t = ctx;
    const da_cfg_field *f = t->f;
    fprintf(fp, "{\n");
    for (int k = 0; k < t->n; k++) {
        int list = f[k].kind == DA_CFG_INT_LIST, array = list || f[k].count > 1;
        int count = f[k].count;
        if (list) {
            const da_cfg_list *l = f[k].ptr;
            count = *l->len + l->len_bias;
        }
        fprintf(fp, "  \"%s\": ", f[k].key);
        if (array) fputc('[', fp);
        for (int i = 0; i < count; i++) {
            if (i) fprintf(fp, ", ");
            write_value(fp, &f[k], i);
        }
        if (array) fputc(']', fp);
        fprintf(fp, k + 1 < t->n ? ",\n" : "\n");
    }
    fprintf(fp, "}\n");
}

da_status da_cfg_write(const char *path, const da_cfg_field *f, int n)
{
    for (int k = 0; k < n; k++)
        for (int i = 0; f[k].kind == DA_CFG_FLOAT && i < f[k].count; i++)
            if (!isfinite(((const float *)f[k].ptr)[i]))
                return da_fail(DA_ERR_INVALID, "config value \"%s\" is not finite", f[k].key);
    /* da_write_with takes the directory and the name apart: "a/b.json" is
     * "a" + "b.json", "b.json" is "." + "b.json", "/b.json" is "" + "b.json" */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) : 1;
    if (dlen >= sizeof dir) return da_fail(DA_ERR_INVALID, "path too long: %s", path);
    memcpy(dir, slash ? path : ".", dlen);
    dir[dlen] = '\0';
    cfg_table t = {f, n};
    return da_write_with(dir, slash ? slash + 1 : path, write_fields, &t);
}

/* ------------------------------------------------------------------------ */
/* A model's config struct as a whole                                       */
/* ------------------------------------------------------------------------ */

da_status da_cfg_load(const da_cfg_type *type, void *cfg, const char *path)
{
    void *copy = malloc(type->size);
    if (!copy) return da_fail(DA_ERR_NOMEM, "out of memory reading %s", path);
    if (type->strict_int_max > 0) memset(copy, 0, type->size);   /* list entries past the file's stay 0 */
    else memcpy(copy, cfg, type->size);
    da_cfg_list list;
    da_cfg_field f[DA_CFG_MAX_FIELDS];
    int n = type->fields(copy, &list, f);
    da_status s = type->strict_int_max > 0 ? da_cfg_read_strict(path, f, n, type->strict_int_max)
                                          : da_cfg_read(path, f, n);
    if (s == DA_OK && (s = type->check(copy)) != DA_OK) {
        /* the model's own rules name the field, not the file: add it, as
         * the reader's messages have it */
        char why[512];
        snprintf(why, sizeof why, "%s", da_last_error());
        s = da_fail(s, "%s: %s", path, why);
    }
    if (s == DA_OK) memcpy(cfg, copy, type->size);
    free(copy);
    return s;
}

da_status da_cfg_save(const da_cfg_type *type, const void *cfg, const char *path)
{
    void *copy = malloc(type->size);   /* the table takes non-const pointers */
    if (!copy) return da_fail(DA_ERR_NOMEM, "out of memory writing %s", path);
    memcpy(copy, cfg, type->size);
    da_cfg_list list;
    da_cfg_field f[DA_CFG_MAX_FIELDS];
    da_status s = da_cfg_write(path, f, type->fields(copy, &list, f));
    free(copy);
    return s;
}
