/* The models' JSON configs (src/core/config.c): one table of fields drives
 * both the reader and the writer, so a key is spelled once per model.
 *
 * A config is a flat JSON object; each field is an int, an int array or a
 * float, stored at `ptr` (count values for arrays, 1 otherwise), or an int
 * list of 1 .. count values (always written as an array). */
#ifndef DA_CORE_CONFIG_H
#define DA_CORE_CONFIG_H

#include "dalign/core.h"

typedef enum { DA_CFG_INT, DA_CFG_FLOAT, DA_CFG_INT_LIST } da_cfg_kind;
typedef struct da_cfg_field {
    const char *key;
    da_cfg_kind kind;
    int count;       /* 1: a scalar; > 1: an array of exactly count values; a list's capacity */
    void *ptr;       /* int*, float*, or da_cfg_list* for DA_CFG_INT_LIST */
} da_cfg_field;
/* a variable-length int list: its values and where its length lives, as
 * length - len_bias (a model keeps n_blocks = its channel list's length - 1) */
typedef struct da_cfg_list {
    int *values;
    int *len;
    int len_bias;
} da_cfg_list;

/* Read `path`: every key must be a known field (fields absent from the file
 * keep their current values). Errors name the file and the key; they are
 * DA_ERR_IO (unreadable) or DA_ERR_FORMAT (bad content), never
 * DA_ERR_INVALID, which the models keep for their own config checks. */
da_status da_cfg_read(const char *path, const da_cfg_field *f, int n);
/* Strict: also every field exactly once (no duplicates, none missing) and
 * every integer in [0, int_max]. */
da_status da_cfg_read_strict(const char *path, const da_cfg_field *f, int n, int int_max);
/* Write every field, atomically (da_write_atomic: temp file, fsync, rename). */
da_status da_cfg_write(const char *path, const da_cfg_field *f, int n);

/* ---- a model's config struct as a whole ----------------------------------- */

#define DA_CFG_MAX_FIELDS 32

/* What da_cfg_load / da_cfg_save need to know about a model's config struct. */
typedef struct da_cfg_type {
    size_t size;   /* sizeof the struct */
    /* the field table over cfg into f (at most DA_CFG_MAX_FIELDS), with
     * *list for its one DA_CFG_INT_LIST field if it has one; the count */
    int (*fields)(void *cfg, da_cfg_list *list, da_cfg_field *f);
    da_status (*check)(const void *cfg);   /* the model's own rules */
    /* 0: lenient, keys absent from the file keep *cfg's values (da_cfg_read);
     * > 0: strict, every key once, integers in [0, int_max], and the fields
     * start from zeros (da_cfg_read_strict) */
    int strict_int_max;
} da_cfg_type;

/* Read path into a copy of *cfg, check it, and only then store it: a
 * failed load leaves *cfg untouched. Every error names the file (the
 * check's as "PATH: <its message>"). */
da_status da_cfg_load(const da_cfg_type *type, void *cfg, const char *path);
/* da_cfg_write of cfg's fields (the caller checks cfg first if it wants). */
da_status da_cfg_save(const da_cfg_type *type, const void *cfg, const char *path);

#endif
