/* safetensors files: strict reader (F32, F16, BF16 -> f32) and atomic F32
 * writer.
 *
 * Layout: u64 little-endian header length N | N bytes of JSON header |
 * data section. The header maps each tensor name to
 * {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (offsets
 * relative to the data section) plus an optional "__metadata__" object of
 * string -> string. The reader trusts nothing: every size is bounds- and
 * overflow-checked, the ranges must tile the data section exactly, and the
 * data section may start at any byte offset, so values are assembled byte by
 * byte and never read through a cast float pointer. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "dalign/core.h"

/* Real headers are a few KB (a few hundred bytes per tensor); anything
 * beyond this is a corrupt length field, not a model. */
#define ST_MAX_HEADER ((uint64_t)100 * 1024 * 1024)
/* The whole file is read into memory, so the file itself has no cap of its
 * own: a model is as large as it is, memory is the limit (half the address
 * space keeps da_read_file's size arithmetic clear of overflow). */
#define ST_MAX_FILE (SIZE_MAX / 2)

static const char *const dtype_names[] = {"F32", "F16", "BF16"};
static size_t dtype_size(da_dtype d) { return d == DA_F32 ? 4 : 2; }

/* a*b in size_t; 0 on overflow */
static int mul_ok(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

/* "[2, 3, 4]" into buf */
static const char *shape_str(char *buf, size_t sz, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, sz, "[");
    for (int i = 0; i < ndim && k < sz; i++)
        k += (size_t)snprintf(buf + k, sz - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < sz) snprintf(buf + k, sz - k, "]");
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Reader                                                                   */
/* ------------------------------------------------------------------------ */

void da_st_close(da_safetensors *st)
{
    if (!st) return;
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->n_meta; i++) { free(st->meta[i].key); free(st->meta[i].value); }
    free(st->tensors);
    free(st->meta);
    free(st->file_buffer);
    free(st);
}

static int is_key(const da_json_value *v, const char *key)
{
    return v->key_len == strlen(key) && !strcmp(v->key, key);
}

/* A header integer (shape entry or data offset) as uint64 with a message. */
static da_status get_u64(const da_json_value *v, const char *tname, const char *what, uint64_t *out)
{
    switch (da_json_to_u64(v, out)) {
    case 0: return DA_OK;
    case -2: return da_fail(DA_ERR_FORMAT, "tensor '%s': negative %s %s", tname, what, v->str);
    case -3: return da_fail(DA_ERR_FORMAT, "tensor '%s': %s %s is not an integer", tname, what, v->str);
    case -4: return da_fail(DA_ERR_FORMAT, "tensor '%s': %s %s is too large", tname, what, v->str);
    default: return da_fail(DA_ERR_FORMAT, "tensor '%s': %s must be a number", tname, what);
    }
}

static da_status load_dtype(da_st_tensor *t, const da_json_value *v)
{
    if (v->type != DA_JSON_STRING) return da_fail(DA_ERR_FORMAT, "tensor '%s': dtype must be a string", t->name);
    for (int d = 0; d < 3; d++) {
        if (v->len == strlen(dtype_names[d]) && !strcmp(v->str, dtype_names[d])) {
            t->dtype = (da_dtype)d;
            return DA_OK;
        }
    }
    return da_fail(DA_ERR_FORMAT, "tensor '%s': unsupported dtype '%s' (only F32, F16, BF16)", t->name, v->str);
}

static da_status load_shape(da_st_tensor *t, const da_json_value *v)
{
    if (v->type != DA_JSON_ARRAY) return da_fail(DA_ERR_FORMAT, "tensor '%s': shape must be an array", t->name);
    if (v->n > DA_MAX_DIMS)
        return da_fail(DA_ERR_FORMAT, "tensor '%s': shape has %d dims, more than DA_MAX_DIMS (%d)", t->name, v->n,
                       DA_MAX_DIMS);
    t->ndim = v->n;
    t->numel = 1;
    for (int i = 0; i < v->n; i++) {
        uint64_t d;
        da_status s = get_u64(&v->items[i], t->name, "shape entry", &d);
        if (s) return s;
        if (d > INT64_MAX || d > SIZE_MAX) return da_fail(DA_ERR_FORMAT, "tensor '%s': shape entry %llu is too large",
                                                          t->name, (unsigned long long)d);
        t->shape[i] = (int64_t)d;
        if (!mul_ok(t->numel, (size_t)d, &t->numel))
            return da_fail(DA_ERR_FORMAT, "tensor '%s': shape product overflows", t->name);
    }
    return DA_OK;
}

