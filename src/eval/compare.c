/* Flattening metrics.json files and comparing two of them (compare.h). */
#include "eval/compare.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

#define MAX_FILE_BYTES (64u << 20)   /* a metrics file is kilobytes; refuse anything absurd */

void da_flat_metrics_free(da_flat_metrics *m)
{
    if (!m) return;
    free(m->m);
    memset(m, 0, sizeof *m);
}

const da_flat_metric *da_flat_metrics_find(const da_flat_metrics *m, const char *key)
{
    /* linear: a metrics file has a few hundred leaves */
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->m[i].key, key)) return &m->m[i];
    return NULL;
}

static da_status push(da_flat_metrics *m, const char *key, double value)
{
    if (da_flat_metrics_find(m, key)) return da_fail(DA_ERR_FORMAT, "metrics: key '%s' appears twice", key);
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 64;
        da_flat_metric *p = realloc(m->m, (size_t)cap * sizeof *p);
        if (!p) return da_fail(DA_ERR_NOMEM, "metrics: out of memory");
        m->m = p;
        m->cap = cap;
    }
    snprintf(m->m[m->n].key, DA_METRIC_KEY_MAX, "%s", key);
    m->m[m->n].value = value;
    m->n++;
    return DA_OK;
}

/* the number literal as a finite double (the parser has checked its syntax) */
static da_status number_value(const da_json_value *v, const char *key, double *out)
{
    errno = 0;
    double x = strtod(v->str, NULL);
    if (errno == ERANGE && fabs(x) > 1.0) x = INFINITY;   /* underflow to ~0 is fine, overflow is not */
    if (!isfinite(x)) return da_fail(DA_ERR_FORMAT, "metrics: '%s' = %s does not fit a double", key, v->str);
    *out = x;
    return DA_OK;
}

/* v's numeric leaves under the prefix key[0..len) (len 0: the top level) */
static da_status flatten(da_flat_metrics *m, const da_json_value *v, char *key, size_t len)
{
    if (v->type == DA_JSON_NUMBER) {
        double x = 0.0;
        da_status s = number_value(v, key, &x);
        return s ? s : push(m, key, x);
    }
    if (v->type != DA_JSON_OBJECT && v->type != DA_JSON_ARRAY) return DA_OK;   /* strings, booleans, null */
    for (int i = 0; i < v->n; i++) {
        const da_json_value *c = &v->items[i];
        char idx[24];
        const char *name = c->key;
        if (v->type == DA_JSON_ARRAY) {
            snprintf(idx, sizeof idx, "%d", i);
            name = idx;
        } else if (strlen(c->key) != c->key_len) {
            return da_fail(DA_ERR_FORMAT, "metrics: a key under '%s' contains a NUL character", key);
        }
        size_t nl = strlen(name), sep = len ? 1 : 0;
        if (len + sep + nl >= DA_METRIC_KEY_MAX)
            return da_fail(DA_ERR_FORMAT, "metrics: key '%.40s...' is longer than %d bytes", key,
                           DA_METRIC_KEY_MAX - 1);
        if (sep) key[len] = '.';
        memcpy(key + len + sep, name, nl + 1);
        da_status s = flatten(m, c, key, len + sep + nl);
        key[len] = '\0';
        if (s) return s;
    }
    return DA_OK;
}

da_status da_flat_metrics_parse(const char *text, size_t len, da_flat_metrics *out)
{
    memset(out, 0, sizeof *out);
    if (!text) return da_fail(DA_ERR_INVALID, "da_flat_metrics_parse: NULL text");
    da_json_value root;
    char err[256];
    if (da_json_parse(text, len, &root, err, sizeof err) != 0) return da_fail(DA_ERR_FORMAT, "not valid JSON: %s", err);
    da_status s = DA_OK;
    if (root.type != DA_JSON_OBJECT) s = da_fail(DA_ERR_FORMAT, "metrics: the top level is not a JSON object");
    char key[DA_METRIC_KEY_MAX] = "";
    if (!s) s = flatten(out, &root, key, 0);
    da_json_free(&root);
    if (s) da_flat_metrics_free(out);
    return s;
}

static da_status read_text(const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return da_fail(DA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    da_status s = buf ? DA_OK : da_fail(DA_ERR_NOMEM, "out of memory reading %s", path);
    while (!s) {
        if (n == cap) {
            char *p = cap < MAX_FILE_BYTES ? realloc(buf, 2 * cap) : NULL;
            if (!p) {
                s = da_fail(DA_ERR_FORMAT, "%s: too large for a metrics file", path);
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) s = da_fail(DA_ERR_IO, "cannot read %s", path);
            break;
        }
    }
    fclose(f);
    if (s) {
        free(buf);
        return s;
    }
    *text = buf;
    *len = n;
    return DA_OK;
}

da_status da_flat_metrics_load(const char *path, da_flat_metrics *out)
{
    memset(out, 0, sizeof *out);
    if (!path) return da_fail(DA_ERR_INVALID, "da_flat_metrics_load: NULL path");
    char *text = NULL;
    size_t len = 0;
    da_status s = read_text(path, &text, &len);
    if (s) return s;
    s = da_flat_metrics_parse(text, len, out);
    free(text);
    if (s) {
        char why[512];   /* da_fail writes the buffer da_last_error() points to */
        snprintf(why, sizeof why, "%s", da_last_error());
        return da_fail(s, "%s: %s", path, why);
    }
    return DA_OK;
}

/* width of the key column: the longest shared key, at least "metric" */
static int key_width(const da_flat_metrics *a, const da_flat_metrics *b)
{
    int w = 6;
    for (int i = 0; i < a->n; i++) {
        int l = (int)strlen(a->m[i].key);
        if (l > w && da_flat_metrics_find(b, a->m[i].key)) w = l;
    }
    return w;
}

/* keys of x that y lacks, under a heading; returns their count */
static int print_only(FILE *f, const da_flat_metrics *x, const da_flat_metrics *y, const char *name)
{
    int n = 0;
    for (int i = 0; i < x->n; i++) {
        if (da_flat_metrics_find(y, x->m[i].key)) continue;
        if (n++ == 0) fprintf(f, "\nonly in %s:\n", name);
        fprintf(f, "  %s = %.6g\n", x->m[i].key, x->m[i].value);
    }
    return n;
}

void da_flat_metrics_compare(FILE *f, const da_flat_metrics *a, const da_flat_metrics *b, const char *name_a,
                        const char *name_b, da_compare_counts *counts)
{
    da_compare_counts c = {0, 0, 0};
    int w = key_width(a, b);
    fprintf(f, "A: %s\nB: %s\n\n", name_a, name_b);
    fprintf(f, "%-*s  %12s  %12s  %12s  %9s\n", w, "metric", "A", "B", "B - A", "rel");
    for (int i = 0; i < a->n; i++) {
        const da_flat_metric *x = &a->m[i], *y = da_flat_metrics_find(b, x->key);
        if (!y) continue;
        c.both++;
        double d = y->value - x->value;
        fprintf(f, "%-*s  %12.6g  %12.6g  %+12.6g  ", w, x->key, x->value, y->value, d);
        if (x->value != 0.0) fprintf(f, "%+8.2f%%\n", 100.0 * d / fabs(x->value));
        else fprintf(f, "%9s\n", "-");   /* no relative change from 0 */
    }
    if (c.both == 0) fprintf(f, "(no numeric metric in both files)\n");
    c.only_a = print_only(f, a, b, name_a);
    c.only_b = print_only(f, b, a, name_b);
    if (counts) *counts = c;
}
