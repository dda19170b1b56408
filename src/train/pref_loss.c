/* The preference losses of Diffusion-DPO, SFT, Diffusion-RPO and
 * Diffusion-KTO over per-sample eps-MSEs (docs/alignment-preference.md has
 * the derivations and the file:function map).
 *
 * Every loss here is a function of per-sample MSEs only:
 *   m = mean_CHW (eps - eps_theta(x_t, t, c))^2     the policy's, with gradient
 *   r = mean_CHW (eps - eps_ref(x_t, t, c))^2       the frozen reference's
 * so each loss is one forward/backward pair over float arrays that returns
 * the loss and d loss / d m; pref_mse_* connect m to the UNet's output
 * (src/train/pref.c records that as one tape node).
 *
 * Arithmetic: float values, sums in double in index order, exp/log from
 * src/core/mathf.c (the same bits on every machine). DPO and RPO are
 * written from the same expressions so that RPO with one pair gives DPO's
 * bits exactly (tests/test_pref.c). */
#include <math.h>
#include <string.h>

#include "train/pref.h"

/* log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)): no overflow either side */
static float log_sigmoid(float x) { return fminf(x, 0.0f) - da_log1pf(da_expf(-fabsf(x))); }

/* sigmoid(x), without overflow for large |x| */
static float sigmoid(float x)
{
    if (x >= 0.0f) return 1.0f / (1.0f + da_expf(-x));
    float e = da_expf(x);
    return e / (1.0f + e);
}

/* ------------------------------------------------------------------------ */
/* Per-sample MSE                                                           */
/* ------------------------------------------------------------------------ */

/* m (B) = mean over n values of (pred - eps)^2, per sample */
void pref_mse_forward(float *m, const float *pred, const float *eps, int B, size_t n)
{
    for (int b = 0; b < B; b++) {
        const float *p = pred + (size_t)b * n, *e = eps + (size_t)b * n;
        double s = 0.0;
        for (size_t k = 0; k < n; k++) {
            double d = (double)p[k] - (double)e[k];
            s += d * d;
        }
        m[b] = (float)(s / (double)n);
    }
}

/* dpred (B, n) += dm[b] * 2 (pred - eps) / n */
void pref_mse_backward(float *dpred, const float *dm, const float *pred, const float *eps, int B, size_t n)
{
    for (int b = 0; b < B; b++) {
        float g = dm[b] * 2.0f / (float)n;
        const float *p = pred + (size_t)b * n, *e = eps + (size_t)b * n;
        float *d = dpred + (size_t)b * n;
        for (size_t k = 0; k < n; k++) d[k] += g * (p[k] - e[k]);
    }
}

/* ------------------------------------------------------------------------ */
/* Diffusion-DPO (Wallace et al. 2023)                                      */
/* ------------------------------------------------------------------------ */

/* The pair shares eps and t. With d_w = m_w - r_w and d_l = m_l - r_l (how
 * much worse than the reference the policy denoises each image):
 *   inside_i = -(beta/2) (d_w,i - d_l,i)
 *   L        = -1/B sum_i log sigmoid(inside_i)
 * (= the paper's -(beta/2)((m_w - m_l) - (r_w - r_l)), written in the order
 * RPO uses). At policy == reference inside = 0 and L = log 2 exactly. */
float pref_dpo_loss(const float *m_w, const float *m_l, const float *r_w, const float *r_l, int B, float beta,
                    float *dm_w, float *dm_l, pref_stats *st)
{
    double sum = 0.0;
    for (int i = 0; i < B; i++) {
        float inside = -(beta / 2.0f) * ((m_w[i] - r_w[i]) - (m_l[i] - r_l[i]));
        sum += -(double)log_sigmoid(inside);
        float g = -(1.0f / (float)B) * sigmoid(-inside);   /* dL / d inside_i */
        /* 0 + ...: as RPO's sums over j, which start at 0 (a -0 becomes +0) */
        if (dm_w) dm_w[i] = 0.0f + g * -(beta / 2.0f);
        if (dm_l) dm_l[i] = 0.0f + g * (beta / 2.0f);
        if (st) pref_stats_add_margin(st, inside);
    }
    return (float)(sum / (double)B);
}