static da_status load_offsets(da_st_tensor *t, const da_json_value *v, size_t data_bytes)
{
    if (v->type != DA_JSON_ARRAY || v->n != 2)
        return da_fail(DA_ERR_FORMAT, "tensor '%s': data_offsets must be an array [begin, end]", t->name);
    uint64_t begin, end;
    da_status s = get_u64(&v->items[0], t->name, "data_offsets entry", &begin);
    if (!s) s = get_u64(&v->items[1], t->name, "data_offsets entry", &end);
    if (s) return s;
    if (begin > end)
        return da_fail(DA_ERR_FORMAT, "tensor '%s': data_offsets begin %llu > end %llu", t->name,
                       (unsigned long long)begin, (unsigned long long)end);
    if (end > data_bytes)
        return da_fail(DA_ERR_FORMAT, "tensor '%s': data_offsets end %llu is past the end of the file "
                       "(data section has %zu bytes)", t->name, (unsigned long long)end, data_bytes);
    size_t nbytes;
    if (!mul_ok(t->numel, dtype_size(t->dtype), &nbytes))
        return da_fail(DA_ERR_FORMAT, "tensor '%s': byte size overflows", t->name);
    if (end - begin != nbytes) {
        char sh[160];
        return da_fail(DA_ERR_FORMAT, "tensor '%s': shape %s of %s needs %zu bytes but data_offsets span %llu",
                       t->name, shape_str(sh, sizeof sh, t->ndim, t->shape), dtype_names[t->dtype], nbytes,
                       (unsigned long long)(end - begin));
    }
    t->offset = (size_t)begin;
    t->nbytes = nbytes;
    return DA_OK;
}

/* One header member that is not __metadata__: its keys are exactly dtype,
 * shape and data_offsets. The dtype must be known before the byte count is
 * checked, so the members are found first and loaded in that order. */
static da_status load_tensor(da_st_tensor *t, const da_json_value *m, size_t data_bytes)
{
    if (m->key_len == 0) return da_fail(DA_ERR_FORMAT, "empty tensor name");
    if (m->key_len != strlen(m->key)) return da_fail(DA_ERR_FORMAT, "tensor name contains a NUL character");
    t->name = strdup(m->key);
    if (!t->name) return da_fail(DA_ERR_NOMEM, "out of memory");
    if (m->type != DA_JSON_OBJECT) return da_fail(DA_ERR_FORMAT, "tensor '%s': entry must be an object", t->name);
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    const da_json_value *found[3] = {NULL, NULL, NULL};
    for (int i = 0; i < m->n; i++) {
        const da_json_value *f = &m->items[i];
        int k = 0;
        while (k < 3 && !is_key(f, keys[k])) k++;
        if (k == 3) return da_fail(DA_ERR_FORMAT, "tensor '%s': unknown key '%s'", t->name, f->key);
        if (found[k]) return da_fail(DA_ERR_FORMAT, "tensor '%s': duplicate key '%s'", t->name, keys[k]);
        found[k] = f;
    }
    for (int k = 0; k < 3; k++)
        if (!found[k]) return da_fail(DA_ERR_FORMAT, "tensor '%s': missing %s", t->name, keys[k]);
    da_status s = load_dtype(t, found[0]);
    if (!s) s = load_shape(t, found[1]);
    if (!s) s = load_offsets(t, found[2], data_bytes);
    return s;
}

