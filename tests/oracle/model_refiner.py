"""Parity reference for the PromptLoop refiner (src/models/refiner.c), reduced
config: V 20, max_tokens 8, d 32, 2 layers, 4 heads, MLP 4d, latent 4x8x8 in
2x2 patches (16 patch tokens), 16 timestep frequencies.
Writes tests/oracle/model_refiner_weights.safetensors (the state_dict) and
tests/oracle/model_refiner.safetensors: the batch (x0, timesteps, query and
prompt ids and keep masks, out_ids; ids as F32), the output `logits`
(B, T_out, V), the upstream gradient r_logits and grad.<param> of
loss = sum(logits * r_logits). Query and prompt rows are padded (PAD keys
masked out). The modules take da_refiner_config's fields as keywords."""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from st import save

# Reduced config of the parity test (tests/test_model_refiner.c keeps the same).
TEST_CONFIG = dict(vocab_size=20, max_tokens=8, d_model=32, n_layers=2, n_heads=4, mlp_ratio=4,
                   latent_channels=4, latent_size=8, patch=2, time_freq_dim=16)
PAD, BOS, EOS = 0, 1, 2
SEG_LATENT, SEG_TIME, SEG_QUERY, SEG_PROMPT, SEG_OUTPUT = range(5)


def timestep_embedding(t, dim):
    """diffusers get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0)."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32) / half
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)


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
        # patch 0 is always visible, so no query row is fully masked
        p = torch.softmax(s.masked_fill(~visible, float("-inf")), dim=-1)
        return self.out_proj((p @ v).transpose(1, 2).reshape(B, T, D))


class Layer(nn.Module):
    def __init__(self, d, heads, ratio):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d), Attention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.ModuleDict(dict(fc1=nn.Linear(d, ratio * d), fc2=nn.Linear(ratio * d, d)))

    def forward(self, x, keep):
        x = x + self.attn(self.ln1(x), keep)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.ln2(x))))


class Refiner(nn.Module):
    """dalign's refiner; the keyword arguments are da_refiner_config's fields."""

    def __init__(self, vocab_size=34, max_tokens=24, d_model=128, n_layers=3, n_heads=4, mlp_ratio=4,
                 latent_channels=4, latent_size=8, patch=2, time_freq_dim=64):
        super().__init__()
        self.max_tokens, self.freq = max_tokens, time_freq_dim
        self.n_patches = (latent_size // patch) ** 2
        self.patch_embed = nn.Conv2d(latent_channels, d_model, patch, stride=patch)
        self.time_mlp = nn.Sequential(nn.Linear(time_freq_dim, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(self.n_patches + 1 + 3 * max_tokens, d_model)
        self.segment_embedding = nn.Embedding(5, d_model)
        self.layers = nn.ModuleList([Layer(d_model, n_heads, mlp_ratio) for _ in range(n_layers)])
        self.final_ln = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, x0, t, query, query_keep, prompt, prompt_keep, out_ids):
        """x0 (B, C, S, S), t (B), query/prompt (B, M) long + keep (B, M), out_ids (B, T_out)
        -> logits (B, T_out, V)"""
        B, M, T_out = x0.shape[0], self.max_tokens, out_ids.shape[1]
        patches = self.patch_embed(x0).flatten(2).transpose(1, 2)
        time = self.time_mlp(timestep_embedding(t, self.freq))[:, None]
        tok = self.token_embedding
        x = torch.cat([patches, time, tok(query), tok(prompt), tok(out_ids)], dim=1)
        L = x.shape[1]
        seg = torch.tensor([SEG_LATENT] * self.n_patches + [SEG_TIME] + [SEG_QUERY] * M + [SEG_PROMPT] * M
                           + [SEG_OUTPUT] * T_out)
        x = x + self.position_embedding.weight[:L] + self.segment_embedding(seg)
        ones = torch.ones(B, self.n_patches + 1)
        keep = torch.cat([ones, query_keep, prompt_keep, torch.ones(B, T_out)], dim=1)
        for layer in self.layers:
            x = layer(x, keep)
        return self.lm_head(self.final_ln(x[:, L - T_out:]))


def padded_rows(lengths, M, V, gen):
    """rows BOS w .. EOS then PAD, and their keep masks"""
    ids = torch.full((len(lengths), M), PAD, dtype=torch.long)
    keep = torch.zeros(len(lengths), M)
    for b, n in enumerate(lengths):
        ids[b, 0], ids[b, n - 1] = BOS, EOS
        ids[b, 1:n - 1] = torch.randint(3, V, (n - 2,), generator=gen)
        keep[b, :n] = 1
    return ids, keep


def main():
    torch.manual_seed(0)
    m = Refiner(**TEST_CONFIG)
    with torch.no_grad():  # non-trivial layernorm affines so their gradients are tested
        for name, p in m.named_parameters():
            if ".ln" in name or name.startswith("final_ln"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))

    V, M, C, S = (TEST_CONFIG[k] for k in ("vocab_size", "max_tokens", "latent_channels", "latent_size"))
    gen = torch.Generator().manual_seed(1)
    query, query_keep = padded_rows([8, 5, 2], M, V, gen)
    prompt, prompt_keep = padded_rows([3, 8, 4], M, V, gen)
    T_out = 6
    out_ids = torch.randint(2, V, (3, T_out), generator=gen)
    out_ids[:, 0] = BOS
    x0 = torch.randn(3, C, S, S, generator=gen)
    t = torch.tensor([999.0, 500.0, 17.0])

    logits = m(x0, t, query, query_keep, prompt, prompt_keep, out_ids)
    r_logits = torch.randn(logits.shape, generator=gen)
    (logits * r_logits).sum().backward()

    here = os.path.dirname(os.path.abspath(__file__))
    save(os.path.join(here, "model_refiner_weights.safetensors"), dict(m.state_dict()))
    out = {"x0": x0, "timesteps": t, "query_ids": query.float(), "query_keep": query_keep,
           "prompt_ids": prompt.float(), "prompt_keep": prompt_keep, "out_ids": out_ids.float(),
           "logits": logits, "r_logits": r_logits}
    for name, p in m.named_parameters():
        out["grad." + name] = p.grad
    save(os.path.join(here, "model_refiner.safetensors"), out)


if __name__ == "__main__":
    main()
