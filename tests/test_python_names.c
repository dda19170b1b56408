/* docs/python.md's tables map dalign's UNet tensor names to diffusers'
 * (issue 14, item 8). The names on dalign's side must be real: each row's
 * first cell is a module whose tensors are in weights/unet.safetensors
 * (NAME.weight, NAME.bias, ... or NAME itself), and together the rows
 * cover every tensor of the file, so the doc cannot fall behind the
 * model. Skipped only when the shipped weights are absent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dalign.h"

#define DOC "docs/python.md"
#define WEIGHTS "weights/unet.safetensors"
#define MAX_ROWS 256

typedef struct doc_rows {
    int n;
    char dalign[MAX_ROWS][128];
    char diffusers[MAX_ROWS][160];
} doc_rows;

/* the text between the first pair of backticks at or after s into out */
static const char *backticked(const char *s, char *out, size_t cap)
{
    const char *a = strchr(s, '`');
    const char *b = a ? strchr(a + 1, '`') : NULL;
    if (!a || !b || (size_t)(b - a - 1) >= cap) return NULL;
    memcpy(out, a + 1, (size_t)(b - a - 1));
    out[b - a - 1] = '\0';
    return b + 1;
}

/* table rows "| `dalign` | `diffusers` | notes |" */
static void read_rows(doc_rows *r)
{
    FILE *f = fopen(DOC, "r");
    if (!f) fail_msg("cannot open %s", DOC);
    char line[1024];
    r->n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "| `", 3) != 0) continue;
        if (r->n == MAX_ROWS) fail_msg("%s: more than %d table rows", DOC, MAX_ROWS);
        const char *rest = backticked(line, r->dalign[r->n], sizeof r->dalign[0]);
        const char *bar = rest ? strchr(rest, '|') : NULL;
        if (!bar || !backticked(bar, r->diffusers[r->n], sizeof r->diffusers[0]))
            fail_msg("%s: a table row without two names: %s", DOC, line);
        r->n++;
    }
    fclose(f);
}

/* name is the tensor itself or a module holding it */
static int covers(const char *module, const char *tensor)
{
    size_t n = strlen(module);
    return strncmp(tensor, module, n) == 0 && (tensor[n] == '\0' || tensor[n] == '.');
}

static void test_doc_names_exist(void **state)
{
    (void)state;
    if (access(WEIGHTS, R_OK) != 0) skip();
    da_safetensors *st = NULL;
    if (da_st_open(WEIGHTS, &st) != DA_OK) fail_msg("%s: %s", WEIGHTS, da_last_error());
    static doc_rows r;
    read_rows(&r);
    /* both tables: 18 blocks and 22 rows inside a block */
    if (r.n < 30) fail_msg("%s: only %d table rows found", DOC, r.n);
    for (int i = 0; i < r.n; i++) {
        int found = 0;
        for (int k = 0; k < st->n_tensors && !found; k++) found = covers(r.dalign[i], st->tensors[k].name);
        if (!found) fail_msg("%s: '%s' (diffusers '%s') is no tensor or module of %s", DOC, r.dalign[i],
                             r.diffusers[i], WEIGHTS);
        if (strchr(r.diffusers[i], ' ')) fail_msg("%s: diffusers name '%s' has a space", DOC, r.diffusers[i]);
    }
    /* every tensor of the file falls under some row */
    for (int k = 0; k < st->n_tensors; k++) {
        int found = 0;
        for (int i = 0; i < r.n && !found; i++) found = covers(r.dalign[i], st->tensors[k].name);
        if (!found) fail_msg("%s: tensor '%s' of %s is in no row", DOC, st->tensors[k].name, WEIGHTS);
    }
    da_st_close(st);
}

/* the parser sees a name that is not in the file: the check can fail */
static void test_covers(void **state)
{
    (void)state;
    assert_true(covers("down.0.res", "down.0.res.conv1.weight"));
    assert_true(covers("conv_in.weight", "conv_in.weight"));
    assert_false(covers("down.0.re", "down.0.res.conv1.weight"));
    assert_false(covers("up.2.res", "up.0.res.conv1.weight"));
    char out[16];
    assert_null(backticked("| no backticks |", out, sizeof out));
    assert_non_null(backticked("| `mid.res1` | x", out, sizeof out));
    assert_string_equal(out, "mid.res1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_covers),
        cmocka_unit_test(test_doc_names_exist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