static da_status load_meta(da_safetensors *st, const da_json_value *m)
{
    if (m->type != DA_JSON_OBJECT) return da_fail(DA_ERR_FORMAT, "__metadata__ must be an object");
    st->meta = calloc((size_t)(m->n ? m->n : 1), sizeof *st->meta);
    if (!st->meta) return da_fail(DA_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n; i++) {
        const da_json_value *f = &m->items[i];
        if (f->type != DA_JSON_STRING)
            return da_fail(DA_ERR_FORMAT, "__metadata__ value of '%s' must be a string", f->key);
        if (f->key_len != strlen(f->key) || f->len != strlen(f->str))
            return da_fail(DA_ERR_FORMAT, "__metadata__ entry '%s' contains a NUL character", f->key);
        da_st_meta *e = &st->meta[st->n_meta++];
        e->key = strdup(f->key);
        e->value = strdup(f->str);
        if (!e->key || !e->value) return da_fail(DA_ERR_NOMEM, "out of memory");
    }
    return DA_OK;
}

static int cmp_name_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sort copies of the names and compare neighbours: O(n log n). */
static da_status check_unique(const char **names, int n, const char *what)
{
    qsort(names, (size_t)n, sizeof *names, cmp_name_ptr);
    for (int i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) return da_fail(DA_ERR_FORMAT, "duplicate %s '%s'", what, names[i]);
    return DA_OK;
}

static da_status check_unique_names(const da_safetensors *st)
{
    int n = st->n_tensors > st->n_meta ? st->n_tensors : st->n_meta;
    const char **names = malloc((size_t)(n ? n : 1) * sizeof *names);
    if (!names) return da_fail(DA_ERR_NOMEM, "out of memory");
    for (int i = 0; i < st->n_tensors; i++) names[i] = st->tensors[i].name;
    da_status s = check_unique(names, st->n_tensors, "tensor name");
    if (!s) {
        for (int i = 0; i < st->n_meta; i++) names[i] = st->meta[i].key;
        s = check_unique(names, st->n_meta, "__metadata__ key");
    }
    free(names);
    return s;
}

/* by offset, then size (zero-size tensors first), then name: a total order,
 * so the result never depends on qsort's handling of ties */
static int cmp_offset(const void *a, const void *b)
{
    const da_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Sorted by offset, the ranges must tile [0, data_bytes): no gap, no
 * overlap, nothing after the last one. */
static da_status check_tiling(da_safetensors *st)
{
    qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, cmp_offset);
    size_t pos = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const da_st_tensor *t = &st->tensors[i];
        if (t->offset > pos)
            return da_fail(DA_ERR_FORMAT, "gap of %zu bytes in the data section before tensor '%s' (offset %zu)",
                           t->offset - pos, t->name, t->offset);
        if (t->offset < pos)
            return da_fail(DA_ERR_FORMAT, "tensor '%s' (offset %zu) overlaps tensor '%s' (ends at %zu)", t->name,
                           t->offset, st->tensors[i - 1].name, pos);
        pos = t->offset + t->nbytes;   /* <= data_bytes, checked in load_offsets */
    }
    if (pos != st->data_bytes)
        return da_fail(DA_ERR_FORMAT, "%zu extra bytes at the end of the file after the last tensor",
                       st->data_bytes - pos);
    return DA_OK;
}

static da_status load_header(da_safetensors *st, const da_json_value *root)
{
    if (root->type != DA_JSON_OBJECT) return da_fail(DA_ERR_FORMAT, "header must be a JSON object");
    int n_meta_keys = 0;
    for (int i = 0; i < root->n; i++) n_meta_keys += is_key(&root->items[i], "__metadata__");
    if (n_meta_keys > 1) return da_fail(DA_ERR_FORMAT, "duplicate __metadata__");
    int n = root->n - n_meta_keys;
    st->tensors = calloc((size_t)(n ? n : 1), sizeof *st->tensors);
    if (!st->tensors) return da_fail(DA_ERR_NOMEM, "out of memory");
    for (int i = 0; i < root->n; i++) {
        const da_json_value *m = &root->items[i];
        /* count before filling so da_st_close frees a half-filled entry */
        da_status s = is_key(m, "__metadata__") ? load_meta(st, m)
                                                : load_tensor(&st->tensors[st->n_tensors++], m, st->data_bytes);
        if (s) return s;
    }
    da_status s = check_unique_names(st);
    if (!s) s = check_tiling(st);
    return s;
}

