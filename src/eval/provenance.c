/* SHA-256 (FIPS 180-4) and the provenance of a run (provenance.h). */
#include "eval/provenance.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "dalign/eval.h"
#include "dalign/pipeline.h"

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

void da_sha256_init(da_sha256 *c)
{
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, H0, sizeof H0);
    c->len = 0;
    c->used = 0;
}

void da_sha256_update(da_sha256 *c, const void *data, size_t n)
{
    const uint8_t *p = data;
    c->len += n;
    while (n) {
        size_t take = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->buf + c->used, p, take);
        c->used += take;
        p += take;
        n -= take;
        if (c->used == 64) {
            block(c->h, c->buf);
            c->used = 0;
        }
    }
}

void da_sha256_hex(da_sha256 *c, char hex[65])
{
    uint64_t bits = c->len * 8;
    uint8_t pad = 0x80, zero = 0, lenb[8];
    da_sha256_update(c, &pad, 1);
    while (c->used != 56) da_sha256_update(c, &zero, 1);
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    da_sha256_update(c, lenb, 8);
    for (int i = 0; i < 8; i++) snprintf(hex + 8 * i, 9, "%08x", c->h[i]);
}

da_status da_sha256_file(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    if (!f) return da_fail(DA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    da_sha256 c;
    da_sha256_init(&c);
    uint8_t buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) da_sha256_update(&c, buf, got);
    int bad = ferror(f);
    fclose(f);
    if (bad) return da_fail(DA_ERR_IO, "cannot read %s", path);
    da_sha256_hex(&c, hex);
    return DA_OK;
}

/* path recorded as name, when it is a regular file */
static da_status add(da_provenance *p, const char *path, const char *name)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return DA_OK;   /* optional files (scheduler.json) */
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->name[i], name)) return DA_OK;
    if (p->n == DA_PROV_MAX_FILES) return DA_OK;
    snprintf(p->name[p->n], sizeof p->name[p->n], "%s", name);
    da_status s = da_sha256_file(path, p->sha256[p->n]);
    if (s == DA_OK) p->n++;
    return s;
}

/* DIR/NAME.json and DIR/NAME.safetensors */
static da_status add_pair(da_provenance *p, const char *dir, const char *name)
{
    static const char *const ext[2] = {".json", ".safetensors"};
    da_status s = DA_OK;
    for (int e = 0; e < 2 && s == DA_OK; e++) {
        char path[4096], file[256];
        snprintf(file, sizeof file, "%s%s", name, ext[e]);
        if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path) continue;
        s = add(p, path, file);
    }
    return s;
}

da_status da_provenance_collect(da_provenance *p, const char *weights_dir, const char *unet,
                                const char *const *extra)
{
    memset(p, 0, sizeof *p);
    const char *dir = da_weights_dir(weights_dir && *weights_dir ? weights_dir : NULL);
    if (!unet) unet = "unet";
    da_status s = add_pair(p, dir, "text_encoder");
    if (s == DA_OK) s = add_pair(p, dir, "vae");
    if (s == DA_OK) {
        char path[4096];
        snprintf(path, sizeof path, "%s/scheduler.json", dir);
        s = add(p, path, "scheduler.json");
    }
    /* the UNet under its role's name, whichever file it is (the run's "unet"
     * names it), so that two runs with different UNets differ in one key */
    size_t n = strlen(unet), e = strlen(".safetensors");
    char json[4096], st[4096];
    if (n > e && !strcmp(unet + n - e, ".safetensors")) {   /* a path: its config beside it */
        snprintf(json, sizeof json, "%.*s.json", (int)(n - e), unet);
        snprintf(st, sizeof st, "%s", unet);
    } else {
        snprintf(json, sizeof json, "%s/%s.json", dir, unet);
        snprintf(st, sizeof st, "%s/%s.safetensors", dir, unet);
    }
    if (s == DA_OK) s = add(p, json, "unet.json");
    if (s == DA_OK) s = add(p, st, "unet.safetensors");
    for (int i = 0; extra && extra[i] && s == DA_OK; i++) s = add_pair(p, dir, extra[i]);
    return s;
}

void da_provenance_json(FILE *f, const da_provenance *p, const char *indent)
{
    fprintf(f, "%s\"dalign_version\": ", indent);
    da_json_write_str(f, da_version());
    fprintf(f, ",\n%s\"weights_sha256\": {", indent);
    for (int i = 0; i < p->n; i++) {
        fprintf(f, "%s\n%s  ", i ? "," : "", indent);
        da_json_write_str(f, p->name[i]);
        fprintf(f, ": \"%s\"", p->sha256[i]);
    }
    if (p->n) fprintf(f, "\n%s", indent);
    fputc('}', f);
}

da_status da_done_clear(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, DA_EVAL_DONE) >= (int)sizeof path)
        return da_fail(DA_ERR_INVALID, "path too long: %s/%s", dir, DA_EVAL_DONE);
    if (unlink(path) != 0 && errno != ENOENT)
        return da_fail(DA_ERR_IO, "cannot remove the old completion marker %s: %s", path, strerror(errno));
    return DA_OK;
}

static void write_done(FILE *f, const void *ctx)
{
    const char *const *files = ctx;
    fprintf(f, "complete: every file below was written before this marker (dalign %s)\n", da_version());
    for (int i = 0; files[i]; i++) fprintf(f, "%s\n", files[i]);
}

da_status da_done_mark(const char *dir, const char *const *files)
{
    return da_write_with(dir, DA_EVAL_DONE, write_done, files);
}
