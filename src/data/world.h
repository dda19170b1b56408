/* Internal helpers shared by the shapes-world files (src/data/). */
#ifndef DA_DATA_WORLD_H
#define DA_DATA_WORLD_H

#include "dalign/data.h"

/* Word splitting shared by the tokenizer and the parser: ASCII lower-case,
 * whitespace, commas and periods separate words and are dropped. Words
 * longer than DW_WORD_MAX - 1 bytes are cut (no vocabulary word is that long). */
#define DW_WORD_MAX 24
#define DW_MAX_WORDS 64
typedef struct dw_words {
    int n;          /* words stored (at most DW_MAX_WORDS) */
    int total;      /* words in the text, stored or not */
    char w[DW_MAX_WORDS][DW_WORD_MAX];
} dw_words;
void dw_split(const char *text, dw_words *out);

/* Scene validity: attributes in range, inside the image, no overlap. */
int dw_scene_valid(const da_scene *s);

#endif