/* Takes ownership of buf (n bytes) in all cases. */
static da_status parse_owned(uint8_t *buf, size_t n, da_safetensors **out)
{
    if (n < 8) {
        free(buf);
        return da_fail(DA_ERR_FORMAT, "file too short (%zu bytes) for the 8-byte header length", n);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    const char *why = hlen == 0 ? "is 0" : hlen > ST_MAX_HEADER ? "exceeds the 100 MB limit"
                    : hlen > n - 8 ? "is larger than the rest of the file" : NULL;
    if (why) {
        free(buf);
        return da_fail(DA_ERR_FORMAT, "header length field (%llu) %s (file has %zu bytes)", (unsigned long long)hlen,
                       why, n);
    }
    da_safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        free(buf);
        return da_fail(DA_ERR_NOMEM, "out of memory");
    }
    st->file_buffer = buf;
    st->data = buf + 8 + hlen;
    st->data_bytes = n - 8 - (size_t)hlen;
    da_json_value root;
    char err[256];
    if (da_json_parse((const char *)buf + 8, (size_t)hlen, &root, err, sizeof err)) {
        da_st_close(st);
        return da_fail(strstr(err, "out of memory") ? DA_ERR_NOMEM : DA_ERR_FORMAT, "header is not valid JSON: %s",
                       err);
    }
    da_status s = load_header(st, &root);
    da_json_free(&root);
    if (s) {
        da_st_close(st);
        return s;
    }
    *out = st;
    return DA_OK;
}

da_status da_st_parse(const void *bytes, size_t n, da_safetensors **out)
{
    *out = NULL;
    if (!bytes && n) return da_fail(DA_ERR_INVALID, "da_st_parse: NULL buffer");
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return da_fail(DA_ERR_NOMEM, "out of memory");
    if (n) memcpy(buf, bytes, n);
    return parse_owned(buf, n, out);
}

/* A pipe, a FIFO or a device (/dev/zero, /dev/urandom) has no size to
 * check first and may never end: it is read in pieces, its header length
 * checked after the first 8 bytes as a file's is, and the whole capped. */
#define ST_MAX_STREAM ((size_t)1 << 30)

