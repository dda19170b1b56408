/* safetensors: round trips, F16/BF16 decoding, a table of malformed files,
 * truncation/bit-flip fuzzing, atomic writes, interop with files written
 * or checked by an independent Python implementation (tests/oracle/safetensors_io.py),
 * and the typed metadata reads (safetensors_meta.h).
 *
 * DA_ST_REGEN=1 ./build/default/tests/test_safetensors rewrites
 * tests/oracle/st_from_dalign.safetensors (then rerun the Python script). */
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/json.h"
#include "core/safetensors_meta.h"

static char g_dir[64];   /* per-run temp directory */

static void tmp_path(char *buf, size_t sz, const char *name)
{
    snprintf(buf, sz, "%s/%s", g_dir, name);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/dalign_st_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(g_dir);
    if (!d) return -1;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        tmp_path(p, sizeof p, e->d_name);
        if (unlink(p)) rmdir(p);
    }
    closedir(d);
    return rmdir(g_dir);
}

/* files in g_dir whose name contains ".tmp." (left-over temp files) */
static int count_tmp_files(void)
{
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    uint8_t *b = malloc(cap);
    size_t r;
    while ((r = fread(b + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) b = realloc(b, cap *= 2);
    }
    fclose(f);
    *n = len;
    return b;
}

static void write_all(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* 8-byte length + header + data bytes, in memory */
static uint8_t *make_file(const char *header, size_t hlen, const uint8_t *data, size_t data_bytes, size_t *n)
{
    *n = 8 + hlen + data_bytes;
    uint8_t *b = calloc(*n, 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, header, hlen);
    if (data) memcpy(b + 8 + hlen, data, data_bytes);
    return b;
}

static float f32_of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_of_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* exact comparison: same bits, or both NaN */
static void assert_same_float(const char *what, size_t i, float got, float want)
{
    if (isnan(want) && isnan(got)) return;
    if (bits_of_f32(got) != bits_of_f32(want))
        fail_msg("%s[%zu]: got %a (0x%08X), want %a (0x%08X)", what, i, (double)got, bits_of_f32(got),
                 (double)want, bits_of_f32(want));
}

static float *to_f32(const da_safetensors *st, const char *name, size_t expect_n)
{
    const da_st_tensor *t = da_st_find(st, name);
    if (!t) fail_msg("tensor '%s' not found", name);
    assert_int_equal(t->numel, expect_n);
    float *x = malloc((expect_n ? expect_n : 1) * sizeof *x);
    da_st_to_f32(st, t, x);
    return x;
}

/* ------------------------------------------------------------------------ */
/* Round trip                                                               */
/* ------------------------------------------------------------------------ */

static void test_roundtrip(void **state)
{
    (void)state;
    float *w = tu_alloc_fill(2 * 3 * 4 * 5 * 1 * 2, 1, -3.0f, 3.0f);
    float *b = tu_alloc_fill(7, 2, -1.0f, 1.0f);
    float scalar = -0.125f;
    /* given out of name order: the writer sorts by name */
    da_st_entry e[] = {
        {.name = "w", .data = w, .ndim = 6, .shape = {2, 3, 4, 5, 1, 2}},
        {.name = "empty", .data = NULL, .ndim = 2, .shape = {0, 3}},
        {.name = "b", .data = b, .ndim = 1, .shape = {7}},
        {.name = "scalar", .data = &scalar, .ndim = 0},
    };
    da_st_meta meta[] = {{"step", "1200"}, {"weird \"key\"", "tab\there\nnewline \\ \xc3\xa9"}, {"empty", ""}};
    char path[256];
    tmp_path(path, sizeof path, "rt.safetensors");
    assert_int_equal(da_st_write(path, e, 4, meta, 3), DA_OK);
    assert_int_equal(count_tmp_files(), 0);

    da_safetensors *st = NULL;
    if (da_st_open(path, &st) != DA_OK) fail_msg("reopen: %s", da_last_error());
    assert_int_equal(st->n_tensors, 4);
    /* sorted by offset, which for dalign's files is name order */
    const char *order[] = {"b", "empty", "scalar", "w"};
    for (int i = 0; i < 4; i++) assert_string_equal(st->tensors[i].name, order[i]);
    for (int i = 0; i < 4; i++) {
        const da_st_tensor *t = da_st_find(st, e[i].name);
        assert_non_null(t);
        assert_int_equal(t->dtype, DA_F32);
        assert_int_equal(t->ndim, e[i].ndim);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], e[i].shape[d]);
        size_t n = da_shape_size(e[i].ndim, e[i].shape);
        assert_int_equal(t->numel, n);
        assert_int_equal(t->nbytes, 4 * n);
        float *x = to_f32(st, e[i].name, n);
        if (n) assert_memory_equal(x, e[i].data, 4 * n);
        free(x);
    }
    assert_int_equal(st->n_meta, 3);
    for (int i = 0; i < 3; i++) {
        const char *v = da_st_meta_get(st, meta[i].key);
        assert_non_null(v);
        assert_string_equal(v, meta[i].value);
    }
    assert_null(da_st_meta_get(st, "nope"));
    assert_null(da_st_find(st, "nope"));

    /* layout: header padded with spaces to a multiple of 8, exact size */
    size_t n;
    uint8_t *raw = read_all(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(n, 8 + hlen + 4 * (240 + 7 + 1));
    assert_true(raw[8 + hlen - 1] == '}' || raw[8 + hlen - 1] == ' ');

    /* the same bytes through da_st_parse */
    da_safetensors *st2 = NULL;
    assert_int_equal(da_st_parse(raw, n, &st2), DA_OK);
    assert_int_equal(st2->n_tensors, 4);
    assert_memory_equal(st2->data, st->data, st->data_bytes);
    da_st_close(st2);
    da_st_close(st);
    free(raw);

    /* overwrite in place with different content */
    assert_int_equal(da_st_write(path, e + 2, 1, NULL, 0), DA_OK);
    assert_int_equal(da_st_open(path, &st), DA_OK);
    assert_int_equal(st->n_tensors, 1);
    assert_int_equal(st->n_meta, 0);
    da_st_close(st);

    /* no tensors at all */
    assert_int_equal(da_st_write(path, NULL, 0, NULL, 0), DA_OK);
    assert_int_equal(da_st_open(path, &st), DA_OK);
    assert_int_equal(st->n_tensors, 0);
    assert_int_equal(st->data_bytes, 0);
    da_st_close(st);
    free(w);
    free(b);
}

static void test_read_checks_shape(void **state)
{
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6};
    da_st_entry e = {.name = "x", .data = x, .ndim = 2, .shape = {2, 3}};
    char path[256];
    tmp_path(path, sizeof path, "read.safetensors");
    assert_int_equal(da_st_write(path, &e, 1, NULL, 0), DA_OK);
    da_safetensors *st;
    assert_int_equal(da_st_open(path, &st), DA_OK);
    float y[6] = {0};
    assert_int_equal(da_st_read(st, "x", y, 2, (int[]){2, 3}), DA_OK);
    assert_memory_equal(x, y, sizeof x);
    assert_int_equal(da_st_read(st, "x", y, 2, (int[]){3, 2}), DA_ERR_FORMAT);
    assert_non_null(strstr(da_last_error(), "shape [2, 3] in the file, expected [3, 2]"));
    assert_int_equal(da_st_read(st, "x", y, 1, (int[]){6}), DA_ERR_FORMAT);
    assert_int_equal(da_st_read(st, "y", y, 2, (int[]){2, 3}), DA_ERR_FORMAT);
    assert_non_null(strstr(da_last_error(), "'y' not found"));
    da_st_close(st);
}

