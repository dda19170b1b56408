/* Word-level tokenizer over the caption grammar's vocabulary (34 ids). */
#include <stdio.h>
#include <string.h>

#include "data/world.h"

/* ids 0..3 are the specials; the words follow in a fixed order that is part
 * of every trained text encoder's embedding table: append, never reorder. */
static const char *const VOCAB[] = {
    "<pad>", "<bos>", "<eos>", "<unk>",
    "a", "an", "small", "large", "big",
    "red", "green", "blue", "yellow", "purple", "orange", "pink", "cyan",
    "circle", "square", "triangle",
    "to", "the", "left", "right", "of", "above", "below",
    "on", "with", "background",
    "white", "black", "gray", "grey",
};
#define N_VOCAB ((int)(sizeof(VOCAB) / sizeof(VOCAB[0])))

int da_vocab_size(void) { return N_VOCAB; }

const char *da_vocab_word(int id) { return id >= 0 && id < N_VOCAB ? VOCAB[id] : NULL; }

int da_vocab_id(const char *word)
{
    if (!word) return DA_TOK_UNK;
    for (int i = DA_TOK_UNK + 1; i < N_VOCAB; i++)
        if (strcmp(VOCAB[i], word) == 0) return i;
    return DA_TOK_UNK;
}

static int is_separator(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' ||
           c == ',' || c == '.';
}

void dw_split(const char *text, dw_words *out)
{
    out->n = out->total = 0;
    const char *p = text;
    while (*p) {
        while (*p && is_separator(*p)) p++;
        if (!*p) break;
        char *dst = out->n < DW_MAX_WORDS ? out->w[out->n] : NULL;
        int len = 0;
        for (; *p && !is_separator(*p); p++) {
            char c = *p;
            if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            if (dst && len < DW_WORD_MAX - 1) dst[len++] = c;
        }
        if (dst) { dst[len] = '\0'; out->n++; }
        out->total++;
    }
}

/* Append `word` to the space-separated list in buf (cut when full). */
static void list_append(char *buf, size_t cap, const char *word)
{
    size_t len = strlen(buf);
    if (len + 1 >= cap) return;
    snprintf(buf + len, cap - len, "%s%s", len ? " " : "", word);
}

da_status da_tokenize(const char *text, int *ids, uint8_t *keep, da_tok_report *rep)
{
    if (!text || !ids) return da_fail(DA_ERR_INVALID, "da_tokenize: NULL argument");
    dw_words words;
    dw_split(text, &words);
    da_tok_report r = {0};
    const int max_words = DA_MAX_TOKENS - 2;  /* room for BOS and EOS */
    int n = words.total < max_words ? words.total : max_words;
    r.n_truncated = words.total - n;
    int t = 0;
    ids[t++] = DA_TOK_BOS;
    for (int i = 0; i < n; i++) {
        int id = da_vocab_id(words.w[i]);
        if (id == DA_TOK_UNK) {
            r.n_unknown++;
            list_append(r.unknown, sizeof r.unknown, words.w[i]);
        }
        ids[t++] = id;
    }
    ids[t++] = DA_TOK_EOS;
    r.n_tokens = t;
    for (int i = 0; i < DA_MAX_TOKENS; i++) {
        if (i >= t) ids[i] = DA_TOK_PAD;
        if (keep) keep[i] = i < t;
    }
    if (rep) *rep = r;
    return DA_OK;
}

da_status da_detokenize(const int *ids, int n, char *buf, size_t cap)
{
    if (!ids || !buf || cap == 0 || n < 0) return da_fail(DA_ERR_INVALID, "da_detokenize: bad argument");
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= N_VOCAB)
            return da_fail(DA_ERR_INVALID, "da_detokenize: id %d at position %d is outside the vocabulary (0..%d)",
                           id, i, N_VOCAB - 1);
        if (id == DA_TOK_EOS || id == DA_TOK_PAD) break;
        if (id == DA_TOK_BOS) continue;
        int w = snprintf(buf + len, cap - len, "%s%s", len ? " " : "", VOCAB[id]);
        if (w < 0 || (size_t)w >= cap - len) {
            buf[len] = '\0';
            return da_fail(DA_ERR_RANGE, "da_detokenize: buffer of %zu bytes is too small", cap);
        }
        len += (size_t)w;
    }
    return DA_OK;
}
