/* Typed reads of safetensors metadata. Metadata values are strings (the
 * format allows nothing else), so every reader of a dalign file turns some
 * of them back into numbers or JSON; these do it one way, strictly (the
 * whole string, in range, finite), and say what is wrong in one shape:
 *
 *     [file: ]metadata 'key' = 'value' is not an integer in [lo, hi]
 *
 * file names the file in the message; pass NULL when the caller puts the
 * file name in front of da_last_error() itself. Every function returns
 * DA_ERR_FORMAT (missing key, bad value) and leaves *out unchanged then. */
#ifndef DA_SAFETENSORS_META_H
#define DA_SAFETENSORS_META_H

#include <stdint.h>

#include "core/json.h"
#include "dalign/core.h"

/* The value of key, or NULL with the error set when it is missing. */
const char *da_st_meta_need(const da_safetensors *st, const char *file, const char *key);

/* A decimal integer (optional sign) in [lo, hi]. */
da_status da_st_meta_long(const da_safetensors *st, const char *file, const char *key, long lo, long hi,
                          long *out);

/* Decimal digits only (da_parse_u64): seeds and other 64-bit counters. */
da_status da_st_meta_u64(const da_safetensors *st, const char *file, const char *key, uint64_t *out);

/* A finite float (strtof: an overflow to inf is refused, an underflow to 0
 * or a subnormal is a number). */
da_status da_st_meta_float(const da_safetensors *st, const char *file, const char *key, float *out);

/* The value parsed as JSON of the given type, with n items when n >= 0
 * (arrays and objects). On success free *v with da_json_free; on failure
 * *v is zeroed and there is nothing to free. */
da_status da_st_meta_json(const da_safetensors *st, const char *file, const char *key, da_json_type type, int n,
                          da_json_value *v);

#endif
