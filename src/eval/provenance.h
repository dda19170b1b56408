/* What a metrics.json was made with, so that two runs can be told apart by
 * more than their names: the dalign version and the SHA-256 of every
 * weights file the run read (`dalign compare` shows where they differ).
 * SHA-256 is FIPS 180-4, written here because the core has no hash. */
#ifndef DA_EVAL_PROVENANCE_H
#define DA_EVAL_PROVENANCE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dalign/core.h"

typedef struct da_sha256 {
    uint32_t h[8];
    uint64_t len;          /* bytes hashed so far */
    uint8_t buf[64];
    size_t used;           /* bytes waiting in buf */
} da_sha256;

void da_sha256_init(da_sha256 *c);
void da_sha256_update(da_sha256 *c, const void *data, size_t n);
/* the digest as 64 lowercase hex digits and a NUL */
void da_sha256_hex(da_sha256 *c, char hex[65]);
/* The file's digest; DA_ERR_IO naming it when it cannot be read. */
da_status da_sha256_file(const char *path, char hex[65]);

/* The weights files of a run, for the record */
#define DA_PROV_MAX_FILES 16
typedef struct da_provenance {
    int n;
    char name[DA_PROV_MAX_FILES][256];     /* "vae.safetensors"; the UNet as "unet.{json,safetensors}" */
    char sha256[DA_PROV_MAX_FILES][65];
} da_provenance;

/* The files under weights_dir (resolved with da_weights_dir) that a
 * pipeline with UNet `unet` (a name in the folder or a .safetensors path)
 * reads, text encoder, VAE, scheduler, the UNet (recorded as unet.json and
 * unet.safetensors whatever its file), plus DIR/NAME.{json,safetensors}
 * for each name of `extra` (NULL-terminated, e.g. "clip", "reward_net"),
 * each that exists hashed. DA_ERR_IO when an existing file cannot be read. */
da_status da_provenance_collect(da_provenance *p, const char *weights_dir, const char *unet,
                                const char *const *extra);
/* "dalign_version": "...", "weights_sha256": {"name": "hex", ...} as two
 * members of a JSON object, each line starting with indent; no trailing comma */
void da_provenance_json(FILE *f, const da_provenance *p, const char *indent);

/* The completion marker of a multi-file output folder (DA_EVAL_DONE):
 * da_done_clear removes it before the first file is written (a rerun into
 * the same folder is unfinished until it completes), da_done_mark writes
 * it, atomically, after the last one, listing the files. A folder without
 * it holds a partial result, whatever else is in it. */
da_status da_done_clear(const char *dir);
da_status da_done_mark(const char *dir, const char *const *files);

#endif