static da_status read_fd(int fd, const char *path, uint8_t *buf, size_t want, size_t *got)
{
    *got = 0;
    while (*got < want) {
        ssize_t r = read(fd, buf + *got, want - *got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return da_fail(DA_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        if (r == 0) break;
        *got += (size_t)r;
    }
    return DA_OK;
}

/* the bytes of a non-regular file into *out (malloc'd), at most
 * ST_MAX_STREAM, stopping after 8 bytes when the header length is absurd */
static da_status read_stream(int fd, const char *path, uint8_t **out, size_t *out_n)
{
    size_t cap = 1 << 16, n = 0, got;
    uint8_t *buf = malloc(cap);
    if (!buf) return da_fail(DA_ERR_NOMEM, "out of memory reading %s", path);
    da_status s = read_fd(fd, path, buf, 8, &n);
    uint64_t hlen = 0;
    for (int i = 7; s == DA_OK && n == 8 && i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (s == DA_OK && n == 8 && (hlen == 0 || hlen > ST_MAX_HEADER))
        /* like the parser's messages, this one leaves naming the file to the caller */
        s = da_fail(DA_ERR_FORMAT, "header length field (%llu) %s (not a regular file: stopped after 8 bytes)",
                    (unsigned long long)hlen, hlen == 0 ? "is 0" : "exceeds the 100 MB limit");
    /* read_fd stops short only at the end: go on while the buffer fills */
    for (int more = n == 8; s == DA_OK && more; more = n == cap) {
        if (n == cap) {
            uint8_t *nb = cap < ST_MAX_STREAM ? realloc(buf, 2 * cap) : NULL;
            if (!nb) {
                s = cap < ST_MAX_STREAM
                        ? da_fail(DA_ERR_NOMEM, "out of memory reading %s", path)
                        : da_fail(DA_ERR_RANGE, "%s is not a regular file and gives more than %zu bytes", path,
                                  ST_MAX_STREAM);
                break;
            }
            buf = nb;
            cap *= 2;
        }
        s = read_fd(fd, path, buf + n, cap - n, &got);
        n += got;
    }
    if (s != DA_OK) {
        free(buf);
        return s;
    }
    *out = buf;
    *out_n = n;
    return DA_OK;
}

da_status da_st_open(const char *path, da_safetensors **out)
{
    *out = NULL;
    if (!path) return da_fail(DA_ERR_INVALID, "da_st_open: NULL path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd >= 0 && fstat(fd, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode)) {
        uint8_t *buf = NULL;
        size_t n = 0;
        da_status s = read_stream(fd, path, &buf, &n);
        close(fd);
        return s ? s : parse_owned(buf, n, out);
    }
    if (fd >= 0) close(fd);
    /* a regular file (its size is known and checked first), or an error
     * that da_read_file reports with the file's name */
    char *buf = NULL;
    size_t n = 0;
    da_status s = da_read_file(path, ST_MAX_FILE, &buf, &n);
    return s ? s : parse_owned((uint8_t *)buf, n, out);
}

const da_st_tensor *da_st_find(const da_safetensors *st, const char *name)
{
    for (int i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

const char *da_st_meta_get(const da_safetensors *st, const char *key)
{
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta[i].key, key)) return st->meta[i].value;
    return NULL;
}

static float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE binary16 -> binary32, exact for every input: normals rebias the
 * exponent (15 -> 127), subnormals (m * 2^-24) are renormalised, inf/NaN
 * keep their payload. */
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    if (exp == 0x1F) return bits_to_f32(sign | 0x7F800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return bits_to_f32(sign);
        int e = -14;   /* value is man * 2^-24 = (man / 2^10) * 2^-14 */
        while (!(man & 0x400)) { man <<= 1; e--; }
        return bits_to_f32(sign | (uint32_t)(e + 127) << 23 | (man & 0x3FF) << 13);
    }
    return bits_to_f32(sign | (exp + 127 - 15) << 23 | man << 13);
}

/* bfloat16 is the top half of a binary32 */
static float bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

void da_st_to_f32(const da_safetensors *st, const da_st_tensor *t, float *dst)
{
    const uint8_t *p = st->data + t->offset;
    if (t->dtype == DA_F32) {
        for (size_t i = 0; i < t->numel; i++, p += 4)
            dst[i] = bits_to_f32((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    } else {
        float (*conv)(uint16_t) = t->dtype == DA_F16 ? f16_to_f32 : bf16_to_f32;
        for (size_t i = 0; i < t->numel; i++, p += 2) dst[i] = conv((uint16_t)(p[0] | p[1] << 8));
    }
}

da_status da_st_read(const da_safetensors *st, const char *name, float *dst, int ndim, const int *shape)
{
    const da_st_tensor *t = da_st_find(st, name);
    if (!t) return da_fail(DA_ERR_FORMAT, "tensor '%s' not found", name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        int64_t want[DA_MAX_DIMS];
        int nd = ndim < 0 ? 0 : ndim > DA_MAX_DIMS ? DA_MAX_DIMS : ndim;
        for (int i = 0; i < nd; i++) want[i] = shape[i];
        char a[160], b[160];
        return da_fail(DA_ERR_FORMAT, "tensor '%s': shape %s in the file, expected %s", name,
                       shape_str(a, sizeof a, t->ndim, t->shape), shape_str(b, sizeof b, nd, want));
    }
    da_st_to_f32(st, t, dst);
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* Writer                                                                   */
/* ------------------------------------------------------------------------ */

/* growable byte buffer for the header */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *p = realloc(b->p, nc);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)k);   /* only used for short numbers */
}

/* JSON string literal: escape '"', '\\' and control characters; UTF-8
 * passes through (validated by the caller). */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\t' ? "\\t"
                        : c == '\r' ? "\\r" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
        if (esc) sb_str(b, esc);
        else if (c < 0x20) sb_printf(b, "\\u%04X", c);
        else sb_put(b, s, 1);
    }
    sb_put(b, "\"", 1);
}

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp((*(const da_st_entry *const *)a)->name, (*(const da_st_entry *const *)b)->name);
}

