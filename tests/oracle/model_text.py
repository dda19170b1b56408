"""Parity reference for the text encoder (src/models/text_encoder.c), reduced
config: V 20, context 24, d 32, 2 layers, 4 heads, MLP 4d, projection 16.
Writes tests/oracle/model_text_weights.safetensors (the state_dict) and
tests/oracle/model_text.safetensors: the batch (ids, keep, eos as F32), the
outputs `features` (B, T, d) and `pooled` (B, proj), the upstream gradients
r_features, r_pooled and grad.<param> of
loss = sum(features * r_features) + sum(pooled * r_pooled).

The modules take dalign's da_text_config (TextEncoder(**cfg) with the keys
of text_encoder.json), so sample_parity.py imports them; the reference files
are written only when the script runs (`make oracle`)."""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from st import save

# Reduced config of the parity test (tests/test_model_text.c keeps the same).
TEST_CONFIG = dict(vocab_size=20, context=24, d_model=32, n_layers=2, n_heads=4, mlp_ratio=4, proj_dim=16)
PAD, BOS, EOS = 0, 1, 2


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, keep):
        B, T, D = x.shape
        hd = D // self.heads
        q, k, v = (p(x).view(B, T, self.heads, hd).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        s = q @ k.transpose(-1, -2) / math.sqrt(hd)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        visible = causal[None, None] & keep[:, None, None, :].bool()
        # dalign gives a query with no visible key an all-zero row (never happens
        # here: BOS at position 0 is visible to every query)
        p = torch.softmax(s.masked_fill(~visible, float("-inf")), dim=-1).nan_to_num(0.0)
        return self.out_proj((p @ v).transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, d, ratio):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, ratio * d), nn.Linear(ratio * d, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Layer(nn.Module):
    def __init__(self, d, heads, ratio):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d), Attention(d, heads)
        self.ln2, self.mlp = nn.LayerNorm(d), MLP(d, ratio)

    def forward(self, x, keep):
        x = x + self.attn(self.ln1(x), keep)
        return x + self.mlp(self.ln2(x))


class TextEncoder(nn.Module):
    """dalign's text encoder; the keyword arguments are da_text_config's fields."""

    def __init__(self, vocab_size=64, context=24, d_model=128, n_layers=3, n_heads=4, mlp_ratio=4, proj_dim=128):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(context, d_model)
        self.layers = nn.ModuleList([Layer(d_model, n_heads, mlp_ratio) for _ in range(n_layers)])
        self.final_ln = nn.LayerNorm(d_model)
        self.text_projection = nn.Linear(d_model, proj_dim, bias=False)

    def features(self, ids, keep):
        """ids (B, T) long, keep (B, T) 0/1 -> token features (B, T, d) after final_ln"""
        T = ids.shape[1]
        x = self.token_embedding(ids) + self.position_embedding.weight[:T]
        for layer in self.layers:
            x = layer(x, keep)
        return self.final_ln(x)

    def forward(self, ids, keep, eos):
        feats = self.features(ids, keep)
        pooled = self.text_projection(feats[torch.arange(ids.shape[0]), eos])
        return feats, pooled


def main():
    torch.manual_seed(0)
    m = TextEncoder(**TEST_CONFIG)
    with torch.no_grad():  # non-trivial layernorm affines so their gradients are tested
        for name, p in m.named_parameters():
            if ".ln" in name or name.startswith("final_ln"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))

    # three rows: full context, a short caption, BOS EOS only
    V, CTX = TEST_CONFIG["vocab_size"], TEST_CONFIG["context"]
    lengths = [CTX, 7, 2]
    B = len(lengths)
    ids = torch.full((B, CTX), PAD, dtype=torch.long)
    keep = torch.zeros(B, CTX)
    for b, n in enumerate(lengths):
        ids[b, 0], ids[b, n - 1] = BOS, EOS
        ids[b, 1:n - 1] = torch.randint(3, V, (n - 2,))
        keep[b, :n] = 1
    eos = torch.tensor([n - 1 for n in lengths])

    feats, pooled = m(ids, keep, eos)
    r_features, r_pooled = torch.randn_like(feats), torch.randn_like(pooled)
    ((feats * r_features).sum() + (pooled * r_pooled).sum()).backward()

    here = os.path.dirname(os.path.abspath(__file__))
    save(os.path.join(here, "model_text_weights.safetensors"), {k: v for k, v in m.state_dict().items()})
    out = {"ids": ids.float(), "keep": keep, "eos": eos.float(), "features": feats, "pooled": pooled,
           "r_features": r_features, "r_pooled": r_pooled}
    for name, p in m.named_parameters():
        out["grad." + name] = p.grad
    save(os.path.join(here, "model_text.safetensors"), out)


if __name__ == "__main__":
    main()
