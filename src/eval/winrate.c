/* Win-rate of a model against the base, image by image (winrate.h). */
#include "dalign/eval.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"

#define MAX_FIELDS 64        /* columns of an images.tsv: 4 ids, ~7 rewards, rater, objects */
#define N_IDS 4              /* the columns that name an image */
#define DESC_CAP 600

static const char *const ID_COLUMNS[N_IDS] = {"prompt_index", "k", "seed", "prompt"};

/* One image: the fields that name it (inside the file's text) and its value. */
typedef struct image_row {
    const char *id[N_IDS];   /* prompt_index, k, seed, prompt as written */
    uint64_t prompt_index;
    double value;
    int line;                /* 1-based line of the file, for messages */
} image_row;

/* One images.tsv, split in place at tabs and newlines. */
typedef struct image_table {
    char *text;
    image_row *rows;
    int n;
} image_table;

static void table_free(image_table *t)
{
    free(t->text);
    free(t->rows);
    memset(t, 0, sizeof *t);
}

/* The next line of *p, NUL-terminated in place (a '\r' before the '\n'
 * dropped too); NULL after the last one. */
static char *next_line(char **p)
{
    char *line = *p;
    if (!*line) return NULL;
    char *nl = strchr(line, '\n');
    if (nl) {
        *nl = '\0';
        *p = nl + 1;
    } else {
        *p = line + strlen(line);
    }
    size_t len = strlen(line);
    if (len && line[len - 1] == '\r') line[len - 1] = '\0';
    return line;
}

/* Split line in place at tabs; field[] gets the first MAX_FIELDS. Returns
 * the number of fields, which may be more than MAX_FIELDS. */
static int split_tabs(char *line, char **field)
{
    int n = 0;
    for (char *f = line;; n++) {
        char *tab = strchr(f, '\t');
        if (n < MAX_FIELDS) field[n] = f;
        if (!tab) return n + 1;
        *tab = '\0';
        f = tab + 1;
    }
}

