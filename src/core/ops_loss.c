/* Scalar losses: mean squared error and cross-entropy with ignored targets.
 * Sums over many terms run serially in double in a fixed order (one value,
 * so no thread split); per-element and per-row work runs in parallel. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "core/par.h"
#include "dalign/core.h"

/* ---- mse ------------------------------------------------------------------ */

/* out () = mean over n of (a - b)^2 */
static void mse_forward(float *out, const float *a, const float *b, size_t n)
{
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)(a[i] - b[i]);
        acc += d * d;
    }
    out[0] = (float)(acc / (double)n);
}

/* da (n) += 2 (a - b) dout / n; db (n) -= the same. Either may be NULL. */
static void mse_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                         size_t n)
{
    float scale = 2.0f * dout[0] / (float)n;
#pragma omp parallel for schedule(static) DA_PAR_IF(n)
    for (size_t i = 0; i < n; i++) {
        float g = scale * (a[i] - b[i]);
        if (da) da[i] += g;
        if (db) db[i] -= g;
    }
}

static void mse_backward_node(const da_node *nd)
{
    da_tensor *a = nd->in[0], *b = nd->in[1];
    mse_backward(a->grad, b->grad, nd->out->grad, a->data, b->data, a->size);
}

/* a and b of the same shape (b often a constant target) -> scalar */
da_tensor *da_mse(da_tape *t, da_tensor *a, da_tensor *b)
{
    assert(a->size == b->size && a->size > 0);
    da_tensor *in[2] = {a, b};
    da_tensor *out = da_tensor_for_op(t, 0, NULL, in, 2);
    mse_forward(out->data, a->data, b->data, a->size);
    da_node nd = {.backward = mse_backward_node, .out = out, .in = {a, b}};
    da_tape_push(t, &nd);
    return out;
}

/* ---- cross-entropy ------------------------------------------------------- */

/* Fused and stable: loss_n = logsumexp(x_n) - x_n[target_n], with the max
 * subtracted before exp. lse (N) is kept for backward so it can rebuild the
 * softmax without a second pass for the max.
 * loss () = mean over rows whose target != ignore_index; returns that count.
 * With every row ignored the loss is defined as 0 (PyTorch gives NaN): a batch
 * of pure padding should contribute nothing, not poison the parameters. */
static int ce_forward(float *loss, float *lse, const float *logits, const int *targets,
                      int N, int C, int ignore_index)
{
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)N * C)
    for (int n = 0; n < N; n++) {
        if (targets[n] == ignore_index) continue;
        const float *x = logits + (size_t)n * C;
        float m = x[0];
        for (int c = 1; c < C; c++) m = x[c] > m ? x[c] : m;
        double s = 0.0;
        for (int c = 0; c < C; c++) s += (double)da_expf(x[c] - m);
        lse[n] = (float)((double)m + log(s));
    }
    double acc = 0.0;
    int count = 0;
    for (int n = 0; n < N; n++) {
        if (targets[n] == ignore_index) continue;
        acc += (double)lse[n] - (double)logits[(size_t)n * C + targets[n]];
        count++;
    }
    loss[0] = count ? (float)(acc / count) : 0.0f;
    return count;
}

/* dlogits (N, C) += (softmax(x_n) - onehot(target_n)) * dloss / count for the
 * rows that count; ignored rows get no gradient. */
static void ce_backward(float *dlogits, const float *dloss, const float *logits, const float *lse,
                        const int *targets, int N, int C, int ignore_index, int count)
{
    if (count == 0) return;
    float scale = dloss[0] / (float)count;
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)N * C)
    for (int n = 0; n < N; n++) {
        if (targets[n] == ignore_index) continue;
        const float *x = logits + (size_t)n * C;
        float *dx = dlogits + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            float p = da_expf(x[c] - lse[n]);
            dx[c] += (p - (c == targets[n] ? 1.0f : 0.0f)) * scale;
        }
    }
}

static void ce_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad)
        ce_backward(x->grad, nd->out->grad, x->data, nd->saved, nd->saved2,
                    nd->i[0], nd->i[1], nd->i[2], nd->i[3]);
}

/* logits (N, C), targets (N) in [0, C) or ignore_index -> scalar. Targets come
 * from our own tokenizer/data code, so a bad one is a programming error. */
da_tensor *da_cross_entropy(da_tape *t, da_tensor *logits, const int *targets, int ignore_index)
{
    assert(logits->ndim == 2);
    int N = logits->shape[0], C = logits->shape[1];
    assert(C > 0);
    for (int n = 0; n < N; n++)
        assert(targets[n] == ignore_index || (targets[n] >= 0 && targets[n] < C));
    da_tensor *out = da_tensor_for_op(t, 0, NULL, &logits, 1);
    float *lse = da_arena_alloc(&t->arena, (size_t)(N ? N : 1) * sizeof(float));
    int count = ce_forward(out->data, lse, logits->data, targets, N, C, ignore_index);
    if (out->grad) {
        /* the caller may reuse its targets buffer before backward runs */
        int *saved = da_arena_alloc(&t->arena, (size_t)(N ? N : 1) * sizeof(int));
        if (N) memcpy(saved, targets, (size_t)N * sizeof(int));
        da_node nd = {.backward = ce_backward_node, .out = out, .in = {logits},
                      .i = {N, C, ignore_index, count}, .saved = lse, .saved2 = saved};
        da_tape_push(t, &nd);
    }
    return out;
}
