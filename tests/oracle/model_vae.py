"""PyTorch reference for the VAE (src/models/vae.c) at reduced widths.

Writes tests/oracle/model_vae_weights.safetensors (the state_dict, names as
in dalign) and tests/oracle/model_vae.safetensors: the input x, a fixed
reparameterisation noise eps, mean, logvar, z, x_hat, the loss and its two
terms, and the gradient of the loss w.r.t. x and every parameter
("grad.<name>"). Run with /usr/bin/python3 (torch 1.13); `make oracle`.

ResBlock is imported by model_unet.py, hence the __main__ guard.
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from st import save

# Reduced config of the parity test (tests/test_model_vae.c keeps the same):
# distinct widths at every level so a channel mix-up cannot hide, 16x16 input.
# The modules take the config, so the default (32, 64, 128) builds the same way.
TEST_CONFIG = dict(ch=(8, 16, 24), groups=4)
KL_WEIGHT = 0.1   # large, so the KL term's gradients weigh in the comparison


class ResBlock(nn.Module):
    """SD ResBlock; with temb_dim > 0 it adds time_proj(silu(temb))."""

    def __init__(self, cin, cout, groups, eps, temb_dim=0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        if temb_dim:
            self.time_proj = nn.Linear(temb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if temb is not None:
            h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class Level(nn.Module):
    """A resolution level: res, then optionally a down- or upsampling conv."""

    def __init__(self, cin, cout, groups, eps, sample=None):
        super().__init__()
        self.res = ResBlock(cin, cout, groups, eps)
        if sample == "down":
            self.downsample = nn.Conv2d(cout, cout, 3, stride=2, padding=1)
        elif sample == "up":
            self.upsample = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        h = self.res(x)
        if hasattr(self, "downsample"):
            h = self.downsample(h)
        if hasattr(self, "upsample"):
            h = self.upsample(F.interpolate(h, scale_factor=2, mode="nearest"))
        return h


class Mid(nn.Module):
    def __init__(self, c, groups, eps):
        super().__init__()
        self.res = ResBlock(c, c, groups, eps)

    def forward(self, x):
        return self.res(x)


class Encoder(nn.Module):
    def __init__(self, ch, groups, eps, latent, in_ch):
        super().__init__()
        c0, c1, c2 = ch
        self.conv_in = nn.Conv2d(in_ch, c0, 3, padding=1)
        self.down = nn.ModuleList([Level(c0, c0, groups, eps, "down"), Level(c0, c1, groups, eps, "down"),
                                   Level(c1, c2, groups, eps)])
        self.mid = Mid(c2, groups, eps)
        self.norm_out = nn.GroupNorm(groups, c2, eps=eps)
        self.conv_out = nn.Conv2d(c2, 2 * latent, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, groups, eps, latent, in_ch):
        super().__init__()
        c0, c1, c2 = ch
        self.conv_in = nn.Conv2d(latent, c2, 3, padding=1)
        self.mid = Mid(c2, groups, eps)
        # up.0 is the last level applied (as in SD's decoder numbering)
        self.up = nn.ModuleList([Level(c1, c0, groups, eps), Level(c2, c1, groups, eps, "up"),
                                 Level(c2, c2, groups, eps, "up")])
        self.norm_out = nn.GroupNorm(groups, c0, eps=eps)
        self.conv_out = nn.Conv2d(c0, in_ch, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VAE(nn.Module):
    """dalign's da_vae_config_default() is VAE(); the test uses TEST_CONFIG."""

    def __init__(self, ch=(32, 64, 128), groups=8, eps=1e-6, latent=4, in_ch=3):
        super().__init__()
        self.encoder = Encoder(ch, groups, eps, latent, in_ch)
        self.decoder = Decoder(ch, groups, eps, latent, in_ch)


def perturb_norms(model, scale=0.2):
    """Default GroupNorm/LayerNorm affine is (1, 0), under which a swapped or
    ignored gamma/beta would go unnoticed: move them off it."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
                m.weight.add_(scale * torch.randn_like(m.weight))
                m.bias.add_(scale * torch.randn_like(m.bias))


def state_dict_f32(model):
    return {k: v.detach().float() for k, v in model.state_dict().items()}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(0)
    vae = VAE(**TEST_CONFIG)
    perturb_norms(vae)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    eps = torch.randn(2, 4, 4, 4)

    xl = x.clone().requires_grad_(True)
    h = vae.encoder(xl)
    mean, logvar = h.chunk(2, dim=1)
    logvar = torch.clamp(logvar, -30.0, 20.0)
    z = mean + torch.exp(0.5 * logvar) * eps
    x_hat = vae.decoder(z)
    recon = F.mse_loss(x_hat, xl)
    kl = (0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar)).mean()
    loss = recon + KL_WEIGHT * kl
    loss.backward()

    out = {"x": x, "eps": eps, "mean": mean, "logvar": logvar, "z": z, "x_hat": x_hat,
           "recon": recon, "kl": kl, "loss": loss, "grad.x": xl.grad}
    for name, p in vae.named_parameters():
        out["grad." + name] = p.grad
    save(os.path.join(here, "model_vae_weights.safetensors"), state_dict_f32(vae))
    save(os.path.join(here, "model_vae.safetensors"), out)


if __name__ == "__main__":
    main()
