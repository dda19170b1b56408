/* The internal side of the log (src/core/log.c; da_set_log and da_log are
 * in dalign/core.h). */
#ifndef DA_CORE_LOG_H
#define DA_CORE_LOG_H

#include "dalign/core.h"

/* 1 when a host program installed its own log function: da_progress then
 * sends fd 2's lines to it instead of drawing on stderr. */
int da_log_is_custom(void);

#endif
