"""Model parity of a SHIPPED weights directory (issue 3, item 8): the text
encoder, CLIP image tower, VAE and both UNets of DIR loaded (strictly, by
name) into the PyTorch modules of model_text.py, model_vae.py, model_unet.py
and the CLIP tower below, one forward + backward each on a batch of two in
float32; tests/test_shipped_parity.c runs the C models of the same directory
on the same inputs.

    /usr/bin/python3 tests/oracle/shipped_parity.py                 # weights/ (must hold the models)
    /usr/bin/python3 tests/oracle/shipped_parity.py --weights DIR

Writes tests/oracle/shipped_parity.safetensors. Per model M (text_encoder,
clip, vae, unet, unet-b when DIR has it), the scalar loss and its inputs:

  text_encoder  ids, keep, eos (2 prompts, 24 tokens, F32) -> features (B,T,d), pooled (B,proj);
                L = sum(features * r_features) + sum(pooled * r_pooled)
  clip          images (2 rendered shapes scenes), txt (the prompts' pooled text embeddings in
                SWAPPED order: each image paired with the other prompt) -> emb;
                L = infonce(emb, txt, logit_scale) + sum(emb * r_emb); grads of images, txt.
                (Matched pairs saturate a trained tower's softmax: loss 0 and gradients ~1e-13
                in f32, pure rounding noise; mismatched pairs give gradients of order 1.)
  vae           x (the same images), eps -> mean, logvar (clamped), z, x_hat; L = the training
                loss mse(x_hat, x) + kl_weight * KL (recon, kl, loss stored); grad of x
  unet, unet-b  x (randn latents), t, context = the prompts' text features, keep = their mask
                -> out; L = sum(out * dout); grads of x and context

Tensors are named M.<what>. Parameter gradients (the full ones are too big to
store for the 3M-parameter UNet) as, for EVERY parameter tensor P (a name of
the checkpoint, e.g. "down.0.res.conv1.weight"):

  M.stat.P  (3,) = [sum(g * g), sum(g * r), sum(w * r)]   (float64 sums, stored F32)

where g is dL/dP, w is P's value and r = torch.manual_seed(fnv1a32(P));
torch.randn(numel), fnv1a32 the 32-bit FNV-1a hash of P's name in UTF-8
(offset 2166136261, prime 16777619), r read in P's row-major order. The C side
draws the same r with da_rng_seed + da_randn (bit for bit). The third entry is
a fingerprint of the weights: the test fails with "reference is stale" when
the directory's weights changed since this file was written (as do the file
sizes recorded in the metadata). Full gradients M.grad.P of the small
tensors, to localise an error: every parameter with at most one dimension
(norm gammas/betas, biases, logit_scale) and each model's output layer.

Metadata: the weights directory (relative to the repository root, where the
C test runs), the models, the prompts, the UNet timesteps, the probe rule,
and per weights file its byte size and SHA256 (informational; cross-checked
with DIR/SHA256SUMS when present).
"""
import argparse
import hashlib
import json
import os
import re
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from sample_parity import MAX_TOKENS, load_models, load_state, read_json, tokenize
from st import save

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

PROMPTS = ["a large red circle to the left of a small blue square", "a green triangle on a gray background"]
TIMESTEPS = [37.0, 815.0]
IMG = 32
LATENT = IMG // 4

# each model's output layer: stored in full next to the 1-D tensors
OUTPUT_LAYERS = {"text_encoder": ["text_projection.weight"], "clip": ["visual_projection.weight"],
                 "vae": ["encoder.conv_out.weight", "decoder.conv_out.weight"],
                 "unet": ["conv_out.weight"], "unet-b": ["conv_out.weight"]}


def fnv1a32(name):
    h = 2166136261
    for b in name.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def probe(name, n):
    torch.manual_seed(fnv1a32(name))
    return torch.randn(n)


# ---- the CLIP image tower (src/models/clip.c), from clip.json ----------------------------

class DownBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv with stride 2"""

    def __init__(self, cin, cout, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(F.silu(self.norm(x)))


class Tower(nn.Module):
    def __init__(self, in_ch, ch, groups):
        super().__init__()
        self.conv_in = nn.Conv2d(in_ch, ch[0], 3, padding=1)
        self.blocks = nn.ModuleList(DownBlock(a, b, groups) for a, b in zip(ch[:-1], ch[1:]))
        self.norm_out = nn.GroupNorm(groups, ch[-1], eps=1e-5)

    def forward(self, x):
        h = self.conv_in(x)
        for blk in self.blocks:
            h = blk(h)
        return F.silu(self.norm_out(h)).mean(dim=(2, 3))


class ClipImage(nn.Module):
    def __init__(self, image_size, in_channels, channels, groups, embed_dim):
        super().__init__()
        self.image_size = image_size
        self.visual = Tower(in_channels, channels, groups)
        self.visual_projection = nn.Linear(channels[-1], embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def forward(self, images):
        return self.visual_projection(self.visual(images))


def infonce(img, txt, logit_scale):
    """symmetric InfoNCE over the matched pairs (da_clip_loss)"""
    sim = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t()
    logits = torch.clamp(logit_scale.exp(), max=100.0) * sim
    labels = torch.arange(img.shape[0])
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


# ---- inputs --------------------------------------------------------------------------------

def scenes():
    """Two images like the shapes world's: flat shapes on a flat background, in [-1, 1]
    (deterministic, no generator): a red disc left of a blue square on black; a green
    triangle on gray."""
    c = torch.arange(IMG, dtype=torch.float32) + 0.5
    yy, xx = c[:, None].expand(IMG, IMG), c[None, :].expand(IMG, IMG)
    imgs = torch.empty(2, 3, IMG, IMG)

    def paint(img, mask, rgb):
        for k in range(3):
            img[k][mask] = rgb[k]

    a = imgs[0]
    paint(a, torch.ones(IMG, IMG, dtype=torch.bool), (0.0, 0.0, 0.0))
    paint(a, (xx - 9.0) ** 2 + (yy - 14.0) ** 2 <= 7.5 ** 2, (0.9, 0.1, 0.1))
    paint(a, (xx >= 21) & (xx < 29) & (yy >= 12) & (yy < 20), (0.15, 0.2, 0.95))
    b = imgs[1]
    paint(b, torch.ones(IMG, IMG, dtype=torch.bool), (0.5, 0.5, 0.5))
    paint(b, (yy <= 26) & (yy >= 6) & ((xx - 16).abs() <= (yy - 6) * 0.55), (0.1, 0.8, 0.2))
    return imgs * 2 - 1


# ---- per-model records -------------------------------------------------------------------

def param_records(prefix, model_name, module, out):
    """M.stat.P for every parameter, M.grad.P for the small ones and the output layer"""
    names = []
    for name, p in module.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        gd, wd = g.detach().double().reshape(-1), p.detach().double().reshape(-1)
        r = probe(name, p.numel()).double()
        out[f"{prefix}.stat.{name}"] = torch.tensor([float((gd * gd).sum()), float((gd * r).sum()),
                                                     float((wd * r).sum())], dtype=torch.float32)
        if p.dim() <= 1 or name in OUTPUT_LAYERS[model_name]:
            out[f"{prefix}.grad.{name}"] = g.detach().clone()
        names.append(name)
    return names


def run_text(text, out):
    rows = [tokenize(p) for p in PROMPTS]
    ids = torch.tensor([r[0] for r in rows])
    keep = torch.tensor([r[1] for r in rows])
    eos = keep.sum(1) - 1
    text.zero_grad()
    feats, pooled = text(ids, keep, eos)
    torch.manual_seed(11)
    r_f, r_p = torch.randn_like(feats), torch.randn_like(pooled)
    ((feats * r_f).sum() + (pooled * r_p).sum()).backward()
    out.update({"text_encoder.ids": ids.float(), "text_encoder.keep": keep.float(),
                "text_encoder.eos": eos.float(), "text_encoder.features": feats.detach(),
                "text_encoder.pooled": pooled.detach(), "text_encoder.r_features": r_f,
                "text_encoder.r_pooled": r_p})
    param_records("text_encoder", "text_encoder", text, out)
    return feats.detach(), pooled.detach(), keep.bool()


def run_clip(clip, images, txt, out):
    im, tx = images.clone().requires_grad_(True), txt.clone().requires_grad_(True)
    clip.zero_grad()
    emb = clip(im)
    loss = infonce(emb, tx, clip.logit_scale)
    torch.manual_seed(12)
    r_emb = torch.randn_like(emb)
    (loss + (emb * r_emb).sum()).backward()
    out.update({"clip.images": images, "clip.txt": txt, "clip.r_emb": r_emb, "clip.emb": emb.detach(),
                "clip.loss": loss.detach(), "clip.grad_images": im.grad, "clip.grad_txt": tx.grad})
    param_records("clip", "clip", clip, out)


def run_vae(vae, kl_weight, images, out):
    x = images.clone().requires_grad_(True)
    torch.manual_seed(13)
    eps = torch.randn(2, 4, LATENT, LATENT)
    vae.zero_grad()
    mean, logvar = vae.encoder(x).chunk(2, dim=1)
    logvar = torch.clamp(logvar, -30.0, 20.0)
    z = mean + torch.exp(0.5 * logvar) * eps
    x_hat = vae.decoder(z)
    recon = F.mse_loss(x_hat, x)
    kl = (0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar)).mean()
    loss = recon + kl_weight * kl
    loss.backward()
    out.update({"vae.x": images, "vae.eps": eps, "vae.mean": mean.detach(), "vae.logvar": logvar.detach(),
                "vae.z": z.detach(), "vae.x_hat": x_hat.detach(), "vae.recon": recon.detach(),
                "vae.kl": kl.detach(), "vae.loss": loss.detach(), "vae.grad_x": x.grad})
    param_records("vae", "vae", vae, out)


def run_unet(name, unet, context, keep, seed, out):
    torch.manual_seed(seed)
    x = torch.randn(2, unet.conv_in.in_channels, LATENT, LATENT)
    t = torch.tensor(TIMESTEPS)
    xl, cl = x.clone().requires_grad_(True), context.clone().requires_grad_(True)
    unet.zero_grad()
    y = unet(xl, t, cl, keep)
    dout = torch.randn_like(y)
    (y * dout).sum().backward()
    out.update({f"{name}.x": x, f"{name}.t": t, f"{name}.context": context, f"{name}.keep": keep.float(),
                f"{name}.out": y.detach(), f"{name}.dout": dout, f"{name}.grad_x": xl.grad,
                f"{name}.grad_context": cl.grad})
    param_records(name, name, unet, out)


# ---- main ----------------------------------------------------------------------------------

def weights_files(wdir, models):
    files = []
    for m in models:
        files += [m + ".json", m + ".safetensors"]
    return files


def file_digests(wdir, files):
    sums = {}
    sp = os.path.join(wdir, "SHA256SUMS")
    if os.path.exists(sp):
        with open(sp) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    sums[parts[1].lstrip("*")] = parts[0]
    meta = {}
    for fn in files:
        with open(os.path.join(wdir, fn), "rb") as f:
            data = f.read()
        h = hashlib.sha256(data).hexdigest()
        if fn in sums and sums[fn] != h:
            sys.exit(f"shipped_parity: {wdir}/{fn}: SHA256 {h} but SHA256SUMS says {sums[fn]}")
        meta["sha256." + fn] = h
        meta["size." + fn] = str(len(data))
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="weights directory (default: weights/ when it holds the models)")
    ap.add_argument("--out", default=os.path.join(HERE, "shipped_parity.safetensors"))
    a = ap.parse_args()
    if a.weights:
        wdir = os.path.abspath(a.weights)
    elif os.path.exists(os.path.join(ROOT, "weights", "unet.safetensors")):
        wdir = os.path.join(ROOT, "weights")
    else:
        sys.exit("shipped_parity: weights/ holds no models yet (make weights): pass --weights DIR, "
                 "e.g. --weights build/weights-smoke")
    # r = torch.randn(n) must be the draws da_randn mirrors (rng.c follows the AVX2 kernel)
    cap = re.search(r"CPU capability usage: (\w+)", torch.__config__.show())
    if cap and cap.group(1) != "AVX2":
        sys.exit(f"shipped_parity: torch uses the {cap.group(1)} kernels; da_randn mirrors AVX2")
    torch.set_num_threads(1)

    models = ["text_encoder", "clip", "vae", "unet"]
    if os.path.exists(os.path.join(wdir, "unet-b.safetensors")):
        models.append("unet-b")
    for m in models:
        for ext in (".json", ".safetensors"):
            if not os.path.exists(os.path.join(wdir, m + ext)):
                sys.exit(f"shipped_parity: {wdir} has no {m}{ext}")

    text, vae, unet, _scale, _noise, _c = load_models(wdir, "unet")
    vc = read_json(os.path.join(wdir, "vae.json"))
    cc = read_json(os.path.join(wdir, "clip.json"))
    clip = ClipImage(**cc)
    load_state(clip, os.path.join(wdir, "clip.safetensors"))
    for m in (text, vae, unet, clip):
        m.float()

    out = {}
    images = scenes()
    feats, pooled, keep = run_text(text, out)
    run_clip(clip, images, pooled.flip(0), out)
    run_vae(vae, vc["kl_weight"], images, out)
    run_unet("unet", unet, feats, keep, 14, out)
    if "unet-b" in models:
        unet_b = load_models(wdir, "unet-b")[2]
        run_unet("unet-b", unet_b, feats, keep, 15, out)

    rel = os.path.relpath(wdir, ROOT)
    meta = {"weights": wdir if rel.startswith("..") else rel, "models": ",".join(models),
            "n": str(len(PROMPTS)), "tokens": str(MAX_TOKENS), "unet.t": ",".join(repr(t) for t in TIMESTEPS),
            "stat": "M.stat.P = [sum(g*g), sum(g*r), sum(w*r)], r = torch.manual_seed(fnv1a32(P)); "
                    "torch.randn(numel(P)), float64 sums",
            "computed": "float32 forward + backward, batch 2: text_encoder L = sum(features * r_features) + "
                        "sum(pooled * r_pooled); clip L = infonce(emb, txt, logit_scale) + sum(emb * r_emb); "
                        "vae L = mse(x_hat, x) + kl_weight * KL; unet, unet-b L = sum(out * dout)",
            "generator": "tests/oracle/shipped_parity.py", "torch": torch.__version__}
    for i, p in enumerate(PROMPTS):
        meta[f"prompt.{i}"] = p
    meta.update(file_digests(wdir, weights_files(wdir, models)))
    save(a.out, out, meta)
    n_stat = sum(1 for k in out if ".stat." in k)
    n_full = sum(1 for k in out if ".grad." in k)
    print(f"shipped_parity: {meta['weights']} ({meta['models']}) -> {os.path.relpath(a.out, ROOT)}: "
          f"{n_stat} parameter summaries, {n_full} full gradients, {os.path.getsize(a.out)} bytes")


if __name__ == "__main__":
    main()
