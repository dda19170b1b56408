/* The one loader of models from a weights directory (src/pipeline/weights.c;
 * da_pipeline_load and da_weights_dir are declared in dalign.h). Every error
 * names its file: "<what> FILE: <why>" for a file that cannot be read,
 * "FILE: <why>" for anything else (weights.c says how). */
#ifndef DA_PIPELINE_WEIGHTS_H
#define DA_PIPELINE_WEIGHTS_H

#include "dalign.h"

/* da_pipeline_load with the UNet named either way: a NAME in dir
 * (DIR/NAME.{json,safetensors}; NULL: "unet") or a path ending in
 * .safetensors whose config is the same path with .json (both checked
 * before anything loads). The pipeline owns its models. */
da_status da_weights_load_pipeline(da_pipeline **out, const char *dir, const char *unet);

/* DIR/clip.{json,safetensors}: a CLIP whose image tower reads the
 * pipeline's images (DA_IMG x DA_IMG RGB; any other config is refused
 * before its weights load). *out is NULL after an error. */
da_status da_weights_load_clip(da_clip **out, const char *dir);

/* The rule above for loaders elsewhere (da_pairs_load): s, with the last
 * error starting "PATH: " (put in front unless it starts so already). */
da_status da_error_named(da_status s, const char *path);

#endif