/* ------------------------------------------------------------------------ */
/* F16 / BF16                                                               */
/* ------------------------------------------------------------------------ */

/* Expected values worked out by hand from the bit patterns:
 * f16 = (-1)^s * 2^(e-15) * 1.m, subnormal (-1)^s * m * 2^-24;
 * bf16 = the high 16 bits of an f32. */
static void test_half_decoding(void **state)
{
    (void)state;
    static const uint16_t h[] = {0x3C00, 0xC100, 0x7BFF, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3555,
                                 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0x8000, 0x0000};
    const float hv[] = {1.0f, -2.5f, 65504.0f, 0x1p-24f, -0x1p-24f, 0x1.ff8p-15f /* 1023 * 2^-24 */,
                        0x1p-14f, 0.333251953125f /* 2^-2 * (1 + 341/1024) */, INFINITY, -INFINITY,
                        f32_of_bits(0x7FC00000u) /* quiet NaN, payload kept */,
                        f32_of_bits(0x7F802000u) /* signalling NaN payload 1 << 13 */, -0.0f, 0.0f};
    static const uint16_t bf[] = {0x3F80, 0xC020, 0x0001, 0x7F7F, 0x7F80, 0xFF80, 0x7FC0, 0x8000};
    const float bv[] = {1.0f, -2.5f, 0x1p-133f, 0x1.fep127f, INFINITY, -INFINITY,
                        f32_of_bits(0x7FC00000u), -0.0f};
    enum { NH = sizeof h / sizeof h[0], NB = sizeof bf / sizeof bf[0] };
    uint8_t data[2 * (NH + NB)];
    for (int i = 0; i < NH; i++) { data[2 * i] = (uint8_t)h[i]; data[2 * i + 1] = (uint8_t)(h[i] >> 8); }
    for (int i = 0; i < NB; i++) {
        data[2 * (NH + i)] = (uint8_t)bf[i];
        data[2 * (NH + i) + 1] = (uint8_t)(bf[i] >> 8);
    }
    /* odd header length: the data section starts at an odd address */
    char header[256];
    int hl = snprintf(header, sizeof header,
                      "{\"h\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[0,%d]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[%d],\"data_offsets\":[%d,%d]}}",
                      NH, 2 * NH, NB, 2 * NH, 2 * (NH + NB));
    if (hl % 2 == 0) header[hl++] = ' ';
    size_t n;
    uint8_t *file = make_file(header, (size_t)hl, data, sizeof data, &n);
    da_safetensors *st;
    if (da_st_parse(file, n, &st) != DA_OK) fail_msg("parse: %s", da_last_error());
    assert_int_equal((st->data - (const uint8_t *)st->file_buffer) % 2, 1);
    float *x = to_f32(st, "h", NH);
    for (int i = 0; i < NH; i++) {
        if (i == 10 || i == 11) assert_int_equal(bits_of_f32(x[i]), bits_of_f32(hv[i]));   /* NaN bits */
        assert_same_float("f16", (size_t)i, x[i], hv[i]);
    }
    free(x);
    x = to_f32(st, "b", NB);
    for (int i = 0; i < NB; i++) assert_same_float("bf16", (size_t)i, x[i], bv[i]);
    free(x);
    da_st_close(st);
    free(file);

    /* every f16 bit pattern: finite values against a double computation,
     * the rest must be inf/NaN of the right sign */
    uint8_t all[2 * 65536];
    for (int i = 0; i < 65536; i++) { all[2 * i] = (uint8_t)i; all[2 * i + 1] = (uint8_t)(i >> 8); }
    const char *hd = "{\"a\":{\"dtype\":\"F16\",\"shape\":[65536],\"data_offsets\":[0,131072]}}";
    file = make_file(hd, strlen(hd), all, sizeof all, &n);
    assert_int_equal(da_st_parse(file, n, &st), DA_OK);
    x = to_f32(st, "a", 65536);
    for (int i = 0; i < 65536; i++) {
        int e = (i >> 10) & 31, m = i & 1023;
        double v = e == 0 ? ldexp(m, -24) : e < 31 ? ldexp(1024 + m, e - 25) : (m ? NAN : INFINITY);
        if (i & 0x8000) v = -v;
        if (isnan(v)) assert_true(isnan(x[i]));
        else assert_same_float("f16 exhaustive", (size_t)i, x[i], (float)v);
    }
    free(x);
    da_st_close(st);
    free(file);
}