/* ------------------------------------------------------------------------ */
/* SFT: eps-MSE on the preferred image only                                 */
/* ------------------------------------------------------------------------ */

/* L = 1/B sum_i m_w,i; no reference, the loser is not used */
float pref_sft_loss(const float *m_w, int B, float *dm_w)
{
    double sum = 0.0;
    for (int i = 0; i < B; i++) {
        sum += m_w[i];
        if (dm_w) dm_w[i] = 1.0f / (float)B;
    }
    return (float)(sum / (double)B);
}

/* ------------------------------------------------------------------------ */
/* Diffusion-RPO (Gu et al. 2024)                                           */
/* ------------------------------------------------------------------------ */

/* w (B, B) = softmax_j(-(1 - cos(e_i, e_j)) / tau), e_w rows of winners i,
 * e_l rows of losers j, both (B, E) and unit length. */
void pref_rpo_weights(float *w, const float *e_w, const float *e_l, int B, int E, float tau)
{
    for (int i = 0; i < B; i++) {
        float *row = w + (size_t)i * B;
        for (int j = 0; j < B; j++) {
            double dot = 0.0;
            for (int k = 0; k < E; k++) dot += (double)e_w[(size_t)i * E + k] * (double)e_l[(size_t)j * E + k];
            row[j] = -(1.0f - (float)dot) / tau;
        }
        float mx = row[0];
        for (int j = 1; j < B; j++) mx = fmaxf(mx, row[j]);
        double z = 0.0;
        for (int j = 0; j < B; j++) {
            row[j] = da_expf(row[j] - mx);
            z += row[j];
        }
        for (int j = 0; j < B; j++) row[j] = (float)(row[j] / z);
    }
}

/* Every preferred i against every dispreferred j of the batch:
 *   logit_ij = -(beta/2) (d_w,i - d_l,j)
 *   inside  (the LLM-RPO code): L = 1/B sum_i 1/B sum_j -log sigmoid(w_ij logit_ij)
 *   outside (the other reading): L = 1/B sum_i sum_j -w_ij log sigmoid(logit_ij)
 * Rows of w sum to 1, so "outside" is a w-weighted mean over j. With B = 1,
 * w = 1 and both equal DPO bit for bit. */
float pref_rpo_loss(const float *m_w, const float *m_l, const float *r_w, const float *r_l, const float *w, int B,
                    float beta, int weight_outside, float *dm_w, float *dm_l, pref_stats *st)
{
    if (dm_w) memset(dm_w, 0, (size_t)B * sizeof(float));
    if (dm_l) memset(dm_l, 0, (size_t)B * sizeof(float));
    double sum = 0.0;
    for (int i = 0; i < B; i++) {
        double row = 0.0;
        for (int j = 0; j < B; j++) {
            float wij = w[(size_t)i * B + j];
            float logit = -(beta / 2.0f) * ((m_w[i] - r_w[i]) - (m_l[j] - r_l[j]));
            float g;   /* dL / d logit_ij */
            if (weight_outside) {
                row += -(double)(wij * log_sigmoid(logit));
                g = -(1.0f / (float)B) * (wij * sigmoid(-logit));
            } else {
                row += -(double)log_sigmoid(wij * logit);
                g = -(1.0f / (float)B) * (wij * sigmoid(-(wij * logit))) / (float)B;
            }
            if (dm_w) dm_w[i] += g * -(beta / 2.0f);
            if (dm_l) dm_l[j] += g * (beta / 2.0f);
            if (st && i == j) pref_stats_add_margin(st, logit);
        }
        sum += weight_outside ? row : row / (double)B;
    }
    return (float)(sum / (double)B);
}

/* Mean off-diagonal weight and mean row entropy (nats) of w (B, B): how
 * much the loss looks across pairs (0 and 0 for B = 1). */
void pref_rpo_weight_stats(const float *w, int B, float *off_diag, float *entropy)
{
    double off = 0.0, ent = 0.0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            float x = w[(size_t)i * B + j];
            if (i != j) off += x;
            if (x > 0.0f) ent -= (double)x * (double)da_logf(x);
        }
    *off_diag = B > 1 ? (float)(off / ((double)B * (B - 1))) : 0.0f;
    *entropy = (float)(ent / (double)B);
}

