/* The loader's rule for error messages, for loaders elsewhere
 * (src/pipeline/weights.c; the loaders themselves, da_pipeline_load,
 * da_weights_load_pipeline, da_weights_load_clip and da_weights_dir, are
 * public: dalign/pipeline.h). Every error names its file: "<what> FILE:
 * <why>" for a file that cannot be read, "FILE: <why>" for anything else
 * (weights.c says how). */
#ifndef DA_PIPELINE_WEIGHTS_H
#define DA_PIPELINE_WEIGHTS_H

#include "dalign/pipeline.h"

/* The rule above for loaders elsewhere (da_pairs_load): s, with the last
 * error starting "PATH: " (put in front unless it starts so already). */
da_status da_error_named(da_status s, const char *path);

#endif