/* ------------------------------------------------------------------------ */
/* Malformed files                                                          */
/* ------------------------------------------------------------------------ */

#define ENTRY_A "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"
#define B10 "[[[[[[[[[["

typedef struct bad_case {
    const char *what;
    const char *header;   /* header bytes (hlen 0: strlen) */
    size_t hlen;
    size_t data_bytes;    /* zero bytes after the header */
    int set_len;          /* 1: write len_field instead of the true header length */
    uint64_t len_field;
    size_t truncate;      /* > 0: keep only this many bytes of the file */
    const char *expect;   /* substring of the error message */
} bad_case;

static const bad_case bad_cases[] = {
    {"truncated length field", "{}", 0, 0, 0, 0, 5, "too short"},
    {"header length 0", "{}", 0, 0, 1, 0, 0, "header length field (0) is 0"},
    {"header longer than file", "{}", 0, 0, 1, 11, 0, "larger than the rest of the file"},
    {"header length absurd", "{}", 0, 0, 1, 200000000, 0, "exceeds the 100 MB limit"},
    {"header length 2^64-1", "{}", 0, 0, 1, UINT64_MAX, 0, "exceeds the 100 MB limit"},
    {"bad JSON: unclosed object", "{" ENTRY_A, 0, 24, 0, 0, 0, "not valid JSON"},
    {"trailing garbage", "{" ENTRY_A "} x", 0, 24, 0, 0, 0, "trailing characters"},
    {"NUL padding", "{}\0\0", 4, 0, 0, 0, 0, "trailing characters"},
    {"header not an object", "[1,2]", 0, 0, 0, 0, 0, "header must be a JSON object"},
    {"unknown dtype", "{\"a\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,24]}}", 0, 24, 0, 0, 0,
     "tensor 'a': unsupported dtype 'I64'"},
    {"negative shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2,3],\"data_offsets\":[0,24]}}", 0, 24, 0, 0, 0,
     "tensor 'a': negative shape entry -2"},
    {"fractional shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0,3],\"data_offsets\":[0,24]}}", 0, 24, 0, 0,
     0, "shape entry 2.0 is not an integer"},
    {"shape/bytes mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 0, 20, 0, 0,
     0, "tensor 'a': shape [2, 3] of F32 needs 24 bytes but data_offsets span 20"},
    {"F16 bytes counted as F32", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 0, 24, 0,
     0, 0, "needs 12 bytes"},
    {"overlapping ranges",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[16,40]}}", 0, 40, 0, 0, 0,
     "tensor 'b' (offset 16) overlaps tensor 'a'"},
    {"zero-size tensor inside another",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},"
     "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", 0, 24, 0, 0, 0, "tensor 'z' (offset 8) overlaps"},
    {"gap between ranges",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[28,52]}}", 0, 52, 0, 0, 0,
     "gap of 4 bytes in the data section before tensor 'b'"},
    {"gap at the start", "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[4,28]}}", 0, 28, 0, 0, 0,
     "gap of 4 bytes"},
    {"range past end of file", "{" ENTRY_A "}", 0, 20, 0, 0, 0, "tensor 'a': data_offsets end 24 is past the end"},
    {"range end 2^64-1", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,18446744073709551615]}}",
     0, 24, 0, 0, 0, "past the end"},
    {"extra bytes at end", "{" ENTRY_A "}", 0, 28, 0, 0, 0, "4 extra bytes at the end of the file"},
    {"duplicate name",
     "{" ENTRY_A ",\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[24,48]}}", 0, 48, 0, 0, 0,
     "duplicate tensor name 'a'"},
    {"begin > end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[24,0]}}", 0, 24, 0, 0, 0,
     "tensor 'a': data_offsets begin 24 > end 0"},
    {"shape product overflow",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0, 0, 0, 0, 0,
     "tensor 'a': shape product overflows"},
    {"byte size overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}",
     0, 0, 0, 0, 0, "tensor 'a': byte size overflows"},
    {"shape entry beyond u64", "{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,0]}}",
     0, 0, 0, 0, 0, "is too large"},
    {"non-string metadata value", "{\"__metadata__\":{\"k\":1}}", 0, 0, 0, 0, 0,
     "__metadata__ value of 'k' must be a string"},
    {"metadata not an object", "{\"__metadata__\":\"x\"}", 0, 0, 0, 0, 0, "__metadata__ must be an object"},
    {"duplicate __metadata__", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, 0, 0, 0, "duplicate __metadata__"},
    {"duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, 0, 0, 0, 0,
     "duplicate __metadata__ key 'k'"},
    {"missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3]}}", 0, 24, 0, 0, 0,
     "tensor 'a': missing data_offsets"},
    {"missing dtype", "{\"a\":{\"shape\":[2,3],\"data_offsets\":[0,24]}}", 0, 24, 0, 0, 0, "tensor 'a': missing dtype"},
    {"ndim > DA_MAX_DIMS", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 0, 4, 0,
     0, 0, "tensor 'a': shape has 7 dims, more than DA_MAX_DIMS"},
    {"deep nesting", "{\"a\":" B10 B10 B10 B10 B10 B10 B10 "}", 0, 0, 0, 0, 0, "nesting deeper than 64"},
    {"unknown key in entry",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24],\"foo\":1}}", 0, 24, 0, 0, 0,
     "tensor 'a': unknown key 'foo'"},
    {"duplicate key in entry",
     "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 0, 24, 0, 0, 0,
     "tensor 'a': duplicate key 'dtype'"},
    {"empty name", "{\"\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 0, 24, 0, 0, 0,
     "empty tensor name"},
    {"NUL in name", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 0, 24, 0, 0, 0,
     "NUL character"},
    {"entry not an object", "{\"a\":5}", 0, 0, 0, 0, 0, "tensor 'a': entry must be an object"},
    {"dtype not a string", "{\"a\":{\"dtype\":32,\"shape\":[2,3],\"data_offsets\":[0,24]}}", 0, 24, 0, 0, 0,
     "dtype must be a string"},
    {"shape not an array", "{\"a\":{\"dtype\":\"F32\",\"shape\":6,\"data_offsets\":[0,24]}}", 0, 24, 0, 0, 0,
     "shape must be an array"},
    {"shape entry not a number", "{\"a\":{\"dtype\":\"F32\",\"shape\":[true],\"data_offsets\":[0,4]}}", 0, 4, 0, 0,
     0, "shape entry must be a number"},
    {"three data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24,48]}}", 0, 24, 0, 0, 0,
     "data_offsets must be an array [begin, end]"},
    {"control character in string", "{\"a\nb\":{}}", 0, 0, 0, 0, 0, "control character 0x0A in string"},
    {"NUL byte in header", "{\"a\0\":{}}", 9, 0, 0, 0, 0, "control character 0x00"},
    {"invalid escape", "{\"a\\x\":{}}", 0, 0, 0, 0, 0, "invalid escape '\\x'"},
    {"short \\u escape", "{\"a\\u12\":{}}", 0, 0, 0, 0, 0, "invalid \\u escape"},
    {"lone high surrogate", "{\"a\\ud800\":{}}", 0, 0, 0, 0, 0, "lone high surrogate"},
    {"lone low surrogate", "{\"a\\udc00\":{}}", 0, 0, 0, 0, 0, "lone low surrogate"},
    {"invalid UTF-8", "{\"a\xff\":{}}", 0, 0, 0, 0, 0, "invalid UTF-8"},
    {"overlong UTF-8", "{\"a\xe0\x80\xaf\":{}}", 0, 0, 0, 0, 0, "invalid UTF-8"},
    {"UTF-8 encoded surrogate", "{\"a\xed\xa0\x80\":{}}", 0, 0, 0, 0, 0, "invalid UTF-8"},
    {"unterminated string", "{\"abc", 0, 0, 0, 0, 0, "unterminated string"},
    {"leading zero", "{\"a\":{\"dtype\":\"F32\",\"shape\":[02,3],\"data_offsets\":[0,24]}}", 0, 24, 0, 0, 0,
     "leading zero"},
    {"trailing comma", "{" ENTRY_A ",}", 0, 24, 0, 0, 0, "object key (string) expected"},
    {"comment", "{/* c */}", 0, 0, 0, 0, 0, "object key (string) expected"},
    {"bad literal", "{\"a\":tru}", 0, 0, 0, 0, 0, "invalid literal"},
    {"single quotes", "{'a':1}", 0, 0, 0, 0, 0, "object key (string) expected"},
    {"missing colon", "{\"a\" 1}", 0, 0, 0, 0, 0, "':' expected"},
    {"bare minus", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-],\"data_offsets\":[0,0]}}", 0, 0, 0, 0, 0,
     "invalid number"},
};

