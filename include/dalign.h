/* dalign.h: the public C API of dalign, a pure-C reference implementation of
 * diffusion-model alignment. Prefix da_ for functions and types, DA_ for
 * macros. One header per layer of src/, lowest first, each including the
 * one below it (docs/architecture.md has the picture):
 *
 *   dalign/core.h       src/core       errors, the log (da_set_log), threads, tensors and
 *                                      tape, ops, GEMM, optim, RNG, safetensors, progress
 *                                      and metrics log
 *   dalign/models.h     src/models     parameters, VAE, UNet, text encoder, CLIP, reward net
 *   dalign/diffusion.h  src/diffusion  noise schedules, samplers, guidance
 *   dalign/data.h       src/data       the shapes world: scenes, captions, tokenizer, detector
 *   dalign/pipeline.h   src/pipeline   prompt -> image, the weights directory, PNG
 *   dalign/rewards.h    src/rewards    rewards, the synthetic rater, synthetic pairs
 *   dalign/eval.h       src/eval       evaluations, win-rate, preference pairs
 *   dalign/train.h      src/train      training harness, pretraining, preference training
 *
 * This header includes them all; a program may include only the layers it
 * uses. The functions marked DA_API are the public API, the only ones
 * libdalign.so exports. Code in src/ includes only its own layer's header
 * (scripts/check-layers.sh, run by make check, enforces it).
 *
 * Conventions (docs/architecture.md has the long form):
 *  - tensors are f32, contiguous, row-major, PyTorch dimension order;
 *  - kernel pairs: outputs first, then inputs, then sizes; backward kernels
 *    ACCUMULATE into gradient buffers (+=), so a NULL gradient pointer means
 *    "no gradient wanted here" and is skipped;
 *  - functions that can fail on user input return a da_status and set a
 *    message readable with da_last_error(); they never abort;
 *  - what the library prints goes through da_log (stderr unless the
 *    program installs its own function with da_set_log).
 */
#ifndef DALIGN_H
#define DALIGN_H

#include "dalign/core.h"
#include "dalign/models.h"
#include "dalign/diffusion.h"
#include "dalign/data.h"
#include "dalign/pipeline.h"
#include "dalign/rewards.h"
#include "dalign/eval.h"
#include "dalign/train.h"

#endif /* DALIGN_H */