static int cmp_meta_key(const void *a, const void *b)
{
    return strcmp((*(const da_st_meta *const *)a)->key, (*(const da_st_meta *const *)b)->key);
}

static da_status check_entry(const da_st_entry *e, size_t *nbytes)
{
    if (!e->name || !e->name[0]) return da_fail(DA_ERR_INVALID, "da_st_write: empty tensor name");
    if (!da_json_utf8_valid(e->name, strlen(e->name)))
        return da_fail(DA_ERR_INVALID, "da_st_write: tensor name is not valid UTF-8");
    if (!strcmp(e->name, "__metadata__"))
        return da_fail(DA_ERR_INVALID, "da_st_write: '__metadata__' is reserved, not a tensor name");
    if (e->ndim < 0 || e->ndim > DA_MAX_DIMS)
        return da_fail(DA_ERR_INVALID, "da_st_write: tensor '%s': ndim %d not in [0, %d]", e->name, e->ndim,
                       DA_MAX_DIMS);
    size_t numel = 1;
    for (int i = 0; i < e->ndim; i++) {
        if (e->shape[i] < 0)
            return da_fail(DA_ERR_INVALID, "da_st_write: tensor '%s': negative shape entry %d", e->name, e->shape[i]);
        if (!mul_ok(numel, (size_t)e->shape[i], &numel))
            return da_fail(DA_ERR_RANGE, "da_st_write: tensor '%s': shape product overflows", e->name);
    }
    if (!mul_ok(numel, sizeof(float), nbytes))
        return da_fail(DA_ERR_RANGE, "da_st_write: tensor '%s': byte size overflows", e->name);
    if (numel && !e->data) return da_fail(DA_ERR_INVALID, "da_st_write: tensor '%s': NULL data", e->name);
    return DA_OK;
}

static da_status check_meta(const da_st_meta *m)
{
    if (!m->key || !m->value) return da_fail(DA_ERR_INVALID, "da_st_write: NULL metadata key or value");
    if (!da_json_utf8_valid(m->key, strlen(m->key)) || !da_json_utf8_valid(m->value, strlen(m->value)))
        return da_fail(DA_ERR_INVALID, "da_st_write: metadata '%s' is not valid UTF-8", m->key);
    return DA_OK;
}

/* The header JSON, tensors in the order of `order` with consecutive
 * offsets, padded with spaces to a multiple of 8 so the data section is
 * 8-byte aligned in the file. */
static da_status build_header(sbuf *h, const da_st_entry *const *order, int n, const da_st_meta *const *mord,
                              int n_meta)
{
    sb_put(h, "{", 1);
    if (n_meta) {
        sb_str(h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_put(h, ",", 1);
            sb_json_str(h, mord[i]->key);
            sb_put(h, ":", 1);
            sb_json_str(h, mord[i]->value);
        }
        sb_put(h, "}", 1);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const da_st_entry *e = order[i];
        size_t nbytes;
        check_entry(e, &nbytes);   /* validated before: only recomputes nbytes */
        if (off > SIZE_MAX - nbytes) return da_fail(DA_ERR_RANGE, "da_st_write: total size overflows");
        if (i || n_meta) sb_put(h, ",", 1);
        sb_json_str(h, e->name);
        sb_str(h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) sb_printf(h, d ? ",%d" : "%d", e->shape[d]);
        sb_printf(h, "],\"data_offsets\":[%zu,%zu]}", off, off + nbytes);
        off += nbytes;
    }
    sb_put(h, "}", 1);
    while (!h->oom && h->n % 8) sb_put(h, " ", 1);
    if (h->oom) return da_fail(DA_ERR_NOMEM, "da_st_write: out of memory");
    if ((uint64_t)h->n > ST_MAX_HEADER) return da_fail(DA_ERR_RANGE, "da_st_write: header exceeds 100 MB");
    return DA_OK;
}