/* file bytes for a case; *n = size */
static uint8_t *bad_case_file(const bad_case *c, size_t *n)
{
    size_t hlen = c->hlen ? c->hlen : strlen(c->header);
    uint8_t *f = make_file(c->header, hlen, NULL, c->data_bytes, n);
    if (c->set_len)
        for (int i = 0; i < 8; i++) f[i] = (uint8_t)(c->len_field >> (8 * i));
    if (c->truncate) *n = c->truncate;
    return f;
}

static void expect_reject(const char *what, da_status s, da_status want, da_safetensors *st, const char *expect)
{
    if (s != want) fail_msg("%s: status %d (%s), want %d", what, s, s ? da_last_error() : "accepted", want);
    if (st) fail_msg("%s: *out not NULL on failure", what);
    if (expect && !strstr(da_last_error(), expect))
        fail_msg("%s: message '%s' lacks '%s'", what, da_last_error(), expect);
}

static void test_malformed(void **state)
{
    (void)state;
    int n_cases = (int)(sizeof bad_cases / sizeof bad_cases[0]);
    char path[256];
    tmp_path(path, sizeof path, "bad.safetensors");
    for (int i = 0; i < n_cases; i++) {
        const bad_case *c = &bad_cases[i];
        size_t n;
        uint8_t *f = bad_case_file(c, &n);
        da_safetensors *st = (da_safetensors *)1;   /* must come back NULL */
        da_status rs = da_st_parse(f, n, &st);
        expect_reject(c->what, rs, DA_ERR_FORMAT, st, c->expect);
        write_all(path, f, n);
        st = (da_safetensors *)1;
        rs = da_st_open(path, &st);
        expect_reject(c->what, rs, DA_ERR_FORMAT, st, c->expect);
        free(f);
    }
    da_safetensors *st = (da_safetensors *)1;
    write_all(path, "", 0);
    da_status rs = da_st_open(path, &st);
    expect_reject("empty file", rs, DA_ERR_FORMAT, st, "too short (0 bytes)");
    assert_true(n_cases >= 15);
    unlink(path);
}