/* The whole string as a finite double. */
static int parse_finite(const char *s, double *out)
{
    char *end = NULL;
    double x = strtod(s, &end);
    if (end == s || *end || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

/* col[0..4) = the id columns, col[4] = column, from the header's fields */
static da_status find_columns(const char *path, char **field, int nf, const char *column, int *col)
{
    const char *want[N_IDS + 1] = {ID_COLUMNS[0], ID_COLUMNS[1], ID_COLUMNS[2], ID_COLUMNS[3], column};
    for (int c = 0; c <= N_IDS; c++) {
        col[c] = -1;
        for (int i = 0; i < nf && i < MAX_FIELDS; i++)
            if (!strcmp(field[i], want[c])) col[c] = i;
        if (col[c] >= 0) continue;
        char have[DESC_CAP] = "";   /* the columns it does have, so a typo is easy to see */
        for (int i = 0; i < nf && i < MAX_FIELDS; i++) {
            size_t l = strlen(have);
            snprintf(have + l, sizeof have - l, "%s%s", i ? ", " : "", field[i]);
        }
        return da_fail(DA_ERR_FORMAT, "%s: no column '%s' (it has: %s)", path, want[c], have);
    }
    return DA_OK;
}

static da_status parse_row(const char *path, int line, char **field, int nf, int n_header, const int *col,
                           const char *column, image_row *r)
{
    if (nf != n_header)
        return da_fail(DA_ERR_FORMAT, "%s:%d: %d fields, the header has %d", path, line, nf, n_header);
    for (int c = 0; c < N_IDS; c++) r->id[c] = field[col[c]];
    uint64_t unused;
    if (da_parse_u64(r->id[0], &r->prompt_index) || da_parse_u64(r->id[1], &unused) ||
        da_parse_u64(r->id[2], &unused))
        return da_fail(DA_ERR_FORMAT, "%s:%d: prompt_index, k and seed must be non-negative integers", path, line);
    if (parse_finite(field[col[N_IDS]], &r->value))
        return da_fail(DA_ERR_FORMAT, "%s:%d: %s = '%s' is not a finite number", path, line, column,
                       field[col[N_IDS]]);
    r->line = line;
    return DA_OK;
}

/* Read and split path; rows keep pointers into t->text. */
static da_status table_load(const char *path, const char *column, image_table *t)
{
    memset(t, 0, sizeof *t);
    size_t len = 0;
    da_status s = da_read_file(path, DA_WINRATE_MAX_BYTES, &t->text, &len);
    if (s) return s;
    size_t n_lines = 1;
    for (size_t i = 0; i < len; i++) n_lines += t->text[i] == '\n';
    t->rows = malloc(n_lines * sizeof *t->rows);
    if (!t->rows) return da_fail(DA_ERR_NOMEM, "out of memory reading %s", path);

    char *p = t->text, *field[MAX_FIELDS];
    char *header = next_line(&p);
    if (!header || !*header) return da_fail(DA_ERR_FORMAT, "%s: empty, not an images.tsv of dalign eval", path);
    int col[N_IDS + 1], n_header = split_tabs(header, field);
    s = find_columns(path, field, n_header, column, col);
    int line = 1;
    for (char *l; !s && (l = next_line(&p));) {
        line++;
        if (!*l) continue;   /* a blank line, e.g. at the end */
        int nf = split_tabs(l, field);
        s = parse_row(path, line, field, nf, n_header, col, column, &t->rows[t->n]);
        if (!s) t->n++;
    }
    if (!s && t->n == 0) s = da_fail(DA_ERR_FORMAT, "%s: a header and no images", path);
    return s;
}

/* "prompt_index 3, k 1, seed 771, 'a red circle' (FILE:LINE)" */
static void describe(char *buf, size_t cap, const char *path, const image_row *r)
{
    snprintf(buf, cap, "prompt_index %s, k %s, seed %s, '%.200s' (%s:%d)", r->id[0], r->id[1], r->id[2], r->id[3],
             path, r->line);
}

/* The same images in the same order, or the first row where they part. */
static da_status same_images(const image_table *a, const image_table *b, const char *pa, const char *pb)
{
    char da[DESC_CAP], db[DESC_CAP];
    int n = a->n < b->n ? a->n : b->n;
    for (int i = 0; i < n; i++) {
        const image_row *x = &a->rows[i], *y = &b->rows[i];
        int same = 1;
        for (int c = 0; c < N_IDS; c++) same &= !strcmp(x->id[c], y->id[c]);
        if (same) continue;
        describe(da, sizeof da, pa, x);
        describe(db, sizeof db, pb, y);
        return da_fail(DA_ERR_INVALID,
                       "image %d differs: %s in the base, %s in the model; the win-rate needs both runs of "
                       "dalign eval on the same prompts and seeds",
                       i + 1, da, db);
    }
    if (a->n == b->n) return DA_OK;
    const char *longer = a->n > b->n ? pa : pb;
    const image_row *extra = a->n > b->n ? &a->rows[n] : &b->rows[n];
    describe(da, sizeof da, longer, extra);
    return da_fail(DA_ERR_INVALID, "%s has %d images, %s has %d: image %d (%s) is in one only", pa, a->n, pb, b->n,
                   n + 1, da);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* cluster[i] = the rank of row i's prompt_index among the distinct ones
 * (rows of a prompt need not be adjacent); returns the number of prompts,
 * -1 when out of memory. */
static int prompt_clusters(const image_row *rows, int n, int *cluster)
{
    uint64_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return -1;
    for (int i = 0; i < n; i++) ids[i] = rows[i].prompt_index;
    qsort(ids, (size_t)n, sizeof *ids, cmp_u64);
    int P = 0;
    for (int i = 0; i < n; i++)
        if (P == 0 || ids[i] != ids[P - 1]) ids[P++] = ids[i];
    for (int i = 0; i < n; i++) {
        const uint64_t *at = bsearch(&rows[i].prompt_index, ids, (size_t)P, sizeof *ids, cmp_u64);
        cluster[i] = (int)(at - ids);
    }
    free(ids);
    return P;
}

/* Per-prompt sums of win and diff over the images, then the clustered means. */
static da_status win_stats(const image_table *base, const image_table *model, da_winrate *out)
{
    int n = base->n;
    int *cluster = malloc((size_t)n * sizeof *cluster);
    int P = cluster ? prompt_clusters(base->rows, n, cluster) : -1;
    double *sums = P > 0 ? calloc((size_t)3 * P, sizeof *sums) : NULL;
    if (!sums) {
        free(cluster);
        return da_fail(DA_ERR_NOMEM, "winrate: out of memory");
    }
    double *win = sums, *diff = sums + P, *count = sums + 2 * P;   /* (P) each */
    for (int i = 0; i < n; i++) {
        double m = model->rows[i].value, b = base->rows[i].value;
        win[cluster[i]] += m > b ? 1.0 : m == b ? 0.5 : 0.0;
        diff[cluster[i]] += m - b;
        count[cluster[i]] += 1.0;
    }
    out->win = da_eval_cluster_share(win, count, P);   /* a share: Wilson, inside [0, 1] */
    out->diff = da_eval_cluster_mean(diff, count, P);
    out->n_images = n;
    out->n_prompts = P;
    free(sums);
    free(cluster);
    return DA_OK;
}

da_status da_winrate_compute(const char *base_tsv, const char *model_tsv, const char *column, da_winrate *out)
{
    if (!out) return da_fail(DA_ERR_INVALID, "da_winrate_compute: NULL out");
    memset(out, 0, sizeof *out);
    if (!base_tsv || !model_tsv || !column || !*column)
        return da_fail(DA_ERR_INVALID, "da_winrate_compute: NULL path or empty column");
    image_table base, model;
    da_status s = table_load(base_tsv, column, &base);
    memset(&model, 0, sizeof model);
    if (!s) s = table_load(model_tsv, column, &model);
    if (!s) s = same_images(&base, &model, base_tsv, model_tsv);
    if (!s) s = win_stats(&base, &model, out);
    table_free(&base);
    table_free(&model);
    return s;
}

/* metrics.json's number format: "%.9g", null when not finite */
static void json_num(FILE *f, double x)
{
    if (isfinite(x)) fprintf(f, "%.9g", x);
    else fputs("null", f);
}

static void json_stat(FILE *f, const char *name, const da_eval_stat *s)
{
    fprintf(f, "  \"%s\": {\"mean\": ", name);
    json_num(f, s->mean);
    fputs(", \"ci95\": [", f);
    json_num(f, s->lo);
    fputs(", ", f);
    json_num(f, s->hi);
    fprintf(f, "], \"n\": %ld},\n", s->n);
}

void da_winrate_json(FILE *f, const da_winrate *w, const char *column, const char *base, const char *model)
{
    fputs("{\n  \"column\": ", f);
    da_json_write_str(f, column);
    fputs(",\n  \"base\": ", f);
    da_json_write_str(f, base);
    fputs(",\n  \"model\": ", f);
    da_json_write_str(f, model);
    fputs(",\n", f);
    json_stat(f, "win_rate", &w->win);
    json_stat(f, "diff", &w->diff);
    fprintf(f, "  \"images\": %d,\n  \"prompts\": %d\n}\n", w->n_images, w->n_prompts);
}
