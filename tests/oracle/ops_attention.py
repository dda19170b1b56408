"""Reference outputs and gradients for softmax, log_softmax and multi-head
scaled dot-product attention. Attention is written out with plain torch ops
(torch 1.13 has no F.scaled_dot_product_attention) and differentiated by
autograd. Writes tests/oracle/ops_attention.safetensors (run by `make oracle`)."""
import math

import torch

from st import Cases


def attention(q, k, v, heads, causal=False, keep=None):
    """q (B, Tq, D), k/v (B, Tk, D); head h = columns h*hd..(h+1)*hd-1, as in
    nn.MultiheadAttention before out_proj. keep (B, Tk): 0 masks a key."""
    B, Tq, D = q.shape
    Tk = k.shape[1]
    hd = D // heads
    qh = q.reshape(B, Tq, heads, hd).transpose(1, 2)  # (B, H, Tq, hd)
    kh = k.reshape(B, Tk, heads, hd).transpose(1, 2)
    vh = v.reshape(B, Tk, heads, hd).transpose(1, 2)
    s = qh @ kh.transpose(-2, -1) / math.sqrt(hd)     # (B, H, Tq, Tk)
    if causal:
        s = s.masked_fill(torch.ones(Tq, Tk, dtype=torch.bool).triu(1), float("-inf"))
    if keep is not None:
        s = s.masked_fill(~keep.bool()[:, None, None, :], float("-inf"))
    o = s.softmax(-1) @ vh                             # (B, H, Tq, hd)
    return o.transpose(1, 2).reshape(B, Tq, D)


c = Cases(seed=0)
c.case("softmax", lambda x: x.softmax(-1), x=torch.randn(2, 3, 7) * 2)
c.case("log_softmax", lambda x: x.log_softmax(-1), x=torch.randn(2, 3, 7) * 2)
# offsets of +-100: exp would overflow/underflow in f32 without the max shift
big = torch.randn(4, 6) * 3 + torch.tensor([[100.0], [-100.0], [0.0], [88.0]])
c.case("softmax_big", lambda x: x.softmax(-1), x=big)
c.case("log_softmax_big", lambda x: x.log_softmax(-1), x=big)

c.case("attn_self", lambda q, k, v: attention(q, k, v, 2),
       q=torch.randn(2, 5, 8), k=torch.randn(2, 5, 8), v=torch.randn(2, 5, 8))
c.case("attn_causal", lambda q, k, v: attention(q, k, v, 2, causal=True),
       q=torch.randn(2, 5, 8), k=torch.randn(2, 5, 8), v=torch.randn(2, 5, 8))
c.case("attn_cross", lambda q, k, v: attention(q, k, v, 2),
       q=torch.randn(2, 4, 8), k=torch.randn(2, 6, 8), v=torch.randn(2, 6, 8))
# padding: the mask is stored as f32 0/1 (no gradient); no row is fully masked
c.case("attn_pad", lambda q, k, v, keep: attention(q, k, v, 2, keep=keep), no_grad=("keep",),
       q=torch.randn(2, 4, 8), k=torch.randn(2, 6, 8), v=torch.randn(2, 6, 8),
       keep=torch.tensor([[1, 1, 1, 1, 0, 0], [1, 0, 1, 1, 1, 0]], dtype=torch.float32))
# causal + padding: key 0 is kept, so every query row still sees a key
c.case("attn_causal_pad", lambda q, k, v, keep: attention(q, k, v, 2, True, keep),
       no_grad=("keep",), q=torch.randn(2, 5, 8), k=torch.randn(2, 5, 8), v=torch.randn(2, 5, 8),
       keep=torch.tensor([[1, 1, 0, 1, 1], [1, 0, 1, 1, 0]], dtype=torch.float32))
c.case("attn_h1", lambda q, k, v: attention(q, k, v, 1),
       q=torch.randn(2, 5, 8), k=torch.randn(2, 5, 8), v=torch.randn(2, 5, 8))
c.save(__file__, "ops_attention")
