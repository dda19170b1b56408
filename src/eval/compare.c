/* Flattening metrics.json files and comparing two of them (compare.h). */
#include "eval/compare.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

#define MAX_FILE_BYTES (256u << 20)   /* a metrics file is kilobytes; refuse anything absurd */

void da_flat_metrics_free(da_flat_metrics *m)
{
    if (!m) return;
    for (int i = 0; i < m->n; i++) free(m->m[i].key);
    for (int i = 0; i < m->n_text; i++) {
        free(m->text[i].key);
        free(m->text[i].value);
    }
    free(m->m);
    free(m->by_key);
    free(m->text);
    free(m->text_by_key);
    memset(m, 0, sizeof *m);
}

/* Both leaf types start with their key: one comparison for the sorts and searches */
static int cmp_key_ptr(const void *x, const void *y)
{
    return strcmp(**(char *const *const *)x, **(char *const *const *)y);
}

static int cmp_key_search(const void *key, const void *elem) { return strcmp(key, **(char *const *const *)elem); }

const da_flat_metric *da_flat_metrics_find(const da_flat_metrics *m, const char *key)
{
    if (!m->n || !m->by_key) return NULL;
    const da_flat_metric **hit = bsearch(key, m->by_key, (size_t)m->n, sizeof *m->by_key, cmp_key_search);
    return hit ? *hit : NULL;
}

const da_flat_text *da_flat_metrics_find_text(const da_flat_metrics *m, const char *key)
{
    if (!m->n_text || !m->text_by_key) return NULL;
    const da_flat_text **hit = bsearch(key, m->text_by_key, (size_t)m->n_text, sizeof *m->text_by_key, cmp_key_search);
    return hit ? *hit : NULL;
}

/* grow an array of n elements of `size` bytes to hold one more */
static da_status grow(void **arr, int n, int *cap, size_t size)
{
    if (n < *cap) return DA_OK;
    int c = *cap ? 2 * *cap : 64;
    void *p = realloc(*arr, (size_t)c * size);
    if (!p) return da_fail(DA_ERR_NOMEM, "metrics: out of memory");
    *arr = p;
    *cap = c;
    return DA_OK;
}

/* duplicates are found once everything is in, on the sorted index: n log n */
static da_status push(da_flat_metrics *m, const char *key, double value)
{
    da_status s = grow((void **)&m->m, m->n, &m->cap, sizeof *m->m);
    char *k = s ? NULL : strdup(key);
    if (!s && !k) s = da_fail(DA_ERR_NOMEM, "metrics: out of memory");
    if (s) return s;
    m->m[m->n].key = k;
    m->m[m->n].value = value;
    m->n++;
    return DA_OK;
}

static da_status push_text(da_flat_metrics *m, const char *key, const char *value)
{
    da_status s = grow((void **)&m->text, m->n_text, &m->cap_text, sizeof *m->text);
    if (s) return s;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return da_fail(DA_ERR_NOMEM, "metrics: out of memory");
    }
    m->text[m->n_text].key = k;
    m->text[m->n_text].value = v;
    m->n_text++;
    return DA_OK;
}