static void test_unreadable(void **state)
{
    (void)state;
    da_safetensors *st = (da_safetensors *)1;
    char path[256];
    tmp_path(path, sizeof path, "does-not-exist.safetensors");
    da_status rs = da_st_open(path, &st);
    expect_reject("missing file", rs, DA_ERR_IO, st, "No such file or directory");
    st = (da_safetensors *)1;
    rs = da_st_open(g_dir, &st);
    expect_reject("directory", rs, DA_ERR_IO, st, "directory");
}

/* Headers that look unusual but are valid. */
static void test_valid_edge_cases(void **state)
{
    (void)state;
    static const struct { const char *header; size_t data_bytes; int n_tensors, n_meta; } ok[] = {
        {"{}", 0, 0, 0},
        {"{}      ", 0, 0, 0},
        {" \n\t{ } \r\n", 0, 0, 0},
        {"{\"__metadata__\":{}}", 0, 0, 0},
        {"{\"__metadata__\":{\"a\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}}", 0, 0, 1},
        /* keys of an entry in any order, zero-size tensors sharing an offset */
        {"{\"z2\":{\"data_offsets\":[0,0],\"shape\":[0],\"dtype\":\"BF16\"},"
         " \"z1\" : { \"shape\" : [3,0,2] , \"dtype\" : \"F32\" , \"data_offsets\" : [0,0] } ,"
         "\"s\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,2]}}",
         2, 3, 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t n;
        uint8_t *f = make_file(ok[i].header, strlen(ok[i].header), NULL, ok[i].data_bytes, &n);
        da_safetensors *st;
        if (da_st_parse(f, n, &st) != DA_OK) fail_msg("case %zu rejected: %s", i, da_last_error());
        assert_int_equal(st->n_tensors, ok[i].n_tensors);
        assert_int_equal(st->n_meta, ok[i].n_meta);
        if (i == 4) assert_string_equal(da_st_meta_get(st, "a"), "\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
        if (i == 5) {
            /* by offset, then size, then name */
            assert_string_equal(st->tensors[0].name, "z1");
            assert_string_equal(st->tensors[1].name, "z2");
            assert_string_equal(st->tensors[2].name, "s");
            assert_int_equal(st->tensors[2].ndim, 0);
            assert_int_equal(st->tensors[2].numel, 1);
        }
        da_st_close(st);
        free(f);
    }
}

static void test_json_limits(void **state)
{
    (void)state;
    char text[2 * DA_JSON_MAX_DEPTH + 8], err[128];
    da_json_value v;
    /* exactly DA_JSON_MAX_DEPTH nested arrays parse, one more does not */
    for (int depth = DA_JSON_MAX_DEPTH; depth <= DA_JSON_MAX_DEPTH + 1; depth++) {
        memset(text, '[', (size_t)depth);
        memset(text + depth, ']', (size_t)depth);
        int rc = da_json_parse(text, 2 * (size_t)depth, &v, err, sizeof err);
        assert_int_equal(rc, depth <= DA_JSON_MAX_DEPTH ? 0 : -1);
        da_json_free(&v);
    }
    static const struct { const char *num; int rc; uint64_t v; } nums[] = {
        {"0", 0, 0}, {"18446744073709551615", 0, UINT64_MAX}, {"18446744073709551616", -4, 0},
        {"-0", -2, 0}, {"-1", -2, 0}, {"1e2", -3, 0}, {"1.5", -3, 0}, {"1E+2", -3, 0},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        assert_int_equal(da_json_parse(nums[i].num, strlen(nums[i].num), &v, err, sizeof err), 0);
        uint64_t u = 12345;
        assert_int_equal(da_json_to_u64(&v, &u), nums[i].rc);
        if (nums[i].rc == 0) assert_true(u == nums[i].v);
        da_json_free(&v);
    }
    static const char *bad[] = {"", " ", "01", "1.", ".5", "1e", "+1", "[1,]", "[,1]", "{\"a\":1,}", "nul",
                                "\"\\u D800\"", "[1] [2]", "\"a", "{\"a\"}", "tru", "--1", "1e+", "0x10"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (da_json_parse(bad[i], strlen(bad[i]), &v, err, sizeof err) == 0) fail_msg("accepted '%s'", bad[i]);
        assert_true(strstr(err, "at byte") != NULL);
    }
}

/* ------------------------------------------------------------------------ */
/* Fuzzing: truncations, bit flips and byte substitutions of a valid file    */
/* must never crash (run under SANITIZE=1 for the full value).               */
/* ------------------------------------------------------------------------ */

/* Parse and, when accepted, touch every value and string. */
static int parse_and_touch(const uint8_t *f, size_t n)
{
    da_safetensors *st = NULL;
    da_status s = da_st_parse(f, n, &st);
    if (s != DA_OK) {
        assert_null(st);
        assert_true(s == DA_ERR_FORMAT);
        assert_true(strlen(da_last_error()) > 0);
        return 0;
    }
    for (int i = 0; i < st->n_tensors; i++) {
        const da_st_tensor *t = &st->tensors[i];
        assert_true(t->offset + t->nbytes <= st->data_bytes);
        float *x = malloc((t->numel ? t->numel : 1) * sizeof *x);
        da_st_to_f32(st, t, x);
        free(x);
        assert_true(da_st_find(st, t->name) != NULL);
    }
    for (int i = 0; i < st->n_meta; i++) assert_true(da_st_meta_get(st, st->meta[i].key) != NULL);
    da_st_close(st);
    return 1;
}

static void test_fuzz(void **state)
{
    (void)state;
    const char *hd = "{\"__metadata__\":{\"k\":\"v\\u00e9\"},"
                     "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                     "\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]},"
                     "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,1],\"data_offsets\":[22,24]},"
                     "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[24,24]}}  ";
    uint8_t data[24];
    for (int i = 0; i < 24; i++) data[i] = (uint8_t)(i * 37 + 11);
    size_t n;
    uint8_t *base = make_file(hd, strlen(hd), data, sizeof data, &n);
    assert_int_equal(parse_and_touch(base, n), 1);
    uint8_t *f = malloc(n);
    /* every truncation loses bytes some range needs, or the header */
    for (size_t len = 0; len < n; len++) {
        memcpy(f, base, len);
        if (parse_and_touch(f, len)) fail_msg("truncation to %zu bytes accepted", len);
    }
    static const uint8_t subst[] = {0x00, ' ', '"', '\\', '[', ']', '{', '}', ',', ':', '-', '0', '9', 'e', 0x80, 0xFF};
    int accepted = 0;
    for (size_t pos = 0; pos < n; pos++) {
        memcpy(f, base, n);
        for (int bit = 0; bit < 8; bit++) {
            f[pos] ^= (uint8_t)(1u << bit);
            accepted += parse_and_touch(f, n);
            f[pos] = base[pos];
        }
        for (size_t k = 0; k < sizeof subst; k++) {
            f[pos] = subst[k];
            accepted += parse_and_touch(f, n);
        }
    }
    /* flips in the data section (and some in names/padding) stay valid: the
     * loop really exercised the accepting path too */
    assert_true(accepted > 24 * 8);
    free(f);
    free(base);
}