/* ------------------------------------------------------------------------ */
/* Diffusion-KTO (Li et al. 2024)                                           */
/* ------------------------------------------------------------------------ */

/* N unpaired examples, y_k = +1 (liked: a pair's winner) or -1 (disliked:
 * a loser), each with its own noise and t:
 *   g_k = r_k - m_k                 how much better than the reference
 *   z   = 1/N sum_k g_k             detached (a constant for the gradient)
 *   h_k = sigmoid(y_k beta (g_k - z))
 *   L   = 1/N sum_k (1 - h_k)
 * At policy == reference g = z = 0, h = 1/2 and L = 1/2 exactly. */
float pref_kto_loss(const float *m, const float *r, const float *y, int N, float beta, float *dm, pref_stats *st)
{
    double zs = 0.0;
    for (int k = 0; k < N; k++) zs += r[k] - m[k];
    float z = (float)(zs / (double)N);
    double sum = 0.0;
    for (int k = 0; k < N; k++) {
        float u = y[k] * beta * ((r[k] - m[k]) - z);
        float h = sigmoid(u);
        sum += 1.0 - (double)h;
        /* dL/dm_k = -1/N h (1 - h) y beta dg/dm, dg/dm = -1 */
        if (dm) dm[k] = (1.0f / (float)N) * (h * (1.0f - h)) * (y[k] * beta);
        if (st) pref_stats_add_margin(st, u);
    }
    return (float)(sum / (double)N);
}

/* ------------------------------------------------------------------------ */
/* The tape node                                                            */
/* ------------------------------------------------------------------------ */

/* the method's loss of (m, r) and dL/dm into a->dm */
static float method_loss(pref_loss_args *a)
{
    const int B = a->B;
    const float *m = a->m, *r = a->r;
    float *dm = a->dm;
    switch (a->method) {
    case DA_PREF_DPO: return pref_dpo_loss(m, m + B, r, r + B, B, a->beta, dm, dm + B, &a->st);
    case DA_PREF_SFT:
        memset(dm + B, 0, (size_t)B * sizeof(float));   /* the loser is not in the loss */
        pref_dpo_loss(m, m + B, r, r + B, B, a->beta, NULL, NULL, &a->st);   /* DPO's margins, logged */
        return pref_sft_loss(m, B, dm);
    case DA_PREF_RPO: return pref_rpo_loss(m, m + B, r, r + B, a->w, B, a->beta, a->weight_outside, dm, dm + B, &a->st);
    case DA_PREF_KTO: return pref_kto_loss(m, r, a->y, 2 * B, a->beta, dm, &a->st);
    }
    return NAN;
}

static void pref_loss_backward(const da_node *nd)
{
    const pref_loss_args *a = nd->saved;
    da_tensor *pred = nd->in[0];
    if (!pred->grad) return;
    const int N = 2 * a->B;
    float *g = nd->saved2;   /* (N) dL/dm times the upstream gradient */
    for (int k = 0; k < N; k++) g[k] = a->dm[k] * nd->out->grad[0];
    pref_mse_backward(pred->grad, g, pred->data, a->eps, N, a->n);
}

da_tensor *pref_loss_node(da_tape *t, da_tensor *pred, pref_loss_args *a)
{
    const int N = 2 * a->B;
    memset(&a->st, 0, sizeof a->st);
    pref_mse_forward(a->m, pred->data, a->eps, N, a->n);
    da_tensor *out = da_tensor_for_op(t, 0, NULL, &pred, 1);
    out->data[0] = method_loss(a);
    da_node nd = {.backward = pref_loss_backward, .out = out, .in = {pred},
                  .saved = a, .saved2 = da_arena_alloc(&t->arena, (size_t)N * sizeof(float))};
    da_tape_push(t, &nd);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Health statistics                                                        */
/* ------------------------------------------------------------------------ */

void pref_stats_add_margin(pref_stats *st, float margin)
{
    st->margin_sum += margin;
    st->correct += margin > 0.0f;
    st->n++;
}
