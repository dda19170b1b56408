/* Convolution family: conv2d (im2col + GEMM), nearest upsample x2 and 2x2
 * average-pool downsample. Forward/backward kernel pairs over float*, then
 * the tape wrappers.
 *
 * conv2d runs one image at a time: the column matrix col (C*k*k, OH*OW) holds
 * every input patch as a column, so the convolution is one GEMM
 * out_n (O, OH*OW) = W (O, C*k*k) @ col. Backward reuses the same buffer:
 * first col = im2col(inp_n) for dW, then dcol = W^T @ dout_n, scattered back
 * into dinp_n (col2im). All GEMMs run outside OpenMP regions. */
#include <assert.h>
#include <string.h>

#include "dalign.h"

static int conv_out_size(int H, int k, int stride, int pad) { return (H + 2 * pad - k) / stride + 1; }

/* 1x1, stride 1, no padding: the input image already is its column matrix */
static int conv_is_pointwise(int k, int stride, int pad) { return k == 1 && stride == 1 && pad == 0; }

size_t da_conv2d_col_size(int C, int H, int W, int k, int stride, int pad)
{
    if (conv_is_pointwise(k, stride, pad)) return 0;
    size_t OH = (size_t)conv_out_size(H, k, stride, pad), OW = (size_t)conv_out_size(W, k, stride, pad);
    return (size_t)C * k * k * OH * OW;
}

/* Output positions o in [0, n_out) whose input index o*stride + off falls in
 * [0, size) form one range [*lo, *hi): everything outside it reads padding. */
static void valid_range(int off, int stride, int size, int n_out, int *lo, int *hi)
{
    int l = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int h = size - 1 - off >= 0 ? (size - 1 - off) / stride + 1 : 0;
    if (h > n_out) h = n_out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* col (C*k*k, OH*OW) <- patches of one image inp (C, H, W); row (c, ki, kj) */
static void im2col(float *col, const float *inp, int C, int H, int W, int k, int stride, int pad,
                   int OH, int OW)
{
    /* each channel fills its own k*k rows: independent outputs */
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float *plane = inp + (size_t)c * H * W;
        for (int ki = 0; ki < k; ki++) {
            int rlo, rhi;
            valid_range(ki - pad, stride, H, OH, &rlo, &rhi);
            for (int kj = 0; kj < k; kj++) {
                float *row = col + ((size_t)(c * k + ki) * k + kj) * OH * OW;
                int lo, hi;
                valid_range(kj - pad, stride, W, OW, &lo, &hi);
                for (int oh = 0; oh < OH; oh++) {
                    float *dst = row + (size_t)oh * OW;
                    if (oh < rlo || oh >= rhi) {
                        memset(dst, 0, (size_t)OW * sizeof(float));
                        continue;
                    }
                    /* input column of ow is ow*stride + kj - pad, >= 0 inside [lo, hi) */
                    const float *src = plane + (size_t)(oh * stride + ki - pad) * W;
                    for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                    if (stride == 1) {
                        memcpy(dst + lo, src + lo + kj - pad, (size_t)(hi - lo) * sizeof(float));
                    } else {
                        for (int ow = lo; ow < hi; ow++) dst[ow] = src[ow * stride + kj - pad];
                    }
                    for (int ow = hi; ow < OW; ow++) dst[ow] = 0.0f;
                }
            }
        }
    }
}

/* dinp (C, H, W) += scatter of dcol (C*k*k, OH*OW), the transpose of im2col */
static void col2im_add(float *dinp, const float *dcol, int C, int H, int W, int k, int stride, int pad,
                       int OH, int OW)
{
    /* a channel's rows only touch its own plane, so threads split over c and
     * each dinp element sums its terms in the fixed (ki, kj, oh, ow) order */
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float *plane = dinp + (size_t)c * H * W;
        for (int ki = 0; ki < k; ki++) {
            int rlo, rhi;
            valid_range(ki - pad, stride, H, OH, &rlo, &rhi);
            for (int kj = 0; kj < k; kj++) {
                const float *row = dcol + ((size_t)(c * k + ki) * k + kj) * OH * OW;
                int lo, hi;
                valid_range(kj - pad, stride, W, OW, &lo, &hi);
                for (int oh = rlo; oh < rhi; oh++) {
                    const float *src = row + (size_t)oh * OW;
                    float *dst = plane + (size_t)(oh * stride + ki - pad) * W;
                    for (int ow = lo; ow < hi; ow++) dst[ow * stride + kj - pad] += src[ow];
                }
            }
        }
    }
}

/* out (N, O, OH, OW) = inp (N, C, H, W) * weight (O, C, k, k) + bias (O);
 * col: scratch (C*k*k, OH*OW), unused for pointwise convolutions */
