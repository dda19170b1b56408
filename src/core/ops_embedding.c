/* Embedding lookup: rows of a (V, D) table gathered by integer ids.
 * Backward scatters rows back; ids may repeat, so the scatter is split over
 * column blocks (never over ids) and each table element sums its
 * contributions in id order: bit-identical for any thread count. */
#include <assert.h>
#include <string.h>

#include "core/par.h"
#include "dalign/core.h"

/* columns per parallel work item: 16 floats = one 64-byte cache line, so
 * two threads never write the same line of dtable */
#define EMB_COL_BLOCK 16

/* out (n, D) = table (V, D)[ids (n)] */
void da_embedding_forward(float *out, const float *table, const int *ids, int n, int D)
{
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)n * D)
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * D, table + (size_t)ids[i] * D, (size_t)D * sizeof(float));
}

/* dtable (V, D) [ids[i]] += dout (n, D) [i], i in increasing order per element */
void da_embedding_backward(float *dtable, const float *dout, const int *ids, int n, int D, int V)
{
    (void)V; /* only for the range checks below */
    for (int i = 0; i < n; i++) assert(ids[i] >= 0 && ids[i] < V);
    int n_blocks = (D + EMB_COL_BLOCK - 1) / EMB_COL_BLOCK;
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)n * D)
    for (int b = 0; b < n_blocks; b++) {
        int d0 = b * EMB_COL_BLOCK;
        int d1 = d0 + EMB_COL_BLOCK < D ? d0 + EMB_COL_BLOCK : D;
        for (int i = 0; i < n; i++) {
            float *row = dtable + (size_t)ids[i] * D;
            const float *g = dout + (size_t)i * D;
            for (int d = d0; d < d1; d++) row[d] += g[d];
        }
    }
}

static void embedding_backward_node(const da_node *nd)
{
    da_tensor *table = nd->in[0];
    if (table->grad)
        da_embedding_backward(table->grad, nd->out->grad, nd->saved, nd->i[0], nd->i[1], nd->i[2]);
}

/* table (V, D), ids (B, T) -> (B, T, D). ids must lie in [0, V): the
 * tokenizer validates user text, so a bad id here is a programming error. */
da_tensor *da_embedding(da_tape *t, da_tensor *table, const int *ids, int B, int T)
{
    assert(table->ndim == 2 && B >= 0 && T >= 0);
    int V = table->shape[0], D = table->shape[1], n = B * T;
    for (int i = 0; i < n; i++) assert(ids[i] >= 0 && ids[i] < V);
    int shape[3] = {B, T, D};
    da_tensor *out = da_tensor_for_op(t, 3, shape, &table, 1);
    da_embedding_forward(out->data, table->data, ids, n, D);
    if (out->grad) {
        /* the caller may reuse its ids buffer before backward runs */
        int *saved = da_arena_alloc(&t->arena, (size_t)(n ? n : 1) * sizeof(int));
        if (n) memcpy(saved, ids, (size_t)n * sizeof(int));
        da_node nd = {.backward = embedding_backward_node, .out = out, .in = {table},
                      .i = {n, D, V}, .saved = saved};
        da_tape_push(t, &nd);
    }
    return out;
}
