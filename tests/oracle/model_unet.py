"""PyTorch reference for the conditional UNet (src/models/unet.c) at reduced
widths.

Writes tests/oracle/model_unet_weights.safetensors (the state_dict, names as
in dalign) and tests/oracle/model_unet.safetensors: inputs x_t, timesteps,
context and its key mask (some padding), the output eps, the upstream
gradient R of loss = sum(eps * R), and the gradients of that loss w.r.t.
x_t, the context and every parameter ("grad.<name>").
Run with /usr/bin/python3 (torch 1.13); `make oracle`.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_vae import ResBlock, perturb_norms, state_dict_f32
from st import save

# Reduced config of the parity test (tests/test_model_unet.c keeps the same).
# The modules take the config: UNet() is dalign's da_unet_config_default(),
# UNet(ch=(48, 96)) is unet-b.
TEST_CONFIG = dict(ch=(8, 16), groups=4, ctx_dim=16, freq_dim=16, time_dim=32)
CTX_LEN = 8


def timestep_embedding(t, dim):
    """diffusers get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0)."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32)
    exponent = exponent / half
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)


class Attention(nn.Module):
    def __init__(self, c, kv_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(c, c, bias=False)
        self.to_k = nn.Linear(kv_dim, c, bias=False)
        self.to_v = nn.Linear(kv_dim, c, bias=False)
        self.to_out = nn.Linear(c, c)

    def forward(self, x, ctx, keep=None):
        B, T, C = x.shape
        H = self.heads
        hd = C // H
        q = self.to_q(x).view(B, T, H, hd).transpose(1, 2)
        k = self.to_k(ctx).view(B, -1, H, hd).transpose(1, 2)
        v = self.to_v(ctx).view(B, -1, H, hd).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / math.sqrt(hd)
        if keep is not None:
            s = s.masked_fill(~keep[:, None, None, :], float("-inf"))
        o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        return self.to_out(o)


class FeedForward(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Linear(c, 4 * c)
        self.fc2 = nn.Linear(4 * c, c)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class SpatialTransformer(nn.Module):
    def __init__(self, c, cfg):
        super().__init__()
        self.norm = nn.GroupNorm(cfg["groups"], c, eps=cfg["gn_eps"])
        self.proj_in = nn.Conv2d(c, c, 1)
        self.ln1 = nn.LayerNorm(c, eps=cfg["ln_eps"])
        self.attn1 = Attention(c, c, cfg["heads"])
        self.ln2 = nn.LayerNorm(c, eps=cfg["ln_eps"])
        self.attn2 = Attention(c, cfg["ctx_dim"], cfg["heads"])
        self.ln3 = nn.LayerNorm(c, eps=cfg["ln_eps"])
        self.ff = FeedForward(c)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, ctx, keep):
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x))
        h = h.permute(0, 2, 3, 1).reshape(B, H * W, C)
        a = self.ln1(h)
        h = h + self.attn1(a, a)
        h = h + self.attn2(self.ln2(h), ctx, keep)
        h = h + self.ff(self.ln3(h))
        h = h.reshape(B, H, W, C).permute(0, 3, 1, 2)
        return self.proj_out(h) + x


def res_block(cin, cout, cfg):
    return ResBlock(cin, cout, cfg["groups"], cfg["gn_eps"], cfg["time_dim"])


class Level(nn.Module):
    def __init__(self, cin, cout, cfg, sample=None):
        super().__init__()
        self.res = res_block(cin, cout, cfg)
        self.attn = SpatialTransformer(cout, cfg)
        if sample == "down":
            self.downsample = nn.Conv2d(cout, cout, 3, stride=2, padding=1)
        elif sample == "up":
            self.upsample = nn.Conv2d(cout, cout, 3, padding=1)


class Mid(nn.Module):
    def __init__(self, c, cfg):
        super().__init__()
        self.res1 = res_block(c, c, cfg)
        self.attn = SpatialTransformer(c, cfg)
        self.res2 = res_block(c, c, cfg)


class UNet(nn.Module):
    def __init__(self, ch=(64, 128), groups=16, gn_eps=1e-5, ln_eps=1e-5, heads=4, ctx_dim=128,
                 freq_dim=64, time_dim=256, in_ch=4, out_ch=4):
        super().__init__()
        cfg = dict(groups=groups, gn_eps=gn_eps, ln_eps=ln_eps, heads=heads, ctx_dim=ctx_dim,
                   time_dim=time_dim)
        c0, c1 = ch
        self.freq_dim = freq_dim
        self.time_embed = nn.Sequential(nn.Linear(freq_dim, time_dim), nn.SiLU(),
                                        nn.Linear(time_dim, time_dim))
        self.conv_in = nn.Conv2d(in_ch, c0, 3, padding=1)
        self.down = nn.ModuleList([Level(c0, c0, cfg, "down"), Level(c0, c1, cfg)])
        self.mid = Mid(c1, cfg)
        self.up = nn.ModuleList([Level(c1 + c0, c0, cfg), Level(c1 + c1, c1, cfg, "up")])
        self.norm_out = nn.GroupNorm(groups, c0, eps=gn_eps)
        self.conv_out = nn.Conv2d(c0, out_ch, 3, padding=1)

    def forward(self, x, t, ctx, keep):
        temb = self.time_embed(timestep_embedding(t, self.freq_dim))
        h = self.conv_in(x)
        d0, d1 = self.down
        h = d0.attn(d0.res(h, temb), ctx, keep)
        skip0 = h
        h = d0.downsample(h)
        h = d1.attn(d1.res(h, temb), ctx, keep)
        skip1 = h
        h = self.mid.res2(self.mid.attn(self.mid.res1(h, temb), ctx, keep), temb)
        u0, u1 = self.up
        h = u1.attn(u1.res(torch.cat([h, skip1], 1), temb), ctx, keep)
        h = u1.upsample(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = u0.attn(u0.res(torch.cat([h, skip0], 1), temb), ctx, keep)
        return self.conv_out(F.silu(self.norm_out(h)))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(0)
    unet = UNet(**TEST_CONFIG)
    perturb_norms(unet)
    x = torch.randn(2, 4, 8, 8)
    t = torch.tensor([7.0, 903.0])
    ctx = torch.randn(2, CTX_LEN, TEST_CONFIG["ctx_dim"])
    # row 0: 5 tokens then padding; row 1: a padded slot in the middle too
    keep = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 1, 1, 1, 1, 1]], dtype=torch.bool)

    xl = x.clone().requires_grad_(True)
    cl = ctx.clone().requires_grad_(True)
    eps = unet(xl, t, cl, keep)
    R = torch.randn_like(eps)
    (eps * R).sum().backward()

    out = {"x": x, "t": t, "context": ctx, "keep": keep.float(), "out": eps, "dout": R,
           "grad.x": xl.grad, "grad.context": cl.grad}
    for name, p in unet.named_parameters():
        out["grad." + name] = p.grad
    save(os.path.join(here, "model_unet_weights.safetensors"), state_dict_f32(unet))
    save(os.path.join(here, "model_unet.safetensors"), out)


if __name__ == "__main__":
    main()