void da_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                       float *col, int N, int C, int H, int W, int O, int k, int stride, int pad)
{
    int OH = conv_out_size(H, k, stride, pad), OW = conv_out_size(W, k, stride, pad);
    assert(OH > 0 && OW > 0 && stride > 0 && pad >= 0);
    int pointwise = conv_is_pointwise(k, stride, pad);
    assert(pointwise || col);
    int K = C * k * k, P = OH * OW;
    for (int n = 0; n < N; n++) {
        const float *inp_n = inp + (size_t)n * C * H * W;
        float *out_n = out + (size_t)n * O * P;
        if (bias) {
            /* start from the bias and let the GEMM accumulate onto it */
            for (int o = 0; o < O; o++)
                for (int p = 0; p < P; p++) out_n[(size_t)o * P + p] = bias[o];
        }
        const float *cols = inp_n;
        if (!pointwise) {
            im2col(col, inp_n, C, H, W, k, stride, pad, OH, OW);
            cols = col;
        }
        da_gemm(0, 0, O, P, K, 1.0f, weight, K, cols, P, bias ? 1.0f : 0.0f, out_n, P);
    }
}

/* dinp (N, C, H, W) += conv_transpose(dout, weight); dweight (O, C, k, k) +=
 * sum_n dout_n @ col_n^T; dbias (O) += sum over n, oh, ow of dout.
 * dout (N, O, OH, OW); col: scratch as in forward. NULL gradients are skipped. */
void da_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, float *col,
                        int N, int C, int H, int W, int O, int k, int stride, int pad)
{
    int OH = conv_out_size(H, k, stride, pad), OW = conv_out_size(W, k, stride, pad);
    assert(OH > 0 && OW > 0 && stride > 0 && pad >= 0);
    int pointwise = conv_is_pointwise(k, stride, pad);
    assert(pointwise || col || (!dinp && !dweight));
    int K = C * k * k, P = OH * OW;
    if (dbias) {
        /* one thread per output channel, summed over n then position: fixed order */
#pragma omp parallel for schedule(static)
        for (int o = 0; o < O; o++) {
            float acc = 0.0f;
            for (int n = 0; n < N; n++) {
                const float *d = dout + ((size_t)n * O + o) * P;
                for (int p = 0; p < P; p++) acc += d[p];
            }
            dbias[o] += acc;
        }
    }
    /* images in order 0..N-1, so dweight's accumulation order is fixed */
    for (int n = 0; n < N; n++) {
        const float *inp_n = inp + (size_t)n * C * H * W;
        const float *dout_n = dout + (size_t)n * O * P;
        float *dinp_n = dinp ? dinp + (size_t)n * C * H * W : NULL;
        if (pointwise) {
            if (dweight) da_gemm(0, 1, O, C, P, 1.0f, dout_n, P, inp_n, P, 1.0f, dweight, C);
            if (dinp_n) da_gemm(1, 0, C, P, O, 1.0f, weight, C, dout_n, P, 1.0f, dinp_n, P);
            continue;
        }
        if (dweight) {
            im2col(col, inp_n, C, H, W, k, stride, pad, OH, OW);
            da_gemm(0, 1, O, K, P, 1.0f, dout_n, P, col, P, 1.0f, dweight, K);
        }
        if (dinp_n) {
            /* col is free again: reuse it for dcol (C*k*k, OH*OW) = W^T @ dout_n */
            da_gemm(1, 0, K, P, O, 1.0f, weight, K, dout_n, P, 0.0f, col, P);
            col2im_add(dinp_n, col, C, H, W, k, stride, pad, OH, OW);
        }
    }
}

static void conv2d_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
    const int *i = nd->i;
    da_conv2d_backward(x->grad, w->grad, b ? b->grad : NULL, nd->out->grad, x->data, w->data,
                       nd->saved, i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7]);
}

/* x (N, C, H, W), w (O, C, k, k), b (O) or NULL -> (N, O, OH, OW) */
da_tensor *da_conv2d(da_tape *t, da_tensor *x, da_tensor *w, da_tensor *b, int stride, int pad)
{
    assert(x->ndim == 4 && w->ndim == 4);
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int O = w->shape[0], k = w->shape[2];
    assert(w->shape[1] == C && w->shape[3] == k && (!b || (int)b->size == O));
    assert(stride >= 1 && pad >= 0 && H + 2 * pad >= k && W + 2 * pad >= k);
    int shape[4] = {N, O, conv_out_size(H, k, stride, pad), conv_out_size(W, k, stride, pad)};
    da_tensor *in[3] = {x, w, b};
    da_tensor *out = da_tensor_for_op(t, 4, shape, in, 3);
    /* the scratch lives until the tape is reset, so backward reuses it */
    size_t ncol = da_conv2d_col_size(C, H, W, k, stride, pad);
    float *col = ncol ? da_arena_alloc(&t->arena, ncol * sizeof(float)) : NULL;
    da_conv2d_forward(out->data, x->data, w->data, b ? b->data : NULL, col, N, C, H, W, O, k, stride, pad);
    da_node nd = {.backward = conv2d_backward_node, .out = out, .in = {x, w, b},
                  .i = {N, C, H, W, O, k, stride, pad}, .saved = col};
    da_tape_push(t, &nd);
    return out;
}

