/* What the HTML pages of the eval layer (index.html of `dalign eval`, the
 * page of `dalign compare --html`) share: escaping, and images inline as
 * PNG data URIs, so that each page is one self-contained file. */
#ifndef DA_EVAL_HTML_UTIL_H
#define DA_EVAL_HTML_UTIL_H

#include <stdint.h>
#include <stdio.h>

/* text with &, <, >, " and ' escaped: prompts and paths go into the page */
void da_html_esc(FILE *f, const char *s);
/* <img src="data:image/png;base64,..." alt="ALT"> of an (h, w, 3) 8-bit
 * RGB image; the page's style sizes it */
void da_html_inline_png(FILE *f, const uint8_t *rgb, int w, int h, const char *alt);

#endif