/* ------------------------------------------------------------------------ */
/* Writer errors and atomicity                                              */
/* ------------------------------------------------------------------------ */

static void test_write_rejects(void **state)
{
    (void)state;
    float x[4] = {1, 2, 3, 4};
    char path[256];
    tmp_path(path, sizeof path, "w.safetensors");
    da_st_entry good = {.name = "x", .data = x, .ndim = 1, .shape = {4}};
    assert_int_equal(da_st_write(path, &good, 1, NULL, 0), DA_OK);
    size_t n0;
    uint8_t *before = read_all(path, &n0);

    const struct { da_st_entry e[2]; int n; da_status want; const char *expect; } bad[] = {
        {{{.name = "x", .data = x, .ndim = 1, .shape = {4}}, {.name = "x", .data = x, .ndim = 1, .shape = {2}}},
         2, DA_ERR_INVALID, "duplicate tensor name 'x'"},
        {{{.name = "x", .data = x, .ndim = 2, .shape = {-1, 4}}}, 1, DA_ERR_INVALID, "negative shape entry -1"},
        {{{.name = "x", .data = x, .ndim = 7}}, 1, DA_ERR_INVALID, "ndim 7"},
        {{{.name = "x", .data = x, .ndim = -1}}, 1, DA_ERR_INVALID, "ndim -1"},
        {{{.name = "", .data = x, .ndim = 1, .shape = {4}}}, 1, DA_ERR_INVALID, "empty tensor name"},
        {{{.name = NULL, .data = x, .ndim = 1, .shape = {4}}}, 1, DA_ERR_INVALID, "empty tensor name"},
        {{{.name = "__metadata__", .data = x, .ndim = 1, .shape = {4}}}, 1, DA_ERR_INVALID, "reserved"},
        {{{.name = "bad\xff", .data = x, .ndim = 1, .shape = {4}}}, 1, DA_ERR_INVALID, "not valid UTF-8"},
        {{{.name = "x", .data = NULL, .ndim = 1, .shape = {4}}}, 1, DA_ERR_INVALID, "NULL data"},
        {{{.name = "x", .data = x, .ndim = 6, .shape = {1 << 30, 1 << 30, 1 << 30, 1 << 30, 1 << 30, 1 << 30}}},
         1, DA_ERR_RANGE, "overflows"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        da_status s = da_st_write(path, bad[i].e, bad[i].n, NULL, 0);
        if (s != bad[i].want || !strstr(da_last_error(), bad[i].expect))
            fail_msg("write case %zu: status %d '%s', want %d '%s'", i, s, da_last_error(), bad[i].want,
                     bad[i].expect);
    }
    da_st_meta dup[] = {{"k", "1"}, {"k", "2"}};
    assert_int_equal(da_st_write(path, &good, 1, dup, 2), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "duplicate metadata key 'k'"));
    da_st_meta null_value[] = {{"k", NULL}};
    assert_int_equal(da_st_write(path, &good, 1, null_value, 1), DA_ERR_INVALID);
    assert_int_equal(da_st_write(path, &good, -1, NULL, 0), DA_ERR_INVALID);

    /* a rejected write leaves the existing file untouched and no temp file */
    size_t n1;
    uint8_t *after = read_all(path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    assert_int_equal(count_tmp_files(), 0);
    free(before);
    free(after);

    /* I/O failures: missing directory, and a directory in the way of the rename */
    char p2[300];
    snprintf(p2, sizeof p2, "%s/no-such-dir/x.safetensors", g_dir);
    assert_int_equal(da_st_write(p2, &good, 1, NULL, 0), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "No such file or directory"));
    tmp_path(p2, sizeof p2, "a-directory");
    assert_int_equal(mkdir(p2, 0700), 0);
    assert_int_equal(da_st_write(p2, &good, 1, NULL, 0), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "rename"));
    assert_int_equal(count_tmp_files(), 0);
    struct stat sb;
    assert_int_equal(stat(p2, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    rmdir(p2);
}

/* ------------------------------------------------------------------------ */
/* Interop with tests/oracle/safetensors_io.py                               */
/* ------------------------------------------------------------------------ */

/* Written by safetensors_io.py with torch's F16/BF16 conversions. */
static void test_from_python(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("st_from_torch");
    /* data-section order; the header lists them in another order */
    static const char *order[] = {"bf16.arange", "f32.arange", "empty", "f16.special", "f16.arange",
                                  "bf16.special", "scalar"};
    assert_int_equal(st->n_tensors, 7);
    for (int i = 0; i < 7; i++) assert_string_equal(st->tensors[i].name, order[i]);
    /* odd header length: the decoding below runs on unaligned data */
    assert_int_equal((st->data - (const uint8_t *)st->file_buffer) % 2, 1);

    const da_st_tensor *t = da_st_find(st, "f32.arange");
    assert_int_equal(t->dtype, DA_F32);
    assert_int_equal(t->ndim, 3);
    assert_true(t->shape[0] == 2 && t->shape[1] == 3 && t->shape[2] == 4);
    float *x = to_f32(st, "f32.arange", 24);
    for (int i = 0; i < 24; i++) assert_same_float("f32.arange", (size_t)i, x[i], (float)(i - 10) * 0.25f);
    free(x);
    assert_int_equal(da_st_find(st, "f16.arange")->dtype, DA_F16);
    x = to_f32(st, "f16.arange", 15);
    for (int i = 0; i < 15; i++) assert_same_float("f16.arange", (size_t)i, x[i], (float)(i - 7) / 8.0f);
    free(x);
    assert_int_equal(da_st_find(st, "bf16.arange")->dtype, DA_BF16);
    x = to_f32(st, "bf16.arange", 16);
    for (int i = 0; i < 16; i++) assert_same_float("bf16.arange", (size_t)i, x[i], (float)(i - 8) * 0.5f);
    free(x);
    const float hv[] = {1.0f, -2.5f, 65504.0f, 0x1p-24f, 0x1p-14f, INFINITY, -INFINITY, NAN, -0.0f};
    x = to_f32(st, "f16.special", 9);
    for (int i = 0; i < 9; i++) assert_same_float("f16.special", (size_t)i, x[i], hv[i]);
    free(x);
    const float bv[] = {1.0f, -2.5f, 0x1p-133f, 0x1.fep127f, INFINITY, NAN};
    x = to_f32(st, "bf16.special", 6);
    for (int i = 0; i < 6; i++) assert_same_float("bf16.special", (size_t)i, x[i], bv[i]);
    free(x);
    t = da_st_find(st, "empty");
    assert_true(t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 3 && t->numel == 0);
    t = da_st_find(st, "scalar");
    assert_true(t->ndim == 0 && t->numel == 1);
    x = to_f32(st, "scalar", 1);
    assert_true(x[0] == 42.5f);
    free(x);
    assert_int_equal(st->n_meta, 3);
    assert_string_equal(da_st_meta_get(st, "format"), "pt");
    assert_string_equal(da_st_meta_get(st, "note"), "h\xc3\xa9llo \"q\"\n\t\xf0\x9f\x98\x80");
    assert_string_equal(da_st_meta_get(st, "empty"), "");
    da_st_close(st);
}

/* The file safetensors_io.py checks (keep in sync with EXPECT_* there). */
static da_status dalign_fixture(const char *path)
{
    float w[12], b[4], scalar = 42.5f, q[2] = {1.0f, 2.0f};
    for (int i = 0; i < 12; i++) w[i] = (float)i * 0.5f - 2.0f;
    for (int i = 0; i < 4; i++) b[i] = (float)(i + 1) * 0.125f;
    const float special[9] = {0.0f, -0.0f, 1.0f, -2.5f, 0x1p-149f, FLT_MAX, INFINITY, -INFINITY,
                              f32_of_bits(0x7FC00000u)};
    const da_st_entry e[] = {
        {.name = "scalar", .data = &scalar, .ndim = 0},
        {.name = "special", .data = special, .ndim = 1, .shape = {9}},
        {.name = "layer.0.weight", .data = w, .ndim = 2, .shape = {3, 4}},
        {.name = "name \"q\" \\ \xc3\xa9", .data = q, .ndim = 1, .shape = {2}},
        {.name = "empty", .data = NULL, .ndim = 2, .shape = {0, 3}},
        {.name = "layer.0.bias", .data = b, .ndim = 1, .shape = {4}},
    };
    const da_st_meta meta[] = {
        {"note", "line1\nline2\t\"q\" \xc3\xa9 \xf0\x9f\x98\x80"}, {"format", "pt"}, {"empty", ""}};
    return da_st_write(path, e, 6, meta, 3);
}

/* dalign still writes exactly the bytes the Python side verified. */
static void test_fixture_bytes(void **state)
{
    (void)state;
    const char *committed = "tests/oracle/st_from_dalign.safetensors";
    if (getenv("DA_ST_REGEN")) assert_int_equal(dalign_fixture(committed), DA_OK);
    char path[256];
    tmp_path(path, sizeof path, "fixture.safetensors");
    assert_int_equal(dalign_fixture(path), DA_OK);
    size_t n1, n2;
    uint8_t *a = read_all(path, &n1), *b = read_all(committed, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    free(a);
    free(b);
    da_safetensors *st;
    assert_int_equal(da_st_open(committed, &st), DA_OK);
    assert_int_equal(st->n_tensors, 6);
    assert_string_equal(st->tensors[0].name, "empty");
    assert_string_equal(da_st_meta_get(st, "note"), "line1\nline2\t\"q\" \xc3\xa9 \xf0\x9f\x98\x80");
    float *x = to_f32(st, "name \"q\" \\ \xc3\xa9", 2);
    assert_true(x[0] == 1.0f && x[1] == 2.0f);
    free(x);
    da_st_close(st);
}

/* ------------------------------------------------------------------------ */
/* Typed metadata reads (src/core/safetensors_meta.c)                       */
/* ------------------------------------------------------------------------ */

/* the last error contains want */
static void assert_error_has(const char *want)
{
    if (!strstr(da_last_error(), want)) fail_msg("error '%s' lacks '%s'", da_last_error(), want);
}

/* Each reader takes the whole value or refuses it, names the key (and the
 * file when given) and leaves *out as it was on a refusal. */
static void test_meta_helpers(void **state)
{
    (void)state;
    da_st_meta meta[] = {
        {"n", "42"},        {"neg", "-7"},        {"junk", "12x"},    {"huge", "99999999999999999999"},
        {"seed", "18446744073709551615"},         {"signed", "+5"},   {"f", "0.25"},
        {"inf", "1e39"},    {"tiny", "1e-45"},    {"arr", "[1,2,3]"}, {"obj", "{\"a\":1}"},
        {"bad", "[1,"},     {"empty", ""},
    };
    float x = 1.0f;
    da_st_entry e = {"x", &x, 0, {0}};
    char path[300];
    tmp_path(path, sizeof path, "meta.safetensors");
    assert_int_equal(da_st_write(path, &e, 1, meta, (int)(sizeof meta / sizeof meta[0])), DA_OK);
    da_safetensors *st;
    assert_int_equal(da_st_open(path, &st), DA_OK);

    long l = -1;
    assert_int_equal(da_st_meta_long(st, NULL, "n", 0, 100, &l), DA_OK);
    assert_int_equal(l, 42);
    assert_int_equal(da_st_meta_long(st, NULL, "neg", -10, 0, &l), DA_OK);
    assert_int_equal(l, -7);
    l = 5;
    assert_int_equal(da_st_meta_long(st, NULL, "n", 0, 41, &l), DA_ERR_FORMAT);
    assert_error_has("metadata 'n' = '42' is not an integer in [0, 41]");
    assert_int_equal(da_st_meta_long(st, NULL, "junk", 0, 100, &l), DA_ERR_FORMAT);
    assert_int_equal(da_st_meta_long(st, NULL, "huge", 0, LONG_MAX, &l), DA_ERR_FORMAT);
    assert_int_equal(da_st_meta_long(st, NULL, "empty", 0, 100, &l), DA_ERR_FORMAT);
    assert_int_equal(l, 5);
    /* a missing key, with and without the file name */
    assert_int_equal(da_st_meta_long(st, NULL, "steps", 0, 100, &l), DA_ERR_FORMAT);
    assert_string_equal(da_last_error(), "metadata 'steps' is missing");
    assert_null(da_st_meta_need(st, "some.safetensors", "steps"));
    assert_string_equal(da_last_error(), "some.safetensors: metadata 'steps' is missing");
    assert_string_equal(da_st_meta_need(st, NULL, "f"), "0.25");

    uint64_t u = 3;
    assert_int_equal(da_st_meta_u64(st, NULL, "seed", &u), DA_OK);
    assert_true(u == UINT64_MAX);
    u = 3;
    assert_int_equal(da_st_meta_u64(st, "f.st", "signed", &u), DA_ERR_FORMAT);
    assert_error_has("f.st: metadata 'signed' = '+5'");
    assert_int_equal(da_st_meta_u64(st, NULL, "neg", &u), DA_ERR_FORMAT);
    assert_int_equal(da_st_meta_u64(st, NULL, "huge", &u), DA_ERR_FORMAT);
    assert_true(u == 3);

    float f = 9.0f;
    assert_int_equal(da_st_meta_float(st, NULL, "f", &f), DA_OK);
    assert_true(f == 0.25f);
    assert_int_equal(da_st_meta_float(st, NULL, "tiny", &f), DA_OK);   /* a subnormal is a number */
    assert_true(f > 0.0f && f < FLT_MIN);
    f = 9.0f;
    assert_int_equal(da_st_meta_float(st, NULL, "inf", &f), DA_ERR_FORMAT);
    assert_error_has("metadata 'inf' = '1e39' is not a finite number");
    assert_int_equal(da_st_meta_float(st, NULL, "junk", &f), DA_ERR_FORMAT);
    assert_true(f == 9.0f);

    da_json_value v;
    assert_int_equal(da_st_meta_json(st, NULL, "arr", DA_JSON_ARRAY, 3, &v), DA_OK);
    assert_int_equal(v.n, 3);
    da_json_free(&v);
    assert_int_equal(da_st_meta_json(st, NULL, "arr", DA_JSON_ARRAY, -1, &v), DA_OK);
    da_json_free(&v);
    assert_int_equal(da_st_meta_json(st, NULL, "obj", DA_JSON_OBJECT, -1, &v), DA_OK);
    da_json_free(&v);
    assert_int_equal(da_st_meta_json(st, NULL, "arr", DA_JSON_ARRAY, 4, &v), DA_ERR_FORMAT);
    assert_error_has("metadata 'arr' must be a JSON array of 4 items (n), has 3");
    assert_null(v.items);   /* nothing to free after a refusal */
    assert_int_equal(da_st_meta_json(st, NULL, "arr", DA_JSON_OBJECT, -1, &v), DA_ERR_FORMAT);
    assert_error_has("metadata 'arr' must be a JSON object");
    assert_int_equal(da_st_meta_json(st, NULL, "bad", DA_JSON_ARRAY, -1, &v), DA_ERR_FORMAT);
    assert_error_has("metadata 'bad': ");
    da_st_close(st);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_read_checks_shape),
        cmocka_unit_test(test_half_decoding),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_valid_edge_cases),
        cmocka_unit_test(test_json_limits),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_write_rejects),
        cmocka_unit_test(test_from_python),
        cmocka_unit_test(test_fixture_bytes),
        cmocka_unit_test(test_meta_helpers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