/* out (N, C, 2H, 2W): out[.., y, x] = inp[.., y/2, x/2] */
void da_upsample2x_forward(float *out, const float *inp, int N, int C, int H, int W)
{
    int OW = 2 * W;
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < N * C; nc++) {
        const float *src = inp + (size_t)nc * H * W;
        float *dst = out + (size_t)nc * 4 * H * W;
        for (int y = 0; y < H; y++) {
            float *r0 = dst + (size_t)(2 * y) * OW;
            for (int x = 0; x < W; x++) r0[2 * x] = r0[2 * x + 1] = src[(size_t)y * W + x];
            memcpy(r0 + OW, r0, (size_t)OW * sizeof(float));
        }
    }
}

/* dinp (N, C, H, W) += sum of the 2x2 children in dout (N, C, 2H, 2W) */
void da_upsample2x_backward(float *dinp, const float *dout, int N, int C, int H, int W)
{
    int OW = 2 * W;
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < N * C; nc++) {
        float *dst = dinp + (size_t)nc * H * W;
        const float *src = dout + (size_t)nc * 4 * H * W;
        for (int y = 0; y < H; y++) {
            const float *r0 = src + (size_t)(2 * y) * OW, *r1 = r0 + OW;
            for (int x = 0; x < W; x++)
                dst[(size_t)y * W + x] += r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1];
        }
    }
}

static void upsample2x_backward_node(const da_node *nd)
{
    const int *i = nd->i;
    da_upsample2x_backward(nd->in[0]->grad, nd->out->grad, i[0], i[1], i[2], i[3]);
}

/* x (N, C, H, W) -> (N, C, 2H, 2W) */
da_tensor *da_upsample2x(da_tape *t, da_tensor *x)
{
    assert(x->ndim == 4);
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int shape[4] = {N, C, 2 * H, 2 * W};
    da_tensor *out = da_tensor_for_op(t, 4, shape, &x, 1);
    da_upsample2x_forward(out->data, x->data, N, C, H, W);
    da_node nd = {.backward = upsample2x_backward_node, .out = out, .in = {x}, .i = {N, C, H, W}};
    da_tape_push(t, &nd);
    return out;
}

/* out (N, C, H/2, W/2) = mean of each 2x2 block of inp (N, C, H, W) */
void da_downsample2x_forward(float *out, const float *inp, int N, int C, int H, int W)
{
    assert(H % 2 == 0 && W % 2 == 0);
    int OH = H / 2, OW = W / 2;
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < N * C; nc++) {
        const float *src = inp + (size_t)nc * H * W;
        float *dst = out + (size_t)nc * OH * OW;
        for (int y = 0; y < OH; y++) {
            const float *r0 = src + (size_t)(2 * y) * W, *r1 = r0 + W;
            for (int x = 0; x < OW; x++)
                dst[(size_t)y * OW + x] = (r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1]) * 0.25f;
        }
    }
}

/* dinp (N, C, H, W) += dout (N, C, H/2, W/2) / 4 spread over each 2x2 block */
void da_downsample2x_backward(float *dinp, const float *dout, int N, int C, int H, int W)
{
    assert(H % 2 == 0 && W % 2 == 0);
    int OH = H / 2, OW = W / 2;
#pragma omp parallel for schedule(static)
    for (int nc = 0; nc < N * C; nc++) {
        float *dst = dinp + (size_t)nc * H * W;
        const float *src = dout + (size_t)nc * OH * OW;
        for (int y = 0; y < OH; y++) {
            float *r0 = dst + (size_t)(2 * y) * W, *r1 = r0 + W;
            for (int x = 0; x < OW; x++) {
                float g = src[(size_t)y * OW + x] * 0.25f;
                r0[2 * x] += g;
                r0[2 * x + 1] += g;
                r1[2 * x] += g;
                r1[2 * x + 1] += g;
            }
        }
    }
}

static void downsample2x_backward_node(const da_node *nd)
{
    const int *i = nd->i;
    da_downsample2x_backward(nd->in[0]->grad, nd->out->grad, i[0], i[1], i[2], i[3]);
}

/* x (N, C, H, W) -> (N, C, H/2, W/2); H and W even (asserted: model code
 * only downsamples even sizes, an odd one is a bug in the model) */
da_tensor *da_downsample2x(da_tape *t, da_tensor *x)
{
    assert(x->ndim == 4);
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    assert(H % 2 == 0 && W % 2 == 0);
    int shape[4] = {N, C, H / 2, W / 2};
    da_tensor *out = da_tensor_for_op(t, 4, shape, &x, 1);
    da_downsample2x_forward(out->data, x->data, N, C, H, W);
    da_node nd = {.backward = downsample2x_backward_node, .out = out, .in = {x}, .i = {N, C, H, W}};
    da_tape_push(t, &nd);
    return out;
}