/* the sorted indexes, and no key twice (a number and a string included) */
static da_status build_index(da_flat_metrics *m)
{
    m->by_key = malloc(((size_t)m->n + 1) * sizeof *m->by_key);
    m->text_by_key = malloc(((size_t)m->n_text + 1) * sizeof *m->text_by_key);
    if (!m->by_key || !m->text_by_key) return da_fail(DA_ERR_NOMEM, "metrics: out of memory");
    for (int i = 0; i < m->n; i++) m->by_key[i] = &m->m[i];
    for (int i = 0; i < m->n_text; i++) m->text_by_key[i] = &m->text[i];
    qsort(m->by_key, (size_t)m->n, sizeof *m->by_key, cmp_key_ptr);
    qsort(m->text_by_key, (size_t)m->n_text, sizeof *m->text_by_key, cmp_key_ptr);
    for (int i = 1; i < m->n; i++)
        if (!strcmp(m->by_key[i - 1]->key, m->by_key[i]->key))
            return da_fail(DA_ERR_FORMAT, "metrics: key '%s' appears twice", m->by_key[i]->key);
    for (int i = 0; i < m->n_text; i++)
        if ((i && !strcmp(m->text_by_key[i - 1]->key, m->text_by_key[i]->key)) ||
            da_flat_metrics_find(m, m->text_by_key[i]->key))
            return da_fail(DA_ERR_FORMAT, "metrics: key '%s' appears twice", m->text_by_key[i]->key);
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
    if (v->type == DA_JSON_STRING) return push_text(m, key, v->str);   /* settings, provenance */
    if (v->type != DA_JSON_OBJECT && v->type != DA_JSON_ARRAY) return DA_OK;   /* booleans, null */
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
    if (!s) s = build_index(out);
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

/* the provenance keys metrics.json records (provenance.h) */
static int is_provenance(const char *key)
{
    return !strcmp(key, "dalign_version") || !strncmp(key, "weights_sha256.", 15);
}

/* the text values of both files that differ, and those only one has;
 * counts what differs */
static void print_text(FILE *f, const da_flat_metrics *a, const da_flat_metrics *b, const char *name_a,
                       const char *name_b, da_compare_counts *c)
{
    int n = 0;
    for (int i = 0; i < a->n_text; i++) {
        const da_flat_text *x = &a->text[i], *y = da_flat_metrics_find_text(b, x->key);
        if (!y || !strcmp(x->value, y->value)) continue;
        if (n++ == 0) fprintf(f, "\ntext that differs (A -> B):\n");
        fprintf(f, "  %s: %s -> %s%s\n", x->key, x->value, y->value,
                is_provenance(x->key) ? "   <- not the same weights or dalign" : "");
        c->text_differ++;
        c->provenance_differ += is_provenance(x->key);
    }
    for (int k = 0; k < 2; k++) {
        const da_flat_metrics *x = k ? b : a, *y = k ? a : b;
        int m = 0;
        for (int i = 0; i < x->n_text; i++) {
            if (da_flat_metrics_find_text(y, x->text[i].key)) continue;
            if (m++ == 0) fprintf(f, "\ntext only in %s:\n", k ? name_b : name_a);
            fprintf(f, "  %s = \"%s\"\n", x->text[i].key, x->text[i].value);
        }
    }
}

void da_flat_metrics_compare(FILE *f, const da_flat_metrics *a, const da_flat_metrics *b, const char *name_a,
                        const char *name_b, da_compare_counts *counts)
{
    da_compare_counts c = {0, 0, 0, 0, 0};
    int w = key_width(a, b);
    fprintf(f, "A: %s\nB: %s\n", name_a, name_b);
    /* different weights or dalign first: every number below depends on them */
    const da_flat_text *va = da_flat_metrics_find_text(a, "dalign_version"),
                       *vb = da_flat_metrics_find_text(b, "dalign_version");
    if (va && vb && strcmp(va->value, vb->value))
        fprintf(f, "note: made with different dalign versions (A %s, B %s)\n", va->value, vb->value);
    int weights_differ = 0;
    for (int i = 0; i < a->n_text; i++) {
        const da_flat_text *y = da_flat_metrics_find_text(b, a->text[i].key);
        weights_differ += !strncmp(a->text[i].key, "weights_sha256.", 15) && y && strcmp(y->value, a->text[i].value);
    }
    if (weights_differ)
        fprintf(f, "note: %d weights file%s between the runs (weights_sha256 below)\n", weights_differ,
                weights_differ > 1 ? "s differ" : " differs");
    fprintf(f, "\n%-*s  %12s  %12s  %12s  %9s\n", w, "metric", "A", "B", "B - A", "rel");
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
    print_text(f, a, b, name_a, name_b, &c);
    if (counts) *counts = c;
}