/* f32 values as little-endian bytes, in chunks */
static void put_f32(da_atomic_file *f, const float *x, size_t n)
{
    uint8_t buf[4096];
    while (n && !f->err) {
        size_t k = n < sizeof buf / 4 ? n : sizeof buf / 4;
        for (size_t i = 0; i < k; i++) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            for (int j = 0; j < 4; j++) buf[4 * i + (size_t)j] = (uint8_t)(u >> (8 * j));
        }
        da_atomic_put(f, buf, 4 * k);
        x += k;
        n -= k;
    }
}

/* Best effort: make the rename itself durable (a resumed run relies on the
 * checkpoint being there after a crash). The file is already in place, so a
 * failure here is not reported. */
static void fsync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Streamed, not built in memory: a trainer checkpoint is four copies of
 * the model (params, AdamW m and v, EMA). */
static da_status write_file(const char *path, const sbuf *h, const da_st_entry *const *order, int n)
{
    da_atomic_file f;
    da_status s = da_atomic_begin(&f, path);
    if (s != DA_OK) return s;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h->n >> (8 * i));
    da_atomic_put(&f, len8, 8);
    da_atomic_put(&f, h->p, h->n);
    for (int i = 0; i < n; i++) put_f32(&f, order[i]->data, da_shape_size(order[i]->ndim, order[i]->shape));
    s = da_atomic_commit(&f);
    if (s == DA_OK) fsync_dir_of(path);
    return s;
}

da_status da_st_write(const char *path, const da_st_entry *entries, int n, const da_st_meta *meta, int n_meta)
{
    if (!path || !path[0]) return da_fail(DA_ERR_INVALID, "da_st_write: empty path");
    if (n < 0 || n_meta < 0 || (n && !entries) || (n_meta && !meta))
        return da_fail(DA_ERR_INVALID, "da_st_write: bad tensor or metadata list");
    const da_st_entry **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    const da_st_meta **mord = malloc((size_t)(n_meta ? n_meta : 1) * sizeof *mord);
    sbuf h = {0};
    da_status s = (order && mord) ? DA_OK : da_fail(DA_ERR_NOMEM, "da_st_write: out of memory");
    for (int i = 0; !s && i < n; i++) {
        size_t nbytes;
        s = check_entry(&entries[i], &nbytes);
        order[i] = &entries[i];
    }
    for (int i = 0; !s && i < n_meta; i++) {
        s = check_meta(&meta[i]);
        mord[i] = &meta[i];
    }
    /* sorted by name (byte order), like st.py: the same tensors always give
     * the same file, whatever order the caller lists them in */
    if (!s) {
        qsort(order, (size_t)n, sizeof *order, cmp_entry_name);
        qsort(mord, (size_t)n_meta, sizeof *mord, cmp_meta_key);
        for (int i = 1; !s && i < n; i++)
            if (!strcmp(order[i - 1]->name, order[i]->name))
                s = da_fail(DA_ERR_INVALID, "da_st_write: duplicate tensor name '%s'", order[i]->name);
        for (int i = 1; !s && i < n_meta; i++)
            if (!strcmp(mord[i - 1]->key, mord[i]->key))
                s = da_fail(DA_ERR_INVALID, "da_st_write: duplicate metadata key '%s'", mord[i]->key);
    }
    if (!s) s = build_header(&h, order, n, mord, n_meta);
    if (!s) s = write_file(path, &h, order, n);
    free(h.p);
    free(order);
    free(mord);
    return s;
}
