/* What the samplers share (src/diffusion/schedule.c), besides the
 * prediction conversion (predict.h): the parser of their option names,
 * the timestep range check and their table of inference timesteps. */
#ifndef DA_DIFFUSION_SCHEDULE_H
#define DA_DIFFUSION_SCHEDULE_H

#include "dalign/diffusion.h"

/* name -> its index in names[0 .. n) into *out; otherwise DA_ERR_INVALID,
 * "unknown WHAT 'name' (expected a, b or c)" */
da_status da_parse_choice(const char *name, const char *const *names, int n, int *out, const char *what);

/* DA_ERR_RANGE "WHO: timestep T outside [0, n_train)" unless 0 <= t < n_train */
da_status da_check_timestep(const da_schedule *s, const char *who, int t);

/* *out: a malloc'd (n_steps) table of da_timesteps over s (free it); NULL
 * and the error of da_timesteps, or WHO: out of memory, on failure */
da_status da_timesteps_new(int **out, const da_schedule *s, int n_steps, da_spacing spacing, int steps_offset,
                           const char *who);

#endif
