/* What the generator (pairs.c) and the file code (pairs_io.c) share. */
#ifndef DA_EVAL_PAIRS_INTERNAL_H
#define DA_EVAL_PAIRS_INTERNAL_H

#include "dalign/eval.h"

/* The checks of da_pairs_config_check, shared with the loader, which
 * reports code DA_ERR_FORMAT and who "metadata" for settings read back. */
da_status da_pairs_check(const da_pairs_config *c, da_status code, const char *who);

/* Room in pr for n pairs of (C, h, w) latents; the prompt pointers are set
 * to their rows of pr->text (all empty). */
da_status da_pairs_alloc(da_pairs *pr, int n, int C, int h, int w);

#endif
